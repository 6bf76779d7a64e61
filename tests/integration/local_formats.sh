#!/usr/bin/env bash
# :local against Docker engines as they are in the field (issue 6 section 1):
# - repeated layers [A, B, A] loaded into the real dockerd 20.10, whose export writes the
#   second copy as a symlink entry;
# - a fake Docker 29 (tests/lib/fake_engine.py) that refuses API versions below 1.44, serving
#   every export form: docker save <= 24 (symlink and hard link copies), Docker 25-28 OCI-style
#   archives, and the containerd image store (Id = index or manifest digest, gzip/zstd layers);
# - engines with no API version in common (refused with the reason) and a pre-1.25 one.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init

FE=$H_LIB/fake_engine.py
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json

# start_engine VAR API MIN: a fake engine on $H_TMP/VAR.sock serving $H_TMP/fe/*; log VAR.log
start_engine() {
	local sock=$H_TMP/$1.sock pid
	rm -f "$sock" "$H_TMP/$1.log"
	"$H_PYTHON" "$FE" serve --socket "$sock" --api "$2" --min-api "$3" --log "$H_TMP/$1.log" \
		"$H_TMP"/fe/* </dev/null >"$H_TMP/log/$1.log" 2>&1 &
	pid=$!
	h_on_cleanup "kill $pid 2>/dev/null || true"
	h_wait_for 10 test -S "$sock" || h_fail "fake engine $1 did not start: $(cat "$H_TMP/log/$1.log")"
}

# magic FILE: what the first bytes say (gzip, zstd, or tar)
magic() {
	case $(head -c4 "$1" | od -An -tx1 | tr -d ' \n') in
	1f8b*) echo gzip ;;
	28b52ffd) echo zstd ;;
	*) echo tar ;;
	esac
}

# check_layout DIR INFO: the stage folder DIR against what fake_engine.py says (INFO = image.json):
# its ref name, manifest (the stored one for the containerd store), config digest (the stage's
# identity), layers [A, B, A] exactly, 4 blobs each named by its sha256, layer types = bytes.
check_layout() {
	local d=$1 info=$2 form m mf want_m blobs want_blobs b
	form=$(jq -r .form "$info")
	assert_eq "$(jq -r .stage "$info")" \
		"$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$d/index.json")" "$form: ref name"
	assert_eq 1 "$(jq '.manifests | length' "$d/index.json")" "$form: one manifest in index.json"
	m=$(jq -r '.manifests[0].digest' "$d/index.json")
	mf=$d/blobs/sha256/${m#sha256:}
	want_m=$(jq -r '.manifest // empty' "$info")
	if [[ -n "$want_m" ]]; then
		assert_eq "$want_m" "$m" "$form: the manifest as stored"
		assert_eq "$(jq -r .manifest_media_type "$info")" "$(jq -r '.manifests[0].mediaType' "$d/index.json")" \
			"$form: index.json names the manifest's type"
	else
		assert_eq "$OCI_MANIFEST" "$(jq -r '.manifests[0].mediaType' "$d/index.json")" "$form: manifest type"
		assert_eq "$OCI_MANIFEST" "$(jq -r .mediaType "$mf")" "$form: manifest's own type"
	fi
	assert_eq "$(jq -r .config "$info")" "$(jq -r .config.digest "$mf")" "$form: config digest"
	assert_eq "$(jq -c '[.layers[] | {digest, size, mediaType}]' "$info")" \
		"$(jq -c '[.layers[] | {digest, size, mediaType}]' "$mf")" "$form: layers [A, B, A]"
	blobs=$(ls "$d/blobs/sha256" | sort | xargs)
	want_blobs=$( (echo "${m#sha256:}"; jq -r '.config, .layers[].digest' "$info" | sed 's/^sha256://') | sort -u | xargs)
	assert_eq "$want_blobs" "$blobs" "$form: 4 blobs (manifest, config, A, B)"
	assert_eq 4 "$(wc -w <<<"$blobs")" "$form: blob count"
	for b in $blobs; do
		assert_eq "$b" "$(sha256sum "$d/blobs/sha256/$b" | cut -d' ' -f1)" "$form: blob $b content"
	done
	jq -r '.layers[] | "\(.digest) \(.mediaType)"' "$mf" | while read -r b mt; do
		case $mt in
		*gzip) want=gzip ;;
		*zstd) want=zstd ;;
		*) want=tar ;;
		esac
		assert_eq "$want" "$(magic "$d/blobs/sha256/${b#sha256:}")" "$form: layer $b is $mt"
	done
}

FORMS="classic classic-hardlink oci-classic oci-legacy-links containerd-index containerd-manifest"
for f in $FORMS; do
	"$H_PYTHON" "$FE" build "$f" --project fmt --seed 7 --out "$H_TMP/fe/$f" >/dev/null
done

# ---- a fake Docker 29: API 1.44..1.52, every export form
start_engine d29 1.52 1.44
MNT=$H_TMP/mnt
h_mount :local "$MNT" -o docker_host="unix://$H_TMP/d29.sock" -o project=fmt
want=$(for f in $FORMS; do jq -r .stage "$H_TMP/fe/$f/image.json"; done | sort | xargs)
assert_eq "$want" "$(ls "$MNT" | xargs)" "stages of every form"
for f in $FORMS; do
	check_layout "$MNT/$(jq -r .stage "$H_TMP/fe/$f/image.json")" "$H_TMP/fe/$f/image.json"
done
# Every versioned request used 1.52 (1.41 gets 400 "too old" from this engine).
assert_eq "" "$(grep '^/v[0-9]' "$H_TMP/d29.log" | grep -v '^/v1\.52/' || true)" "only /v1.52/ requests"
assert_eq 6 "$(grep -c '/get$' "$H_TMP/d29.log")" "one export per image"
h_pass "a Docker 29: API 1.52 negotiated; containerd store, OCI-style and classic exports read, [A, B, A] and 4 blobs each"

# The same stages again from a fresh mount that reuses the cache (layouts from the meta files).
CACHE=$(sed -n 's/.*cache_dir=\([^ ]*\).*/\1/p' "$(h_mount_log "$MNT")" | head -1)
h_umount "$MNT"
h_mount :local "$MNT" -o docker_host="unix://$H_TMP/d29.sock" -o project=fmt -o cache_dir="$CACHE"
for f in $FORMS; do
	check_layout "$MNT/$(jq -r .stage "$H_TMP/fe/$f/image.json")" "$H_TMP/fe/$f/image.json"
done
assert_eq 6 "$(grep -c '/get$' "$H_TMP/d29.log")" "no export again: layouts known from the cache"
h_umount "$MNT"
h_pass "the cache keeps each form's layout (manifest as stored, media types) across mounts"

# ---- no version in common: the mount is refused with the reason, before anything mounts
start_engine d99 1.60 1.53
rc=0
out=$("$(_h_stagefs_bin)" -f -o docker_host="unix://$H_TMP/d99.sock" -o cache_dir="$H_TMP/c99" :local "$MNT" 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status with no common API version"
assert_eq "stagefs: unix://$H_TMP/d99.sock: Docker speaks API 1.53..1.60 and stagefs 1.24..1.52: no version in common (a newer stagefs is needed)" \
	"$out" "message"
assert_eq "/version" "$(cat "$H_TMP/d99.log")" "only /version was asked"
h_pass "an engine with no API version in common is refused at mount time with both ranges"

# ---- a daemon before API 1.25 (no MinAPIVersion; no reference filter on images/json)
start_engine d24 1.24 -
h_mount :local "$MNT" -o docker_host="unix://$H_TMP/d24.sock" -o project=fmt
assert_eq "$want" "$(ls "$MNT" | xargs)" "stages through API 1.24"
assert_eq "" "$(grep '^/v[0-9]' "$H_TMP/d24.log" | grep -v '^/v1\.24/' || true)" "only /v1.24/ requests"
assert_eq "" "$(grep 'reference' "$H_TMP/d24.log" || true)" "no reference filter before 1.25"
h_umount "$MNT"
h_pass "API 1.24: negotiated, listed without the reference filter"

# ---- the real dockerd 20.10: [A, B, A] loaded from a docker save archive, exported again by
# Docker with the second copy as a symlink entry
h_start_dockerd
h_docker load -i "$H_TMP/fe/classic/archive.tar" >/dev/null
h_docker load -i "$H_TMP/fe/classic-hardlink/archive.tar" >/dev/null
ID=$(jq -r .id "$H_TMP/fe/classic/image.json")
REF=$(jq -r .ref "$H_TMP/fe/classic/image.json")
assert_eq "$ID" "$(h_docker image inspect --format '{{.Id}}' "$REF")" "loaded image ID"
assert_eq 3 "$(h_docker image inspect --format '{{len .RootFS.Layers}}' "$REF")" "three layers in Docker"
links=$(h_docker save "$REF" | tar tvf - | grep -c '^l.*/layer.tar -> \.\./[0-9a-f]*/layer.tar$' || true)
assert_eq 1 "$links" "Docker 20.10's export has the repeated layer as a symlink"
h_mount :local "$MNT" -o project=fmt
assert_eq "$(for f in classic classic-hardlink; do jq -r .stage "$H_TMP/fe/$f/image.json"; done | sort | xargs)" \
	"$(ls "$MNT" | xargs)" "the loaded stages"
for f in classic classic-hardlink; do
	check_layout "$MNT/$(jq -r .stage "$H_TMP/fe/$f/image.json")" "$H_TMP/fe/$f/image.json"
done
h_umount "$MNT"
h_pass "real dockerd: a stage with layers [A, B, A] reads (manifest [A, B, A], 4 blobs, config = image ID)"
