#!/usr/bin/env bash
# A registry mount written: stage folders copied from :local (cp -r, rsync -a, skopeo) become
# gzip + Docker schema 2 images that `docker pull` gives back with the same image ID; registry to
# registry keeps every digest; registry to :local loads the image; rm -r deletes exactly that
# tag; bad input and a read-only credential change nothing.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init
h_start_dockerd
h_start_registry --var REG
h_start_registry --var REG2
h_start_registry --token rw:pw --token-readonly ro:pw --var REGT

read -r S1 I1 < <(h_make_stage app --layers 3 --layer-size 200000 --seed 71)
read -r S2 I2 < <(h_make_stage app --layers 1 --seed 72 --parent "$I1")
read -r S3 I3 < <(h_make_stage app --layers 2 --seed 73)
LOCAL=$H_TMP/local
R=$H_TMP/reg
R2=$H_TMP/reg2
h_mount :local "$LOCAL" -o project=app
h_mount "$REG/group/app/stages" "$R" -o insecure
h_mount "$REG2/group/app/stages" "$R2" -o insecure

manifest_of() { # HOST/REPO TAG -> manifest JSON
	h_registry_curl -H "Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json" \
		"http://${1%%/*}/v2/${1#*/}/manifests/$2"
}
pulled_id() { # REF -> image ID after a fresh pull
	h_docker rmi -f "$1" >/dev/null 2>&1 || true
	h_docker pull -q "$1" >/dev/null
	h_docker image inspect -f '{{.Id}}' "$1"
}

cp -r "$LOCAL/$S1" "$R/"
assert_eq "$S1" "$(ls "$R" | xargs)" "listed at once"
m=$(manifest_of "$REG/group/app/stages" "$S1")
assert_eq "application/vnd.docker.distribution.manifest.v2+json" "$(jq -r .mediaType <<<"$m")" "schema 2"
assert_eq "$I1" "$(jq -r .config.digest <<<"$m")" "config digest = image ID"
assert_eq "application/vnd.docker.image.rootfs.diff.tar.gzip" "$(jq -r '.layers | map(.mediaType) | unique | .[]' <<<"$m")" "gzip layers"
assert_eq 3 "$(jq '.layers | length' <<<"$m")" "layers"
assert_eq "$I1" "$(pulled_id "$REG/group/app/stages:$S1")" "docker pull gives the image ID"
skopeo inspect --tls-verify=false "docker://$REG/group/app/stages:$S1" >/dev/null
h_pass "cp -r from :local pushes gzip layers under Docker schema 2 with the same image ID"

# Both folders say what they are without a read of their blobs.
xattr() { python3 -c 'import os, sys; print(os.getxattr(sys.argv[1], sys.argv[2]).decode())' "$@"; }
assert_eq "$I1" "$(xattr "$LOCAL/$S1" user.stagefs.image_id)" ":local image ID"
assert_eq "$I1" "$(xattr "$R/$S1" user.stagefs.image_id)" "registry image ID"
assert_eq "$(h_docker image inspect -f '{{.Size}}' "$I1")" "$(xattr "$LOCAL/$S1" user.stagefs.size)" ":local size"
assert_eq "$(jq '[.config.size, (.layers[].size)] | add' <<<"$m")" \
	"$(( $(xattr "$R/$S1" user.stagefs.size) - $(jq -r '.manifests[0].size' "$R/$S1/index.json") ))" "registry size"
assert_eq "user.stagefs.image_id user.stagefs.size" \
	"$(python3 -c 'import os, sys; print(*sorted(os.listxattr(sys.argv[1])))' "$R/$S1")" "listed"
assert_eq ENODATA "$(h_errno 'os.getxattr(sys.argv[1], "user.stagefs.image_id")' "$R/$S1/index.json")" "files have none"
h_pass "user.stagefs.image_id and user.stagefs.size on stage folders"

rsync -a "$LOCAL/$S2" "$R/"
assert_eq "$I2" "$(jq -r .config.digest <<<"$(manifest_of "$REG/group/app/stages" "$S2")")" "rsync"
# S2 shares S1's three layers: their gzip blobs come from the mount's memo, not a new gzip.
assert_eq "$(jq -c '.layers[:3]' <<<"$(manifest_of "$REG/group/app/stages" "$S1")")" \
	"$(jq -c '.layers[:3]' <<<"$(manifest_of "$REG/group/app/stages" "$S2")")" "shared layers"
