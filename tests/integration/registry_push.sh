#!/usr/bin/env bash
# Runs registry_push (the registry client's write half in C) against real registries: a
# token-auth one with a read-write and a pull-only user, then one with deletes disabled.
# The image it pushes is then pulled by skopeo and by docker (same image ID = its config).
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init
h_start_dockerd
h_start_registry --token carol:pa55 --token-readonly rita:r3ad --var REG
h_docker_login "$REG" carol pa55
ro=$H_TMP/ro
mkdir -p "$ro"
jq -n --arg r "$REG" --arg a "$(printf rita:r3ad | base64)" '{auths: {($r): {auth: $a}}}' >"$ro/config.json"

# a small real layer: a few files, one of them compressible
layer=$H_TMP/work/layer
mkdir -p "$layer/etc" "$layer/data"
printf 'hello from stagefs\n' >"$layer/etc/greeting"
seq 1 200000 >"$layer/data/numbers"
tar -C "$layer" --sort=name --owner=0 --group=0 --mtime=@0 -cf "$H_TMP/work/layer.tar" etc data

out=$H_TMP/work/out
REGISTRY=$REG REPO=push/stages RO_CONFIG=$ro LAYER_TAR=$H_TMP/work/layer.tar OUT=$out MODE=full \
	"$REGISTRY_PUSH" || h_fail "registry_push (full) failed"
h_pass "blobs small and chunked, HEAD, manifests, delete_tag, pull-only credential"
# shellcheck disable=SC1090
. "$out"

# What the C program pushed is a valid image for other clients: "one" was deleted, "two" stays.
insp=$(skopeo inspect --tls-verify=false --authfile "$DOCKER_CONFIG/config.json" "docker://$REG/push/stages:two") ||
	h_fail "skopeo inspect failed"
[[ "$(jq -r .Digest <<<"$insp")" == "$MANIFEST" ]] || h_fail "skopeo: digest $(jq -r .Digest <<<"$insp"), want $MANIFEST"
[[ "$(jq -r '.Layers[0]' <<<"$insp")" == "$LAYER" ]] || h_fail "skopeo: layer $(jq -r '.Layers[0]' <<<"$insp"), want $LAYER"
h_pass "skopeo inspect: manifest and layer digests"
h_docker pull -q "$REG/push/stages:two" >/dev/null || h_fail "docker pull failed"
id=$(h_docker image inspect -f '{{.Id}}' "$REG/push/stages:two")
[[ "$id" == "$CONFIG" ]] || h_fail "docker pull: image ID $id, want $CONFIG"
# docker unpacked our gzip layer (1 MiB members) and found the DiffID of the config
h_docker create --name c1 "$REG/push/stages:two" true >/dev/null
h_docker cp c1:/data/numbers "$H_TMP/work/numbers" >/dev/null
cmp "$H_TMP/work/numbers" "$layer/data/numbers" || h_fail "docker: the layer's file differs"
h_pass "docker pull: image ID is the config digest, layer contents intact"
[[ "$(h_registry_tags "$REG/push/stages" carol:pa55)" == two ]] || h_fail "tags: $(h_registry_tags "$REG/push/stages" carol:pa55)"
h_pass "only tag 'two' is left"

# Deletes disabled: EPERM, and the tag is untouched.
h_start_registry --no-delete --var REG2
skopeo copy -q --src-tls-verify=false --dest-tls-verify=false --src-authfile "$DOCKER_CONFIG/config.json" \
	"docker://$REG/push/stages:two" "docker://$REG2/push/stages:two" || h_fail "skopeo copy to the second registry failed"
REGISTRY=$REG2 REPO=push/stages RO_CONFIG=$ro LAYER_TAR=$H_TMP/work/layer.tar OUT=$out MODE=nodelete \
	"$REGISTRY_PUSH" || h_fail "registry_push (nodelete) failed"
[[ "$(h_registry_tags "$REG2/push/stages")" == two ]] || h_fail "tags after a refused delete: $(h_registry_tags "$REG2/push/stages")"
h_pass "a registry that forbids deletes: EPERM, tag intact"
