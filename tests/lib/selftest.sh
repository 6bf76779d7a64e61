#!/bin/bash
# shellcheck disable=SC2119,SC2153 # (SC2153: BASIC etc. are set through --var)
# Self-test of the integration harness (tests/lib/harness.sh): starts a private dockerd, a plain,
# an htpasswd and a token registry, makes stages and records, pushes and pulls them back, checks
# authentication failures, and (if a stagefs binary is built) one mount/unmount cycle.
#   bash tests/lib/selftest.sh            H_KEEP=1 keeps the temp dir
#   H_SELFTEST_MOUNT=0 skips the mount part; =1 requires it.
set -euo pipefail
. "$(dirname "$0")/harness.sh"
h_init

P=selftest-proj

# --- assertion helpers themselves -----------------------------------------------------------
assert_eq a a "assert_eq"
assert_errno ENOENT cat "$H_TMP/does-not-exist"
assert_errno EISDIR cat "$H_TMP"
assert_eq "Read-only file system" "$(h_strerror EROFS)" "strerror EROFS"
assert_eq "Input/output error" "$(h_strerror EIO)" "strerror EIO"
if (assert_eq a b "expected mismatch") 2>/dev/null; then h_fail "assert_eq did not fail"; fi
if (assert_errno EACCES cat "$H_TMP/does-not-exist") 2>/dev/null; then h_fail "assert_errno accepted the wrong errno"; fi
if (assert_errno ENOENT true) 2>/dev/null; then h_fail "assert_errno accepted success"; fi
echo x >"$H_TMP/f1"
cp "$H_TMP/f1" "$H_TMP/f2"
assert_file_eq "$H_TMP/f1" "$H_TMP/f2"
echo y >"$H_TMP/f2"
if (assert_file_eq "$H_TMP/f1" "$H_TMP/f2") 2>/dev/null; then h_fail "assert_file_eq accepted different files"; fi
rm -f "$H_TMP/run/fail_msg"
assert_eq ENOENT "$(h_errno 'os.open(sys.argv[1], os.O_RDONLY)' "$H_TMP/does-not-exist")" "h_errno ENOENT"
assert_eq EEXIST "$(h_errno 'os.mkdir(sys.argv[1])' "$H_TMP")" "h_errno EEXIST"
assert_eq OK "$(h_errno 'os.stat(sys.argv[1])' "$H_TMP")" "h_errno OK"
h_pass "assertion helpers"

# --- services -----------------------------------------------------------------------------
h_start_dockerd
assert_eq "unix://$H_TMP/d1/s" "$DOCKER_HOST" "DOCKER_HOST"
assert_eq "20.10" "$(docker version --format '{{.Client.Version}}' | cut -d. -f1,2)" "docker in PATH is /usr/bin/docker"
assert_eq vfs "$(h_docker info --format '{{.Driver}}')" "storage driver"
h_pass "private dockerd"

h_start_registry --var PLAIN
h_start_registry --htpasswd alice:secret-a --var BASIC
h_start_registry --token bob:secret-b --token-readonly carol:secret-c --var TOKEN
TOKSRV=$TOKEN_SERVER
assert_eq "$TOKSRV" "$(h_token_server_of "$TOKEN")" "h_token_server_of"
assert_eq "" "$(h_token_server_of "$BASIC")" "no token server for htpasswd registry"
assert_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://$PLAIN/v2/")" "plain registry answers 200"
assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' "http://$BASIC/v2/")" "htpasswd registry answers 401"
assert_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' -u alice:secret-a "http://$BASIC/v2/")" "htpasswd registry accepts alice"
ch=$(curl -s -D - -o /dev/null "http://$TOKEN/v2/" | tr -d '\r' | grep -i '^www-authenticate:')
assert_contains "$ch" "Bearer realm=\"$TOKSRV/token\"" "token registry challenge"
h_pass "three registries (plain, htpasswd, token)"