assert_eq "$I2" "$(pulled_id "$REG/group/app/stages:$S2")" "docker pull of the stage on a shared base"
# skopeo from one mount's layout into the other (it compresses the layers itself).
skopeo copy -q "oci:$LOCAL/$S3" "oci:$R/$S3"
assert_eq "$I3" "$(jq -r .config.digest <<<"$(manifest_of "$REG/group/app/stages" "$S3")")" "skopeo"
assert_eq "$I3" "$(pulled_id "$REG/group/app/stages:$S3")" "docker pull after skopeo"
h_pass "rsync -a and skopeo copy into the registry mount commit the same images"

# cp -a and tar -x too (each into a fresh repository's mount).
for tool in cp-a tar; do
	M=$H_TMP/reg-$tool
	h_mount "$REG/$tool/stages" "$M" -o insecure
	case $tool in
	cp-a) cp -a "$LOCAL/$S1" "$M/" ;;
	tar) (cd "$LOCAL" && tar -c "$S1") | (cd "$M" && tar -x) ;;
	esac
	assert_eq "$I1" "$(jq -r .config.digest <<<"$(manifest_of "$REG/$tool/stages" "$S1")")" "$tool"
	h_umount "$M"
	h_pass "$tool into the registry mount commits the same image"
done

# Again, all present: every call succeeds, nothing changes.
before=$(h_registry_tags "$REG/group/app/stages" | xargs)
cp -rn "$LOCAL/." "$R/"
cp -r "$LOCAL/$S1" "$R/"
assert_eq "$before" "$(h_registry_tags "$REG/group/app/stages" | xargs)" "tags unchanged"
h_pass "copying onto existing stages succeeds and changes nothing"

