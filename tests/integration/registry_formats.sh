#!/usr/bin/env bash
# What else a registry may hold under a stage tag: an OCI manifest, and an image index
# (several platforms): the layout then holds the index, its manifests and all their blobs,
# and copies of it keep every digest.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init
h_start_registry
STAGE="$(printf 'e%.0s' {1..56})-1600000000123"
python3 "$H_LIB/mkindex.py" "$H_TMP/src" 61 >"$H_TMP/index-digest"
INDEX=$(cat "$H_TMP/index-digest")
skopeo copy -q --all --preserve-digests --dest-tls-verify=false "oci:$H_TMP/src" "docker://$REGISTRY/multi/stages:$STAGE"
# A single-platform OCI manifest (as buildah or skopeo push them), under another stage name.
ONE="$(printf 'f%.0s' {1..56})-1600000000456"
skopeo copy -q --preserve-digests --dest-tls-verify=false --override-arch amd64 "oci:$H_TMP/src" \
	"docker://$REGISTRY/multi/stages:$ONE"

h_mount "$REGISTRY/multi/stages" "$H_TMP/mnt"
M=$H_TMP/mnt
assert_eq "$(printf '%s\n' "$STAGE" "$ONE" | sort | xargs)" "$(ls "$M" | xargs)" "stages"

assert_eq "application/vnd.oci.image.index.v1+json" "$(jq -r '.manifests[0].mediaType' "$M/$STAGE/index.json")" "index media type"
assert_eq "$INDEX" "$(jq -r '.manifests[0].digest' "$M/$STAGE/index.json")" "the index as pushed"
# Every blob of the source layout is there, and nothing else.
assert_eq "$(ls "$H_TMP/src/blobs/sha256" | sort)" "$(ls "$M/$STAGE/blobs/sha256")" "blobs: index, manifests, configs, layers"
for f in "$H_TMP"/src/blobs/sha256/*; do
	assert_file_eq "$f" "$M/$STAGE/blobs/sha256/${f##*/}"
done
h_pass "an image index: the index, both platform manifests and all their blobs, exact bytes"

skopeo copy -q --all --preserve-digests --dest-tls-verify=false "oci:$M/$STAGE" "docker://$REGISTRY/copy/stages:$STAGE"
assert_eq "$INDEX" "$(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/copy/stages:$STAGE" | sha256sum | sed 's/^/sha256:/; s/ .*//')" "copy keeps the index digest"
h_pass "skopeo copy --all of the layout keeps the index digest"

m1=$(jq -r '.manifests[0].digest' "$M/$ONE/index.json")
assert_eq "application/vnd.oci.image.manifest.v1+json" "$(jq -r '.manifests[0].mediaType' "$M/$ONE/index.json")" "OCI manifest type"
assert_eq "$(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/multi/stages:$ONE" | sha256sum | cut -c1-64)" "${m1#sha256:}" "manifest as pushed"
h_pass "an OCI manifest is served as pushed"

# Both copied with cp -r into another repository's mount: every digest kept (the index is put
# after its children, the manifests as they are).
h_mount "$REGISTRY/copy2/stages" "$H_TMP/mnt2"
cp -r "$M/$STAGE" "$M/$ONE" "$H_TMP/mnt2/"
assert_eq "$INDEX" "$(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/copy2/stages:$STAGE" | sha256sum | sed 's/^/sha256:/; s/ .*//')" "cp -r keeps the index digest"
assert_eq "$m1" "$(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/copy2/stages:$ONE" | sha256sum | sed 's/^/sha256:/; s/ .*//')" "cp -r keeps the manifest digest"
diff <(cd "$M/$STAGE" && find . -type f | sort | xargs sha256sum) <(cd "$H_TMP/mnt2/$STAGE" && find . -type f | sort | xargs sha256sum)
h_pass "cp -r of an image index and an OCI manifest between registry mounts keeps every digest"
h_umount "$H_TMP/mnt2"
h_umount "$M"
