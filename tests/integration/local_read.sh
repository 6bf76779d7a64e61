#!/usr/bin/env bash
# The Docker daemon (:local) mounted read-only: werf's projects and stages, exact bytes,
# stable digests, one export per image, and a daemon that goes away.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init
h_start_dockerd
h_start_registry

read -r A1 IA1 < <(h_make_stage alpha --layers 3 --layer-size 200000 --seed 41)
read -r A2 IA2 < <(h_make_stage alpha --layers 2 --seed 42 --parent "$IA1")
read -r A3 IA3 < <(h_make_stage alpha --layers 1 --seed 43)
read -r B1 IB1 < <(h_make_stage beta --layers 2 --seed 44)
# What must not show: werf's records, foreign tags, a stage-named tag without werf's labels,
# and a stage whose werf label names another project.
for k in "managed-image __nameless__" "metadata backend-0123456789abcdef" "client-id 8c1bba3c-1589786063772"; do
	h_make_record alpha $k >/dev/null
done
h_tag_foreign "$IA1" werf-stages-storage/alpha:latest
h_tag_foreign "$IA1" myapp:1.0
nolabel="$(printf 'c%.0s' {1..56})-1589786063001"
python3 "$H_LIB/mkstage.py" record --ref "werf-stages-storage/alpha:$nolabel" --out - --info /dev/null |
	h_docker load >/dev/null
h_tag_foreign "$IB1" "werf-stages-storage/alpha:$(printf 'd%.0s' {1..56})-1589786063002"

