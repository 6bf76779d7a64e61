#!/usr/bin/env bash
# Registry credentials: Basic (htpasswd) and the Bearer token flow, found as Docker finds them
# (auths in config.json, credHelpers); refused credentials are EACCES, never ENOENT.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init
h_start_dockerd
h_start_registry --htpasswd alice:s3cret --var BASIC
h_start_registry --token bob:t0ken --var TOKEN
read -r S1 ID1 < <(h_make_stage app --layers 2 --seed 21)
h_docker_login "$BASIC" alice s3cret
h_docker_login "$TOKEN" bob t0ken
h_push_stage app "$S1" "$BASIC/app/stages"
h_push_stage app "$S1" "$TOKEN/app/stages"

# config.json as `docker login` leaves it ("auths" with base64 user:password).
check_reads() { # MNT: the stage lists and its blobs are what their names say
	assert_eq "$S1" "$(ls "$1")" "listing"
	(cd "$1/$S1/blobs/sha256" && sha256sum ./* | while read -r sum f; do
		[[ "$sum" == "${f#./}" ]] || h_fail "blob $f has sha256 $sum"
	done)
	cfg=$(jq -r '.manifests[0].digest' "$1/$S1/index.json")
	assert_eq "$ID1" "$(jq -r .config.digest "$1/$S1/blobs/sha256/${cfg#sha256:}")" "image ID"
}
h_mount "$BASIC/app/stages" "$H_TMP/basic"
check_reads "$H_TMP/basic"
h_pass "Basic auth from docker login's config.json"
h_mount "$TOKEN/app/stages" "$H_TMP/token"
check_reads "$H_TMP/token"
h_pass "Bearer token flow from docker login's config.json"

# Wrong passwords and no credentials: EACCES, with the reason in the log.
bad=$H_TMP/bad-config
mkdir -p "$bad"
jq -n --arg b "$BASIC" --arg t "$TOKEN" --arg a "$(printf alice:wrong | base64)" \
	--arg o "$(printf bob:wrong | base64)" '{auths: {($b): {auth: $a}, ($t): {auth: $o}}}' >"$bad/config.json"
h_mount "$BASIC/app/stages" "$H_TMP/basic-bad" -o docker_config="$bad"
assert_errno EACCES ls "$H_TMP/basic-bad"
assert_contains "$(cat "$(h_mount_log "$H_TMP/basic-bad")")" "credentials refused" "log says why"
h_mount "$TOKEN/app/stages" "$H_TMP/token-bad" -o docker_config="$bad"
assert_errno EACCES ls "$H_TMP/token-bad"
assert_contains "$(cat "$(h_mount_log "$H_TMP/token-bad")")" "token server" "log says why"
h_pass "a wrong password gives EACCES (Basic and Bearer)"

none=$H_TMP/no-config
mkdir -p "$none"
echo '{}' >"$none/config.json"
h_mount "$BASIC/app/stages" "$H_TMP/basic-anon" -o docker_config="$none"
assert_errno EACCES ls "$H_TMP/basic-anon"
h_mount "$TOKEN/app/stages" "$H_TMP/token-anon" -o docker_config="$none"
assert_errno EACCES ls "$H_TMP/token-anon"
h_pass "no credentials gives EACCES"

# credHelpers: a docker-credential-* program answers for the host.
helpers=$H_TMP/helpers
mkdir -p "$helpers"
cat >"$helpers/docker-credential-sfstest" <<HELPER
#!/bin/sh
[ "\$1" = get ] || exit 1
read -r server
[ "\$server" = "$TOKEN" ] || { echo "credentials not found in native keychain"; exit 1; }
printf '{"ServerURL":"%s","Username":"bob","Secret":"t0ken"}\n' "\$server"
HELPER
chmod +x "$helpers/docker-credential-sfstest"
viahelper=$H_TMP/helper-config
mkdir -p "$viahelper"
jq -n --arg t "$TOKEN" '{credHelpers: {($t): "sfstest"}}' >"$viahelper/config.json"
PATH="$helpers:$PATH" h_mount "$TOKEN/app/stages" "$H_TMP/token-helper" -o docker_config="$viahelper"
check_reads "$H_TMP/token-helper"
h_pass "credHelpers: credentials from a docker-credential helper"

# Identity tokens: docker login against a token server that hands out refresh tokens stores
# "identitytoken" in config.json; stagefs trades it for access tokens (OAuth2 refresh grant).
h_start_registry --token dave:r3fresh --refresh-tokens --var REFRESH
h_docker_login "$REFRESH" dave r3fresh
assert_ne "" "$(jq -r --arg r "$REFRESH" '.auths[$r].identitytoken // empty' "$DOCKER_CONFIG/config.json")" \
	"docker login stored an identity token"
h_push_stage app "$S1" "$REFRESH/app/stages" >/dev/null
h_mount "$REFRESH/app/stages" "$H_TMP/refresh"
check_reads "$H_TMP/refresh"
h_pass "identity token from config.json (OAuth2 refresh grant)"

for m in basic token basic-bad token-bad basic-anon token-anon token-helper refresh; do
	h_umount "$H_TMP/$m"
done
h_pass "every daemon exits 0 after unmount"
