#!/usr/bin/env bash
# A registry repository mounted read-only: the tree, exact bytes, standard tools, the ttl.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init
h_start_dockerd
h_start_registry
REPO=$REGISTRY/web/catalog/myproject/stages

# Three stages, one a child of another, as werf builds them; a werf record; a foreign tag.
read -r S1 ID1 < <(h_make_stage myproject --layers 3 --layer-size 300000 --seed 11)
read -r S2 ID2 < <(h_make_stage myproject --layers 2 --seed 12 --parent "$ID1")
read -r S3 ID3 < <(h_make_stage myproject --layers 1 --seed 13)
for s in "$S1" "$S2" "$S3"; do h_push_stage myproject "$s" "$REPO"; done
h_make_record myproject managed-image __nameless__ >/dev/null
h_push_record myproject managed-image __nameless__ "$REPO"
h_docker tag "werf-stages-storage/myproject:$S3" "$REPO:latest"
h_docker push "$REPO:latest" >/dev/null

# Bad arguments: exit 2 with the reason, nothing mounted.
bin=$(_h_stagefs_bin)
mkdir -p "$H_TMP/never"
for bad in "$REGISTRY/Web/Stages" "$REGISTRY/web/stages:latest" "https://$REGISTRY/web" "$REGISTRY/web//stages"; do
	rc=0
	out=$("$bin" -f "$bad" "$H_TMP/never" 2>&1) || rc=$?
	assert_eq 2 "$rc" "exit status for '$bad'"
	assert_contains "$out" "stagefs: " "a reason for '$bad'"