# No daemon at the socket: the mount fails at once and says why.
rc=0
out=$("$(_h_stagefs_bin)" -f -o docker_host="unix://$H_TMP/none.sock" :local "$H_TMP" 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status without a daemon"
assert_eq "stagefs: no Docker daemon socket at unix://$H_TMP/none.sock (is dockerd running?)" "$out" "message"
rc=0
out=$("$(_h_stagefs_bin)" -f -o docker_host=ssh://example :local "$H_TMP" 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status for a bad docker_host"
assert_contains "$out" "use unix:///path/to/docker.sock or tcp://host:port" "message"
# A user who may not use the socket: EACCES-worthy words, exit 1, before anything mounts.
nobody_dir=$(mktemp -d /tmp/sfs-nobody.XXXXXX)
chmod 1777 "$nobody_dir"
h_on_cleanup "rm -rf '$nobody_dir'"
rc=0
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$(_h_stagefs_bin)" -f \
	-o cache_dir="$nobody_dir/cache" -o docker_host="$DOCKER_HOST" :local "$nobody_dir" 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status without access to the socket"
assert_eq "stagefs: permission denied on the Docker socket $DOCKER_HOST (run as root or join the docker group)" \
	"$out" "message"
h_pass "a missing daemon, a bad docker_host or a socket we may not use fails the mount with the reason"

MNT=$H_TMP/mnt
h_mount :local "$MNT" -o ttl=1
assert_eq "alpha beta" "$(ls "$MNT" | xargs)" "projects"
assert_eq "$(printf '%s\n' "$A1" "$A2" "$A3" | sort | xargs)" "$(ls "$MNT/alpha" | xargs)" "alpha's stages"
assert_eq "$B1" "$(ls "$MNT/beta")" "beta's stages"
h_pass "the tree: projects, then exactly their stages"

check_stage() { # DIR STAGE IMAGE_ID REF
	local d=$1 s=$2 id=$3 ref=$4 m mf
	assert_eq "$s" "$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$d/index.json")" "ref name"
	m=$(jq -r '.manifests[0].digest' "$d/index.json")
	mf=$d/blobs/sha256/${m#sha256:}
	assert_eq "application/vnd.oci.image.manifest.v1+json" "$(jq -r .mediaType "$mf")" "manifest type"
	assert_eq "$id" "$(jq -r .config.digest "$mf")" "config digest is the image ID"
	assert_eq "$id" "sha256:$(sha256sum <"$d/blobs/sha256/${id#sha256:}" | cut -c1-64)" "config bytes hash to the image ID"
	assert_eq "$(h_docker image inspect --format '{{json .RootFS.Layers}}' "$ref" | jq -r '.[]')" \
		"$(jq -r '.layers[].digest' "$mf")" "layers are the daemon's, in order"
	for l in $(jq -r '.layers[] | "\(.digest)=\(.size)"' "$mf"); do
		dg=${l%%=*}
		assert_eq "${l#*=}" "$(stat -c %s "$d/blobs/sha256/${dg#sha256:}")" "layer size"
	done
	(cd "$d/blobs/sha256" && sha256sum ./* | while read -r sum f; do
		[[ "$sum" == "${f#./}" ]] || h_fail "blob $f has sha256 $sum"
	done)
	assert_eq "$((${s#*-} / 1000))" "$(stat -c %Y "$d/index.json")" "mtime"
}
check_stage "$MNT/alpha/$A1" "$A1" "$IA1" "werf-stages-storage/alpha:$A1"
check_stage "$MNT/alpha/$A2" "$A2" "$IA2" "werf-stages-storage/alpha:$A2"
check_stage "$MNT/beta/$B1" "$B1" "$IB1" "werf-stages-storage/beta:$B1"
h_pass "config = image ID, layers = the daemon's export, exact sizes and times"

# Stable digests: another mount with its own cache makes the same bytes.
h_mount :local "$H_TMP/mnt2" -o project=alpha
assert_eq "$(printf '%s\n' "$A1" "$A2" "$A3" | sort | xargs)" "$(ls "$H_TMP/mnt2" | xargs)" "project= at the root"
for s in "$A1" "$A2" "$A3"; do
	assert_file_eq "$MNT/alpha/$s/index.json" "$H_TMP/mnt2/$s/index.json"
	m=$(jq -r '.manifests[0].digest' "$MNT/alpha/$s/index.json")
	assert_file_eq "$MNT/alpha/$s/blobs/sha256/${m#sha256:}" "$H_TMP/mnt2/$s/blobs/sha256/${m#sha256:}"
done
h_pass "manifest digests are equal across two mounts; -o project=P shows P at the root"

# One export per image: reading again (page cache dropped) reuses the exported files.
cache=$(sed -n 's/.*cache_dir=\([^ ]*\).*/\1/p' "$(h_mount_log "$MNT")" | head -1)
before=$(stat -c '%i %n' "$cache"/docker/blobs/* | sort)
sync
echo 3 >/proc/sys/vm/drop_caches
cat "$MNT/alpha/$A1"/blobs/sha256/* >/dev/null
assert_eq "$before" "$(stat -c '%i %n' "$cache"/docker/blobs/* | sort)" "no second export"
h_pass "the export is done once per image"

# Sizes are kept with the image ID: with the layer files evicted, ls -l exports nothing.
h_umount "$MNT"
find "$cache/docker/blobs" -type f ! -name "${IA1#sha256:}" ! -name "${IA2#sha256:}" \
	! -name "${IA3#sha256:}" ! -name "${IB1#sha256:}" -delete
h_mount :local "$MNT" -o ttl=1 -o cache_dir="$cache"
ls -l "$MNT/alpha/$A1/blobs/sha256" >/dev/null
assert_eq 4 "$(ls "$cache/docker/blobs" | wc -l)" "only the configs are in the export cache"
assert_eq "$(jq -r '.layers[].size' "$H_TMP/mnt2/$A1/blobs/sha256/$(jq -r '.manifests[0].digest' "$H_TMP/mnt2/$A1/index.json" | cut -c8-)" | xargs)" \
	"$(m=$(jq -r '.manifests[0].digest' "$MNT/alpha/$A1/index.json"); jq -r '.layers[].size' "$MNT/alpha/$A1/blobs/sha256/${m#sha256:}" | xargs)" "sizes known"
h_pass "stat needs no export when the sizes are known"

# skopeo pushes the layout; docker pull gives back the very same image.
skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$MNT/alpha/$A2" "docker://$REGISTRY/alpha/stages:$A2"
h_docker rmi "werf-stages-storage/alpha:$A2" >/dev/null
h_docker pull -q "$REGISTRY/alpha/stages:$A2" >/dev/null
assert_eq "$IA2" "$(h_docker image inspect --format '{{.Id}}' "$REGISTRY/alpha/stages:$A2")" "image ID"
h_pass "skopeo copy oci:MNT/P/STAGE docker://... then docker pull gives the image ID"

# A removed image disappears, a new one appears, after the ttl.
read -r A4 _ < <(h_make_stage alpha --layers 1 --seed 45)
sleep 1.5
assert_eq "$(printf '%s\n' "$A1" "$A3" "$A4" | sort | xargs)" "$(ls "$MNT/alpha" | xargs)" "after the ttl"
h_pass "listing follows the daemon after the ttl"

assert_errno EINVAL mkdir "$MNT/alpha/x"
assert_errno ENOENT stat "$MNT/alpha/latest"
assert_errno ENOENT stat "$MNT/alpha/$nolabel"
assert_errno ENOENT stat "$MNT/gamma"
h_pass "bad names are EINVAL; ENOENT for what is not a stage"

# 200 stages list, and ls -l of them exports nothing.
read -r M1 IM1 < <(h_make_stage many --layers 1 --seed 46)
for i in $(seq 1 199); do
	sig=$(printf 'many-%d' "$i" | sha224sum | cut -c1-56)
	h_docker tag "$IM1" "werf-stages-storage/many:$sig-$((1600000100000 + i))"
done
h_mount :local "$H_TMP/many" -o project=many
assert_eq 200 "$(ls -l "$H_TMP/many" | grep -c '^dr-x')" "200 stage folders"
assert_eq 0 "$(ls "$(sed -n 's/.*cache_dir=\([^ ]*\).*/\1/p' "$(h_mount_log "$H_TMP/many")" | head -1)/docker/blobs" | wc -l)" "ls -l exported nothing"
h_pass "200 stages list"
h_umount "$H_TMP/many"
h_umount "$H_TMP/mnt2"

# The export cache is capped: exporting a bigger image evicts the least recently used image's
# layers (not those another image still has), and a later read exports again, same bytes.
read -r G1 IG1 < <(h_make_stage gamma --layers 2 --layer-size 700000 --seed 47)
h_mount :local "$H_TMP/small" -o cache_size=1
small_cache=$(sed -n 's/.*cache_dir=\([^ ]*\).*/\1/p' "$(h_mount_log "$H_TMP/small")" | head -1)
sum_a1=$(cat "$H_TMP/small/alpha/$A1"/blobs/sha256/* | sha256sum)
a1_layers=$(m=$(jq -r '.manifests[0].digest' "$H_TMP/small/alpha/$A1/index.json"); jq -r '.layers[].digest' "$H_TMP/small/alpha/$A1/blobs/sha256/${m#sha256:}")
for l in $a1_layers; do assert_exists "$small_cache/docker/blobs/${l#sha256:}"; done
cat "$H_TMP/small/gamma/$G1"/blobs/sha256/* >/dev/null
for l in $a1_layers; do assert_not_exists "$small_cache/docker/blobs/${l#sha256:}"; done
assert_eq "$sum_a1" "$(cat "$H_TMP/small/alpha/$A1"/blobs/sha256/* | sha256sum)" "re-exported bytes"
h_pass "the export cache is capped: LRU eviction, then a new export gives the same bytes"
h_umount "$H_TMP/small"

# The daemon goes away while mounted: EIO with a logged reason, no hang, no crash.
kill "$(cat "$H_DOCKERD_DIR/pid")"
h_wait_for 30 bash -c "! [ -S '$H_DOCKERD_DIR/s' ]"
sleep 1.5
assert_errno EIO timeout 30 ls "$MNT/alpha"
assert_contains "$(cat "$(h_mount_log "$MNT")")" "Docker daemon" "the log says why"
h_pass "daemon stopped while mounted: EIO with a logged reason"
h_umount "$MNT"