# Registry to registry keeps every digest.
cp -r "$R/$S1" "$R2/"
assert_eq "$(h_registry_curl -I -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$REG/v2/group/app/stages/manifests/$S1" | tr -d '\r' | awk 'tolower($1)=="docker-content-digest:"{print $2}')" \
	"$(h_registry_curl -I -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$REG2/v2/group/app/stages/manifests/$S1" | tr -d '\r' | awk 'tolower($1)=="docker-content-digest:"{print $2}')" "same manifest digest"
cmp "$R/$S1/index.json" "$R2/$S1/index.json"
h_pass "registry to registry keeps every digest"

# Registry to :local: the image is loaded under werf's name.
rm -r "$LOCAL/$S1"
id=$(h_docker image inspect -f '{{.Id}}' "werf-stages-storage/app:$S1" 2>/dev/null) || id=none
assert_eq none "$id" "removed locally"
cp -r "$R/$S1" "$LOCAL/"
assert_eq "$I1" "$(h_docker image inspect -f '{{.Id}}' "werf-stages-storage/app:$S1")" "loaded back"
h_pass "registry to :local loads the identical image"

# rm -r deletes exactly that tag, even when another tag shares the manifest.
h_docker tag "$REG/group/app/stages:$S1" "$REG/group/app/stages:keep-me" >/dev/null
h_docker push -q "$REG/group/app/stages:keep-me" >/dev/null
rm -r "$R/$S3"
assert_eq "$(printf '%s\n' "$S1" "$S2" keep-me | sort | xargs)" "$(h_registry_tags "$REG/group/app/stages" | xargs)" "only S3 went"
assert_eq "$(printf '%s\n' "$S1" "$S2" | sort | xargs)" "$(ls "$R" | xargs)" "listing"
h_pass "rm -r removes exactly one tag"

# Another image under an existing stage name: EEXIST, nothing changes.
mkdir -p "$H_TMP/other"
cp -r "$LOCAL/$S2" "$H_TMP/other/$S1"
jq -c --arg s "$S1" '.manifests[0].annotations["org.opencontainers.image.ref.name"]=$s' \
	"$LOCAL/$S2/index.json" >"$H_TMP/other/$S1/index.json"
assert_errno EEXIST cp -r "$H_TMP/other/$S1" "$R/"
assert_eq "$I1" "$(jq -r .config.digest <<<"$(manifest_of "$REG/group/app/stages" "$S1")")" "not overwritten"
h_pass "another image onto an existing stage is EEXIST"

# A pull-only credential: EACCES at the commit, no tag.
h_docker_login "$REGT" ro pw
RT=$H_TMP/regt
h_mount "$REGT/app/stages" "$RT"
assert_errno EACCES cp -r "$LOCAL/$S2" "$RT/"
assert_eq "" "$(h_registry_tags "$REGT/app/stages" rw:pw | xargs)" "no tag"
h_pass "a pull-only credential fails the copy with EACCES and leaves no tag"

# A registry that forbids deletes: rm -r fails with EPERM, the tag stays.
h_start_registry --no-delete --var REGND
RND=$H_TMP/regnd
h_mount "$REGND/app/stages" "$RND"
cp -r "$LOCAL/$S2" "$RND/"
assert_errno EPERM rm -r "$RND/$S2"
assert_eq "$S2" "$(h_registry_tags "$REGND/app/stages" | xargs)" "tag intact"
assert_contains "$(cat "$H_MOUNT_LOG")" "UNSUPPORTED" "the registry's reason is logged"
h_pass "a registry that forbids deletes: rm -r is EPERM and the tag stays"

# A layout whose manifest names a layer that never arrives: the copy itself succeeds (nothing
# is complete), nothing is committed, and the unmount drops it with a log line.
mkdir -p "$H_TMP/partial"
cp -r "$LOCAL/$S3" "$H_TMP/partial/"
man=$(jq -r '.manifests[0].digest' "$H_TMP/partial/$S3/index.json")
lost=$(jq -r '.layers[0].digest' "$H_TMP/partial/$S3/blobs/sha256/${man#sha256:}")
rm "$H_TMP/partial/$S3/blobs/sha256/${lost#sha256:}"
cp -r "$H_TMP/partial/$S3" "$RND/"
assert_eq "$S2" "$(h_registry_tags "$REGND/app/stages" | xargs)" "nothing committed"
log=$H_MOUNT_LOG
h_umount "$RND"
assert_contains "$(cat "$log")" "$S3: pending stage dropped at unmount, nothing committed (it lacked the layer $lost)" "log"
h_pass "a layout that never completes commits nothing and is dropped at unmount, logged"

# An image index into :local: Docker 20.10 cannot load one (EINVAL), nothing changes.
IDX="$(printf 'e%.0s' {1..56})-1600000000123"
python3 "$H_LIB/mkindex.py" "$H_TMP/idx" 61 >/dev/null
skopeo copy -q --all --preserve-digests --dest-tls-verify=false "oci:$H_TMP/idx" "docker://$REG/group/app/stages:$IDX"
h_wait_for 10 test -d "$R/$IDX" # pushed past the mount: listed after the ttl
before=$(h_docker images -q | sort | xargs)
assert_errno EINVAL cp -r "$R/$IDX" "$LOCAL/"
assert_eq "$before" "$(h_docker images -q | sort | xargs)" "no image loaded"
h_pass "an image index copied into :local is EINVAL"

# zstd layers into :local: Docker before 23 cannot read them (EINVAL with the reason).
skopeo copy -q --dest-compress-format zstd --dest-tls-verify=false "oci:$LOCAL/$S3" \
	"docker://$REG/zst/stages:$S3"
RZ=$H_TMP/regz
h_mount "$REG/zst/stages" "$RZ"
assert_eq "application/vnd.oci.image.layer.v1.tar+zstd" \
	"$(jq -r '.layers[0].mediaType' "$RZ/$S3/blobs/sha256/$(jq -r '.manifests[0].digest' "$RZ/$S3/index.json" | cut -c8-)")" "zstd layers"
rm -r "$LOCAL/$S3"
assert_errno EINVAL cp -r "$RZ/$S3" "$LOCAL/"
id=$(h_docker image inspect -f '{{.Id}}' "werf-stages-storage/app:$S3" 2>/dev/null) || id=none
assert_eq none "$id" "nothing loaded"
h_umount "$RZ"
h_pass "zstd layers into :local are EINVAL; nothing is loaded"

for m in "$RT" "$R2" "$R" "$LOCAL"; do h_umount "$m"; done
h_pass "every mount exits 0"
