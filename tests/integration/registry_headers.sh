#!/usr/bin/env bash
# HTTP as registries and proxies speak it (RFC 9110): manifests pushed without a top-level
# mediaType (real registry), served with a generic or parameterized Content-Type, and
# WWW-Authenticate with several challenges over one or two lines. Forms the real registry does
# not send come through tests/lib/rewrite_proxy.py in front of it, which only rewrites headers.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init
h_start_registry
S_OCI="$(printf 'a%.0s' {1..56})-1600000000001"
S_IDX="$(printf 'b%.0s' {1..56})-1600000000002"
S_DOCK="$(printf 'c%.0s' {1..56})-1600000000003"
MT_OCI=application/vnd.oci.image.manifest.v1+json
MT_IDX=application/vnd.oci.image.index.v1+json
MT_DOCK=application/vnd.docker.distribution.manifest.v2+json
for repo in raw json charset; do
	python3 "$H_LIB/pushraw.py" "$REGISTRY" "$repo/stages" "$S_OCI" oci 1 >"$H_TMP/$repo.oci"
	python3 "$H_LIB/pushraw.py" "$REGISTRY" "$repo/stages" "$S_IDX" oci-index 2 >"$H_TMP/$repo.idx"
	python3 "$H_LIB/pushraw.py" "$REGISTRY" "$repo/stages" "$S_DOCK" docker 3 >"$H_TMP/$repo.dock"
done
D_OCI=$(cat "$H_TMP/raw.oci")
D_IDX=$(cat "$H_TMP/raw.idx")
D_DOCK=$(cat "$H_TMP/raw.dock")
# The registry stored the documents as pushed: no mediaType at the top.
assert_eq null "$(h_registry_curl -H "Accept: $MT_OCI" "http://$REGISTRY/v2/raw/stages/manifests/$S_OCI" | jq .mediaType)" "OCI manifest pushed without mediaType"
assert_eq null "$(h_registry_curl -H "Accept: $MT_IDX" "http://$REGISTRY/v2/raw/stages/manifests/$S_IDX" | jq .mediaType)" "OCI index pushed without mediaType"

check_stage() { # MNT STAGE MEDIA_TYPE DIGEST BLOBS: index.json names them; every blob is what its name says
	local m=$1/$2 f
	assert_eq "$3" "$(jq -r '.manifests[0].mediaType' "$m/index.json")" "$2 media type in index.json"
	assert_eq "$4" "$(jq -r '.manifests[0].digest' "$m/index.json")" "$2 manifest digest"
	assert_eq "$5" "$(ls "$m/blobs/sha256" | wc -l)" "$2 blob count"
	for f in "$m"/blobs/sha256/*; do
		assert_eq "${f##*/}" "$(sha256sum <"$f" | cut -c1-64)" "$2 blob ${f##*/} bytes"
	done
	h_registry_curl -H "Accept: $3" "http://$REGISTRY/v2/raw/stages/manifests/$4" >"$H_TMP/pushed"
	assert_file_eq "$H_TMP/pushed" "$m/blobs/sha256/${4#sha256:}" "$2 manifest bytes as pushed"
}
check_all() { # MNT
	assert_eq "$(printf '%s\n' "$S_OCI" "$S_IDX" "$S_DOCK" | sort | xargs)" "$(ls "$1" | xargs)" "stages listed"
	check_stage "$1" "$S_OCI" "$MT_OCI" "$D_OCI" 3
	check_stage "$1" "$S_IDX" "$MT_IDX" "$D_IDX" 7
	check_stage "$1" "$S_DOCK" "$MT_DOCK" "$D_DOCK" 3
}
h_mount "$REGISTRY/raw/stages" "$H_TMP/raw"
check_all "$H_TMP/raw"
h_pass "OCI manifest and index without mediaType, straight from the registry"