done
rc=0
out=$("$bin" -f "$REPO" 2>&1) || rc=$?
assert_eq 2 "$rc" "exit status without a mount point"
assert_eq "stagefs: need STORAGE and MOUNTPOINT (see --help)" "$out" "message"
rc=0
out=$("$bin" -f 127.0.0.1:1/web/stages "$H_TMP/never" 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status for a registry that is not there"
assert_contains "$out" "registry 127.0.0.1:1 unreachable" "message"
if mountpoint -q "$H_TMP/never"; then h_fail "a failed mount left a mount behind"; fi
h_pass "bad arguments and an unreachable registry fail with the reason"

MNT=$H_TMP/mnt
h_mount "$REPO" "$MNT" -o ttl=1

# The tree: exactly the three stages, nothing else.
assert_eq "$(printf '%s\n' "$S1" "$S2" "$S3" | sort)" "$(ls "$MNT")" "stage folders"
assert_eq "blobs index.json oci-layout" "$(ls "$MNT/$S1" | xargs)" "stage folder entries"
h_pass "only stages are folders"

for s in "$S1" "$S2" "$S3"; do
	d=$MNT/$s
	assert_eq '{"imageLayoutVersion":"1.0.0"}' "$(cat "$d/oci-layout")" "oci-layout"
	assert_eq 1 "$(jq '.manifests | length' "$d/index.json")" "one manifest"
	assert_eq "$s" "$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$d/index.json")" "ref name"
	mdigest=$(jq -r '.manifests[0].digest' "$d/index.json")
	# The manifest is the registry's bytes: same digest, same bytes, same media type.
	h_registry_curl -H "Accept: application/vnd.docker.distribution.manifest.v2+json" \
		"http://$REGISTRY/v2/web/catalog/myproject/stages/manifests/$s" >"$H_TMP/manifest"
	assert_file_eq "$H_TMP/manifest" "$d/blobs/sha256/${mdigest#sha256:}"
	assert_eq "application/vnd.docker.distribution.manifest.v2+json" \
		"$(jq -r '.manifests[0].mediaType' "$d/index.json")" "manifest media type"
	assert_eq "$(stat -c %s "$H_TMP/manifest")" "$(jq -r '.manifests[0].size' "$d/index.json")" "manifest size"
	# Every blob is named by its sha256, sized exactly, and is what the registry serves.
	want=$( (jq -r '.config.digest, .layers[].digest' "$H_TMP/manifest"; echo "$mdigest") | sed 's/^sha256://' | sort -u)
	assert_eq "$want" "$(ls "$d/blobs/sha256")" "blob names"
	(cd "$d/blobs/sha256" && sha256sum ./* | while read -r sum f; do
		[[ "$sum" == "${f#./}" ]] || h_fail "blob $f has sha256 $sum"
	done)
	for l in $(jq -r '.layers[] | "\(.digest)=\(.size)"' "$H_TMP/manifest"); do
		dg=${l%%=*}
		assert_eq "${l#*=}" "$(stat -c %s "$d/blobs/sha256/${dg#sha256:}")" "layer size"
	done
	h_registry_curl "http://$REGISTRY/v2/web/catalog/myproject/stages/blobs/$(jq -r .config.digest "$H_TMP/manifest")" >"$H_TMP/config"
	cfg=$(jq -r .config.digest "$H_TMP/manifest")
	assert_file_eq "$H_TMP/config" "$d/blobs/sha256/${cfg#sha256:}"
	# Times are the stage's creation time.
	ms=${s#*-}
	assert_eq "$((ms / 1000))" "$(stat -c %Y "$d")" "stage mtime"
	assert_eq "$((ms / 1000))" "$(stat -c %Y "$d/blobs/sha256/${cfg#sha256:}")" "blob mtime"
	assert_eq "555" "$(stat -c %a "$d")" "stage mode"
	assert_eq "444" "$(stat -c %a "$d/index.json")" "file mode"
done
assert_eq "$ID1" "$(jq -r .config.digest "$MNT/$S1/blobs/sha256/$(jq -r '.manifests[0].digest' "$MNT/$S1/index.json" | cut -c8-)")" "config digest is the image ID"
h_pass "layout, digests, sizes, bytes and times are exact"

# cp -r out of the mount gives the same tree.
cp -r "$MNT/$S2" "$H_TMP/copy"
diff -r "$MNT/$S2" "$H_TMP/copy"
h_pass "cp -r copies a stage out"

# skopeo reads the layout; the copy in another repository pulls as the very same image.
skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$MNT/$S2" "docker://$REGISTRY/copy/stages:$S2"
h_docker rmi "werf-stages-storage/myproject:$S2" "$REPO:$S2" >/dev/null
h_docker pull -q "$REGISTRY/copy/stages:$S2" >/dev/null
assert_eq "$ID2" "$(h_docker image inspect --format '{{.Id}}' "$REGISTRY/copy/stages:$S2")" "image ID after skopeo copy and docker pull"
h_pass "skopeo copy --preserve-digests oci:MNT/STAGE then docker pull gives the image ID"

# Only stage folders can be made (writing is tested in registry_write).
assert_errno EINVAL mkdir "$MNT/new"
assert_errno ENOENT stat "$MNT/latest"
assert_errno ENOENT stat "$MNT/managed-image-__nameless__"
assert_errno ENOENT stat "$MNT/$S1/blobs/sha256/$(printf '0%.0s' {1..64})"
h_pass "bad names are EINVAL, ENOENT only for what does not exist"

# A stage deleted in the registry disappears after the ttl; a pushed one appears.
digest=$(jq -r '.manifests[0].digest' "$MNT/$S3/index.json")
h_registry_curl -X DELETE "http://$REGISTRY/v2/web/catalog/myproject/stages/manifests/$digest" >/dev/null ||
	h_fail "DELETE $digest: HTTP $H_HTTP_CODE"
read -r S4 _ < <(h_make_stage myproject --layers 1 --seed 14)
h_push_stage myproject "$S4" "$REPO"
sleep 1.5
assert_eq "$(printf '%s\n' "$S1" "$S2" "$S4" | sort)" "$(ls "$MNT")" "listing after the ttl"
assert_errno ENOENT stat "$MNT/$S3"
h_pass "deleted stage disappears and a new one appears after the ttl"

# One connection pool: the requests so far went over a few kept-alive connections.
ours=$(grep 'msg="response completed"' "$H_TMP/log/registry-1.log" | grep 'useragent=stagefs' || true)
reqs=$(grep -c . <<<"$ours")
conns=$(sed -n 's/.*remoteaddr="\([^"]*\)".*/\1/p' <<<"$ours" | sort -u | wc -l)
h_log "stagefs made $reqs requests over $conns connections"
((reqs >= 10 && conns * 4 <= reqs)) || h_fail "$reqs requests over $conns connections: no reuse"
h_pass "requests reuse connections ($reqs requests, $conns connections)"
# Streaming reads: each blob was fetched once, however many reads cp, sha256sum and skopeo made.
gets=$(grep '"GET /v2/web/catalog/myproject/stages/blobs/' "$H_TMP/log/registry-1.log" | grep '"stagefs/' |
	sed 's/.*blobs\/\(sha256:[0-9a-f]*\).*/\1/' | sort)
assert_ne "" "$gets" "blob requests seen"
assert_eq "" "$(uniq -d <<<"$gets")" "no blob fetched twice"
h_pass "one GET per blob, not per read ($(wc -l <<<"$gets") blobs)"

# A second read costs no network: a mount with a long ttl reads its cached blobs with the
# registry gone; what needs the registry fails with EIO (never ENOENT) and the log says why.
MNT2=$H_TMP/mnt2
h_mount "$REPO" "$MNT2" -o ttl=600
sum1=$(cat "$MNT2/$S1"/blobs/sha256/* | sha256sum)
h_stop_registry "$REGISTRY"
sync
echo 3 >/proc/sys/vm/drop_caches
assert_eq "$sum1" "$(cat "$MNT2/$S1"/blobs/sha256/* | sha256sum)" "cached read with the registry down"
sleep 1.5
assert_errno EIO ls "$MNT"
assert_contains "$(cat "$(h_mount_log "$MNT")")" "$REGISTRY" "the log names the registry"
h_pass "cached blobs need no network; registry down is EIO with a logged reason"
h_umount "$MNT2"
h_restart_registry "$REGISTRY"

h_umount "$MNT"
h_pass "daemon exits 0 after unmount"