# --- stages and records -------------------------------------------------------------------
read -r S1 ID1 < <(h_make_stage "$P" --seed 1)
read -r S2 ID2 < <(h_make_stage "$P" --seed 2 --layers 3 --layer-size 200000)
read -r S3 ID3 < <(h_make_stage "$P" --seed 3 --parent "$ID1")
for s in "$S1" "$S2" "$S3"; do
	[[ "$s" =~ ^[0-9a-f]{56}-[0-9]{13}$ ]] || h_fail "bad stage name $s"
done
[[ "$ID1" =~ ^sha256:[0-9a-f]{64}$ ]] || h_fail "bad image id $ID1"
assert_ne "$ID1" "$ID2" "distinct stages"
# determinism: the same seed gives the same image again
read -r S1b ID1b < <(h_make_stage "$P" --seed 1)
assert_eq "$S1 $ID1" "$S1b $ID1b" "same seed, same stage"
# labels as werf sets them
lbls=$(h_docker image inspect --format '{{json .Config.Labels}}' "$ID2")
assert_eq "$P" "$(jq -r .werf <<<"$lbls")" "label werf"
assert_eq "1.1" "$(jq -r '."werf-cache-version"' <<<"$lbls")" "label werf-cache-version"
assert_eq "false" "$(jq -r '."werf-image"' <<<"$lbls")" "label werf-image"
assert_eq "v1.1.23" "$(jq -r '."werf-version"' <<<"$lbls")" "label werf-version"
assert_eq "${S2%%-*}" "$(jq -r '."werf-stage-signature"' <<<"$lbls")" "label werf-stage-signature"
[[ "$(jq -r '."werf-docker-image-name"' <<<"$lbls")" =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] || h_fail "werf-docker-image-name is not a uuid"
[[ "$(jq -r '."werf-stage-content-signature"' <<<"$lbls")" =~ ^[0-9a-f]{56}$ ]] || h_fail "bad content signature"
[[ "$(jq -r '."werf-project-repo-commit"' <<<"$lbls")" =~ ^[0-9a-f]{40}$ ]] || h_fail "bad repo commit"
# layers: 2 (default), 3, and parent's 2 + 2 for the chain
assert_eq 2 "$(h_docker image inspect --format '{{len .RootFS.Layers}}' "$ID1")" "S1 layers"
assert_eq 3 "$(h_docker image inspect --format '{{len .RootFS.Layers}}' "$ID2")" "S2 layers"
l1=$(h_docker image inspect --format '{{json .RootFS.Layers}}' "$ID1")
l3=$(h_docker image inspect --format '{{json .RootFS.Layers}}' "$ID3")
assert_eq 4 "$(jq length <<<"$l3")" "S3 layers"
assert_eq "$l1" "$(jq -c '.[0:2]' <<<"$l3")" "S3 starts with S1's layers"
# werf's listing filters see exactly the three stages
got=$(h_docker images --format '{{.Tag}}' --filter "reference=werf-stages-storage/$P" \
	--filter "label=werf=$P" --filter "label=werf-cache-version=1.1" | sort)
assert_eq "$(printf '%s\n' "$S1" "$S2" "$S3" | sort)" "$got" "werf's listing"
# the UNIQUEID is the creation time in ms
created=$(h_docker image inspect --format '{{.Created}}' "$ID1")
assert_eq "${S1#*-}" "$("$H_PYTHON" -c 'import sys, datetime; s = sys.argv[1].rstrip("Z"); d, _, f = s.partition("."); t = datetime.datetime.strptime(d, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc); print(int(t.timestamp()) * 1000 + int((f + "000")[:3]))' "$created")" "created = UNIQUEID"
# a layer tar has real files
h_docker save -o "$H_TMP/s2.tar" "$ID2"
first=$(tar -xOf "$H_TMP/s2.tar" manifest.json | jq -r '.[0].Layers[0]')
tar -xOf "$H_TMP/s2.tar" "$first" >"$H_TMP/s2-layer0.tar"
# (no `grep -q` after a pipe under pipefail: grep exiting early fails the writer with SIGPIPE)
assert_contains "$(tar -tf "$H_TMP/s2-layer0.tar")" 'werf-test/s2/l0/data-0.bin' "layer tar content"
assert_eq "$(h_docker image inspect --format '{{index .RootFS.Layers 0}}' "$ID2")" \
	"sha256:$(sha256sum <"$H_TMP/s2-layer0.tar" | cut -d' ' -f1)" "docker save gives the layer bytes back (diff ID)"
rm -f "$H_TMP/s2.tar" "$H_TMP/s2-layer0.tar"
h_pass "h_make_stage: werf labels, names, layers, chain, determinism"

read -r R1 RID1 < <(h_make_record "$P" metadata "myimage-0123456789abcdef0123456789abcdef01234567")
assert_eq "werf-images-metadata-by-commit/$P:myimage-0123456789abcdef0123456789abcdef01234567" "$R1" "record ref"
[[ "$(h_docker image inspect --format '{{index .Config.Labels "ContentSignature"}}' "$RID1")" =~ ^[0-9a-f]{56}$ ]] || h_fail "metadata record label"
read -r R2 _ < <(h_make_record "$P" managed-image "__nameless__")
assert_eq "werf-managed-images/$P:__nameless__" "$R2" "managed record ref"
assert_eq "map[]" "$(h_docker image inspect --format '{{.Config.Labels}}' "$R2")" "managed record has no labels"
read -r R3 _ < <(h_make_record "$P" client-id "0a1b2c3d-0000-4000-8000-000000000000-1600000000000")
assert_eq "werf-client-id/$P:0a1b2c3d-0000-4000-8000-000000000000-1600000000000" "$R3" "client-id ref"
h_tag_foreign "$ID1" "example.com/foreign/name:latest"
assert_eq "$ID1" "$(h_docker image inspect --format '{{.Id}}' example.com/foreign/name:latest)" "foreign tag"
got=$(h_docker images --format '{{.Tag}}' --filter "reference=werf-stages-storage/$P" \
	--filter "label=werf=$P" --filter "label=werf-cache-version=1.1" | sort)
assert_eq "$(printf '%s\n' "$S1" "$S2" "$S3" | sort)" "$got" "records are not stages"
h_pass "h_make_record and foreign tags"

# --- push to each registry, pull back ------------------------------------------------------
REPO_PLAIN="$PLAIN/group/$P/stages"
REPO_BASIC="$BASIC/group/$P/stages"
REPO_TOKEN="$TOKEN/group/$P/stages"
assert_fail h_docker_login "$BASIC" alice wrong-password
h_docker_login "$BASIC" alice secret-a
assert_fail h_docker_login "$TOKEN" bob wrong-password
h_docker_login "$TOKEN" bob secret-b
jq -e --arg b "$BASIC" --arg t "$TOKEN" '.auths[$b].auth and .auths[$t].auth' "$DOCKER_CONFIG/config.json" >/dev/null ||
	h_fail "docker login did not store credentials in $DOCKER_CONFIG/config.json"
h_pass "h_docker_login (wrong passwords refused)"

D1=$(h_push_stage "$P" "$S1" "$REPO_PLAIN")
D2=$(h_push_stage "$P" "$S2" "$REPO_BASIC")
D3=$(h_push_stage "$P" "$S3" "$REPO_TOKEN" --untag)
D1t=$(h_push_stage "$P" "$S1" "$REPO_TOKEN")
for d in "$D1" "$D2" "$D3" "$D1t"; do [[ "$d" =~ ^sha256:[0-9a-f]{64}$ ]] || h_fail "bad manifest digest '$d'"; done
assert_eq "$D1" "$D1t" "same image pushed twice gives the same manifest"
assert_eq "$S1" "$(h_registry_tags "$REPO_PLAIN")" "plain registry tags"
assert_eq "$S2" "$(h_registry_tags "$REPO_BASIC" alice:secret-a)" "htpasswd registry tags"
assert_eq "$(printf '%s\n' "$S1" "$S3" | sort)" "$(h_registry_tags "$REPO_TOKEN" bob:secret-b)" "token registry tags"
# raw curl + jq, as the brief asks
assert_eq "$S1" "$(curl -sf "http://$PLAIN/v2/group/$P/stages/tags/list" | jq -r '.tags[]')" "curl tags/list"
tok=$(curl -sf -u bob:secret-b "$TOKSRV/token?service=stagefs-test-registry&scope=repository:group/$P/stages:pull")
for k in token access_token expires_in issued_at; do
	jq -e --arg k "$k" 'has($k)' <<<"$tok" >/dev/null || h_fail "token JSON lacks $k: $tok"
done
assert_eq "$(jq -r .token <<<"$tok")" "$(jq -r .access_token <<<"$tok")" "token == access_token"
man=$(curl -sf -H "Authorization: Bearer $(jq -r .token <<<"$tok")" \
	-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
	"http://$TOKEN/v2/group/$P/stages/manifests/$S3")
assert_eq "application/vnd.docker.distribution.manifest.v2+json" "$(jq -r .mediaType <<<"$man")" "schema 2 manifest"
assert_eq "$ID3" "$(jq -r .config.digest <<<"$man")" "config digest = image ID"
assert_eq 4 "$(jq '.layers | length' <<<"$man")" "chain stage has 4 layers in the registry"
assert_eq "application/vnd.docker.image.rootfs.diff.tar.gzip" "$(jq -r '.layers[0].mediaType' <<<"$man")" "gzip layers"
man2=$(h_registry_curl -u alice:secret-a -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
	"http://$BASIC/v2/group/$P/stages/manifests/$S2")
assert_eq "$ID2" "$(jq -r .config.digest <<<"$man2")" "htpasswd manifest via h_registry_curl"
h_pass "h_push_stage to plain, htpasswd and token registries; tags and manifests seen with curl"

# pull back after removing the local images
h_docker rmi -f "$ID3" >/dev/null
assert_fail h_docker image inspect "$ID3"
h_docker pull -q "$REPO_TOKEN:$S3" >/dev/null
assert_eq "$ID3" "$(h_docker image inspect --format '{{.Id}}' "$REPO_TOKEN:$S3")" "token registry pull gives the same image ID"
h_docker rmi -f "$ID2" >/dev/null
h_docker pull -q "$REPO_BASIC:$S2" >/dev/null
assert_eq "$ID2" "$(h_docker image inspect --format '{{.Id}}' "$REPO_BASIC:$S2")" "htpasswd registry pull gives the same image ID"
h_docker rmi -f "$ID1" >/dev/null
h_docker pull -q "$REPO_PLAIN:$S1" >/dev/null
assert_eq "$ID1" "$(h_docker image inspect --format '{{.Id}}' "$REPO_PLAIN:$S1")" "plain registry pull gives the same image ID"
for x in "$REPO_PLAIN:$S1" "$REPO_BASIC:$S2" "$REPO_TOKEN:$S3"; do
	h_docker tag "$x" "werf-stages-storage/$P:${x##*:}"
done
h_pass "docker pull after docker rmi gives back the same image IDs"

# --- authentication failures ----------------------------------------------------------------
assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' "$TOKSRV/token?service=stagefs-test-registry")" "anonymous token request"
assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' -u bob:nope "$TOKSRV/token?service=stagefs-test-registry")" "wrong password at token server"
assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' -u nobody:secret-b "$TOKSRV/token?service=stagefs-test-registry")" "unknown user at token server"
assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' -u alice:nope "http://$BASIC/v2/")" "wrong password at htpasswd registry"
assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer not.a.jwt' "http://$TOKEN/v2/")" "garbage bearer token"
assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' "http://$TOKEN/v2/group/$P/stages/tags/list")" "anonymous at token registry"
if h_registry_curl -u bob:nope "http://$TOKEN/v2/group/$P/stages/tags/list" >/dev/null; then h_fail "wrong password listed tags"; fi
assert_eq 401 "$H_HTTP_CODE" "h_registry_curl with wrong password"
tok=$(curl -sf -u bob:secret-b -X POST -d "grant_type=password&username=bob&password=secret-b&service=stagefs-test-registry&scope=repository:x:pull" "$TOKSRV/token" | jq -r .access_token)
assert_ne "" "$tok" "OAuth2 password grant (POST)"
assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' -X POST -d "grant_type=password&username=bob&password=bad&service=stagefs-test-registry" "$TOKSRV/token")" "POST with wrong password"
# read-only user: pull yes, push no
assert_eq "$(printf '%s\n' "$S1" "$S3" | sort)" "$(h_registry_tags "$REPO_TOKEN" carol:secret-c)" "read-only user can list"
if h_registry_curl -u carol:secret-c --scope "repository:group/$P/stages:pull,push" -X POST \
	"http://$TOKEN/v2/group/$P/stages/blobs/uploads/" >/dev/null; then
	h_fail "read-only user could start an upload"
fi
assert_eq 401 "$H_HTTP_CODE" "read-only user push refused"
h_registry_curl -u bob:secret-b --scope "repository:group/$P/stages:pull,push" -X POST \
	"http://$TOKEN/v2/group/$P/stages/blobs/uploads/" >/dev/null || h_fail "bob could not start an upload: $H_HTTP_CODE"
assert_eq 202 "$H_HTTP_CODE" "read-write user may upload"
stats=$(curl -sf "$TOKSRV/stats")
[[ "$(jq .issued <<<"$stats")" -gt 0 && "$(jq .denied <<<"$stats")" -gt 0 ]] || h_fail "token server stats: $stats"
h_pass "wrong or missing credentials get 401; read-only token user cannot push"

# --- the kid form of the JWT header also works with distribution 2.8 --------------------------
h_start_registry --token bob:secret-b --jwt-header kid --var KIDREG
h_docker_login "$KIDREG" bob secret-b
h_push_stage "$P" "$S1" "$KIDREG/kid/stages" --untag >/dev/null
assert_eq "$S1" "$(h_registry_tags "$KIDREG/kid/stages" bob:secret-b)" "push with kid-signed tokens"
h_pass "token server JWT with libtrust kid header"

# --- registry stop / restart -----------------------------------------------------------------
h_stop_registry "$PLAIN"
assert_eq 000 "$(curl -s -o /dev/null -w '%{http_code}' "http://$PLAIN/v2/" || true)" "stopped registry does not answer"
h_restart_registry "$PLAIN"
assert_eq "$S1" "$(h_registry_tags "$REPO_PLAIN")" "restarted registry keeps its data"
h_pass "h_stop_registry / h_restart_registry"

# --- a stagefs mount, if the daemon is built -----------------------------------------------------
bin=$(_h_stagefs_bin)
case "${H_SELFTEST_MOUNT:-auto}" in
0) want=0 ;;
1) want=1 ;;
*) if [[ -x "$bin" ]]; then want=1; else want=0; fi ;;
esac
if ((want)); then
	h_mount "$REPO_PLAIN" "$H_TMP/mnt-reg" -o insecure
	ls "$H_TMP/mnt-reg" >/dev/null
	h_mount :local "$H_TMP/mnt-local"
	ls "$H_TMP/mnt-local" >/dev/null
	assert_exists "$(h_mount_log "$H_TMP/mnt-local")"
	h_umount "$H_TMP/mnt-reg"
	h_umount "$H_TMP/mnt-local"
	mountpoint -q "$H_TMP/mnt-reg" && h_fail "still mounted after h_umount"
	# a mount left mounted is cleaned up by the exit trap
	h_mount :local "$H_TMP/mnt-left"
	h_pass "h_mount / h_umount with $bin"
else
	h_log "no stagefs binary at $bin: mount part skipped"
fi

# --- h_wait_for ----------------------------------------------------------------------------------
(sleep 0.3; touch "$H_TMP/late") &
h_wait_for 10 test -e "$H_TMP/late"
if (h_wait_for 0.3 false) 2>/dev/null; then h_fail "h_wait_for did not time out"; fi
rm -f "$H_TMP/run/fail_msg"
h_pass "h_wait_for"