cat >"$H_TMP/rules.json" <<RULES
[
 {"path": "^/v2/json/stages/manifests/", "status": 200, "set": [["Content-Type", "application/json"]]},
 {"path": "^/v2/charset/stages/manifests/$S_IDX\$", "status": 200,
  "set": [["Content-Type", "$MT_IDX; charset=utf-8"]]},
 {"path": "^/v2/charset/stages/manifests/$S_DOCK\$", "status": 200,
  "set": [["Content-Type", "Application/Vnd.Docker.Distribution.Manifest.V2+JSON ; charset=\"utf-8\""]]},
 {"path": "^/v2/charset/stages/manifests/", "status": 200,
  "set": [["Content-Type", "$MT_OCI; charset=utf-8"]]}
]
RULES
h_start_proxy rewrite_proxy.py "$REGISTRY" "$H_TMP/rules.json"
h_mount "$PROXY/json/stages" "$H_TMP/json"
check_all "$H_TMP/json"
assert_ne 0 "$(grep -c "rewrote GET /v2/json/stages/manifests/" "$PROXY_LOG")" "the proxy rewrote the answers"
h_pass "manifests served as application/json: the type from the document (OCI, index, Docker)"
h_mount "$PROXY/charset/stages" "$H_TMP/charset"
check_all "$H_TMP/charset"
assert_ne 0 "$(grep -c "rewrote GET /v2/charset/stages/manifests/sha256:" "$PROXY_LOG")" "children rewritten too"
h_pass "Content-Type with parameters and in other case: parameters ignored"

# Several challenges: a Basic registry behind a proxy that answers 401 with them.
h_start_registry --htpasswd alice:s3cret --var BASIC
for repo in two one neg; do
	python3 "$H_LIB/pushraw.py" "$BASIC" "$repo/stages" "$S_OCI" oci 4 alice:s3cret >"$H_TMP/basic.oci"
done
cat >"$H_TMP/auth-rules.json" <<'RULES'
[
 {"path": "^/v2/two/", "status": 401,
  "set": [["WWW-Authenticate", "Basic realm=\"R\""], ["WWW-Authenticate", "Negotiate"]]},
 {"path": "^/v2/one/", "status": 401, "set": [["WWW-Authenticate", "Negotiate, Basic realm=\"R\""]]},
 {"path": "^/v2/neg/", "status": 401,
  "set": [["WWW-Authenticate", "Negotiate"], ["WWW-Authenticate", "NTLM"]]}
]
RULES
h_start_proxy rewrite_proxy.py "$BASIC" "$H_TMP/auth-rules.json"
cfg=$H_TMP/proxy-config
mkdir -p "$cfg"
jq -n --arg p "$PROXY" --arg a "$(printf alice:s3cret | base64)" '{auths: {($p): {auth: $a}}}' >"$cfg/config.json"
for repo in two one; do
	h_mount "$PROXY/$repo/stages" "$H_TMP/auth-$repo" -o docker_config="$cfg"
	assert_eq "$S_OCI" "$(ls "$H_TMP/auth-$repo")" "$repo: listing"
	assert_eq "$(cat "$H_TMP/basic.oci")" "$(jq -r '.manifests[0].digest' "$H_TMP/auth-$repo/$S_OCI/index.json")" "$repo: manifest digest"
	assert_ne 0 "$(grep -c "rewrote GET /v2/$repo/stages/tags/list.* (401)" "$PROXY_LOG")" "$repo: challenged through the proxy"
done
h_pass "WWW-Authenticate: Basic then Negotiate on two lines, and Negotiate, Basic on one"
h_mount "$PROXY/neg/stages" "$H_TMP/auth-neg" -o docker_config="$cfg"
assert_errno EACCES ls "$H_TMP/auth-neg"
assert_contains "$(cat "$(h_mount_log "$H_TMP/auth-neg")")" 'no Basic or Bearer challenge to answer (WWW-Authenticate: Negotiate, NTLM)' "log names the challenges"
h_pass "only Negotiate and NTLM offered: EACCES, the challenges in the log"
for m in raw json charset auth-two auth-one auth-neg; do
	h_umount "$H_TMP/$m"
done
