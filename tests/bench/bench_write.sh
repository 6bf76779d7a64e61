#!/usr/bin/env bash
# stagefs write benchmark: copies between mounts against the usual tool, one run, as ratios.
#
#   bash tests/bench/bench_write.sh            (root, Debian 12; builds first; ~15 minutes)
#   SIZE_MB=300 SMALL=50 REPEAT=3 bash tests/bench/bench_write.sh
#
# A SIZE_MB stage of 5 incompressible layers:
#   :local -> registry   cp -r between the mounts   vs docker push, skopeo copy docker-daemon:
#   registry -> :local   cp -r (image removed first) vs docker pull (image removed first)
#   registry -> registry cp -r                       vs skopeo copy docker:// docker://
# SMALL stages sharing a base: cp -rn PROJECT/. REGISTRY/ vs SMALL docker pushes, then the same
# cp -rn again on the same mounts when all are present.
# Every copy goes to a new, empty registry and every stagefs mount is new (empty cache); the
# page cache is dropped before each timed command. Times are wall-clock seconds, the median of
# REPEAT rounds; ratio < 1: stagefs is faster. Layer bytes are the sizes of the layer blobs in
# the registry's storage. Peak RSS (VmHWM) is that of the writing mount's daemon, the reading
# mount's in brackets, the highest over the rounds.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tools/deps.sh
[[ -x build/fs/stagefs ]] || { meson setup build >/dev/null; }
ninja -C build >/dev/null
H_NO_SUMMARY=1
. tests/lib/harness.sh
. tests/bench/lib.sh
h_init
h_start_dockerd

SIZE_MB=${SIZE_MB:-300}
SMALL=${SMALL:-50}
REPEAT=${REPEAT:-3}
LAYER=$((SIZE_MB * 1024 * 1024 / 5))
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A RSS BYTES

# max_kb NAME KB: RSS[NAME] = the highest value seen
max_kb() { if ((${RSS[$1]:-0} < $2)); then RSS[$1]=$2; fi; }

# fresh_registry VAR: a new, empty registry; VAR = its address, VAR_DIR = its storage
fresh_registry() {
	h_start_registry --var "$1"
	printf -v "$1_DIR" '%s' "$H_REGISTRY_DIR"
}
drop_registry() { # ADDR DIR: stop it and free its disk
	h_stop_registry "$1"
	rm -rf "$2"
}

manifest_of() { # HOST/REPO TAG -> manifest JSON
	curl -sf -H "Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json" \
		"http://${1%%/*}/v2/${1#*/}/manifests/$2"
}
manifest_digest() { # HOST/REPO TAG -> the registry's digest of that manifest
	curl -sfI -H "Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json" \
		"http://${1%%/*}/v2/${1#*/}/manifests/$2" | tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" { print $2 }'
}
layer_bytes() { # HOST/REPO TAG STORAGE_DIR -> bytes of the tag's layer blobs as stored
	local d h n=0 s
	for d in $(manifest_of "$1" "$2" | jq -r '.layers[].digest'); do
		h=${d#sha256:}
		s=$(stat -c %s "$3/docker/registry/v2/blobs/sha256/${h:0:2}/$h/data") || h_fail "blob $d missing in $3"
		n=$((n + s))
	done
	echo "$n"
}
config_of() { manifest_of "$1" "$2" | jq -r .config.digest; }
local_id() { # REF -> its image ID, or none
	local id
	id=$(h_docker image inspect -f '{{.Id}}' "$1" 2>/dev/null) || id=none
	echo "$id"
}
remove_image() { # ID: gone from the daemon, every tag
	h_docker rmi -f "$1" >/dev/null
	[[ "$(local_id "$1")" == none ]] || h_fail "image $1 still present"
}

h_log "building a ${SIZE_MB} MB stage (5 layers of $LAYER bytes)"
read -r STAGE ID < <(h_make_stage bench --layers 5 --layer-size "$LAYER" --seed 7)
h_log "building $SMALL small stages on a shared base"
read -r _ BASE < <(h_make_stage benchbase --layers 2 --layer-size $((4 * 1024 * 1024)) --seed 8)
SMALLS=()
for i in $(seq "$SMALL"); do
	read -r s _ < <(h_make_stage small --layers 1 --layer-size 262144 --seed "$((100 + i))" --parent "$BASE")
	SMALLS+=("$s")
done

for i in $(seq "$REPEAT"); do
	h_log "round $i of $REPEAT"
	# --- :local -> registry ---------------------------------------------------------------
	fresh_registry RA
	h_mount :local "$H_TMP/l2r-local$i" -o project=bench -o ttl=600
	rpid=$H_MOUNT_PID
	h_mount "$RA/bench/stages" "$H_TMP/l2r-reg$i" -o insecure -o ttl=600
	wpid=$H_MOUNT_PID
	drop
	timed l2r_fs cp -r "$H_TMP/l2r-local$i/$STAGE" "$H_TMP/l2r-reg$i/"
	max_kb l2r_w "$(peak_kb "$wpid")"
	max_kb l2r_r "$(peak_kb "$rpid")"
	h_umount "$H_TMP/l2r-reg$i"
	h_umount "$H_TMP/l2r-local$i"
	[[ "$(config_of "$RA/bench/stages" "$STAGE")" == "$ID" ]] || h_fail "stagefs pushed another image"
	BYTES[fs]=$(layer_bytes "$RA/bench/stages" "$STAGE" "$RA_DIR")

	fresh_registry RB
	h_docker tag "$ID" "$RB/bench/stages:$STAGE"
	drop
	timed l2r_docker h_docker push -q "$RB/bench/stages:$STAGE" >/dev/null
	h_docker rmi "$RB/bench/stages:$STAGE" >/dev/null
	[[ "$(config_of "$RB/bench/stages" "$STAGE")" == "$ID" ]] || h_fail "docker pushed another image"
	BYTES[docker]=$(layer_bytes "$RB/bench/stages" "$STAGE" "$RB_DIR")
	drop_registry "$RB" "$RB_DIR"

	fresh_registry RC
	drop
	timed l2r_skopeo skopeo copy -q --src-daemon-host "$DOCKER_HOST" --dest-tls-verify=false \
		"docker-daemon:werf-stages-storage/bench:$STAGE" "docker://$RC/bench/stages:$STAGE"
	[[ "$(config_of "$RC/bench/stages" "$STAGE")" == "$ID" ]] || h_fail "skopeo pushed another image"
	BYTES[skopeo]=$(layer_bytes "$RC/bench/stages" "$STAGE" "$RC_DIR")
	drop_registry "$RC" "$RC_DIR"

	# --- registry -> :local (from stagefs's push in RA) ---------------------------------
	remove_image "$ID"
	h_mount "$RA/bench/stages" "$H_TMP/r2l-reg$i" -o insecure -o ttl=600
	rpid=$H_MOUNT_PID
	h_mount :local "$H_TMP/r2l-local$i" -o project=bench -o ttl=600
	wpid=$H_MOUNT_PID
	drop
	timed r2l_fs cp -r "$H_TMP/r2l-reg$i/$STAGE" "$H_TMP/r2l-local$i/"
	max_kb r2l_w "$(peak_kb "$wpid")"
	max_kb r2l_r "$(peak_kb "$rpid")"
	h_umount "$H_TMP/r2l-local$i"
	h_umount "$H_TMP/r2l-reg$i"
	[[ "$(local_id "werf-stages-storage/bench:$STAGE")" == "$ID" ]] || h_fail "stagefs loaded another image"
	remove_image "$ID"
	drop
	timed r2l_docker h_docker pull -q "$RA/bench/stages:$STAGE" >/dev/null
	[[ "$(local_id "$RA/bench/stages:$STAGE")" == "$ID" ]] || h_fail "docker pulled another image"
	h_docker tag "$ID" "werf-stages-storage/bench:$STAGE"
	h_docker rmi "$RA/bench/stages:$STAGE" >/dev/null

	# --- registry -> registry -------------------------------------------------------------
	fresh_registry RD
	h_mount "$RA/bench/stages" "$H_TMP/r2r-src$i" -o insecure -o ttl=600
	rpid=$H_MOUNT_PID
	h_mount "$RD/bench/stages" "$H_TMP/r2r-dst$i" -o insecure -o ttl=600
	wpid=$H_MOUNT_PID
	drop
	timed r2r_fs cp -r "$H_TMP/r2r-src$i/$STAGE" "$H_TMP/r2r-dst$i/"
	max_kb r2r_w "$(peak_kb "$wpid")"
	max_kb r2r_r "$(peak_kb "$rpid")"
	h_umount "$H_TMP/r2r-dst$i"
	h_umount "$H_TMP/r2r-src$i"
	want=$(manifest_digest "$RA/bench/stages" "$STAGE")
	[[ "$(manifest_digest "$RD/bench/stages" "$STAGE")" == "$want" ]] || h_fail "registry to registry changed the manifest"
	drop_registry "$RD" "$RD_DIR"
	fresh_registry RE
	drop
	timed r2r_skopeo skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
		"docker://$RA/bench/stages:$STAGE" "docker://$RE/bench/stages:$STAGE"
	[[ "$(manifest_digest "$RE/bench/stages" "$STAGE")" == "$want" ]] || h_fail "skopeo changed the manifest"
	drop_registry "$RE" "$RE_DIR"
	drop_registry "$RA" "$RA_DIR"

	# --- SMALL stages sharing a base ------------------------------------------------------
	fresh_registry RF
	h_mount :local "$H_TMP/small-local$i" -o project=small -o ttl=600
	rpid=$H_MOUNT_PID
	h_mount "$RF/bench/small" "$H_TMP/small-reg$i" -o insecure -o ttl=600
	wpid=$H_MOUNT_PID
	drop
	timed small_fs cp -rn "$H_TMP/small-local$i/." "$H_TMP/small-reg$i/"
	n=$(h_registry_tags "$RF/bench/small" | wc -l)
	[[ "$n" == "$SMALL" ]] || h_fail "cp -rn made $n tags, expected $SMALL"
	timed small_again cp -rn "$H_TMP/small-local$i/." "$H_TMP/small-reg$i/"
	max_kb small_w "$(peak_kb "$wpid")"
	max_kb small_r "$(peak_kb "$rpid")"
	h_umount "$H_TMP/small-reg$i"
	h_umount "$H_TMP/small-local$i"
	drop_registry "$RF" "$RF_DIR"

	fresh_registry RG
	for s in "${SMALLS[@]}"; do h_docker tag "werf-stages-storage/small:$s" "$RG/bench/small:$s"; done
	push_all() { local s; for s in "${SMALLS[@]}"; do h_docker push -q "$RG/bench/small:$s" >/dev/null; done; }
	drop
	timed small_docker push_all
	n=$(h_registry_tags "$RG/bench/small" | wc -l)
	[[ "$n" == "$SMALL" ]] || h_fail "docker push made $n tags, expected $SMALL"
	for s in "${SMALLS[@]}"; do h_docker rmi "$RG/bench/small:$s" >/dev/null; done
	drop_registry "$RG" "$RG_DIR"
done

for k in l2r_fs l2r_docker l2r_skopeo r2l_fs r2l_docker r2r_fs r2r_skopeo small_fs small_again small_docker; do
	[[ -n "${T[$k]:-}" ]] || h_fail "no measurement for $k"
done
verdict() { # VALUE OP LIMIT -> "ok" / "MISSED"
	awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { ok = (op == "<=") ? v <= l : v < l; print ok ? "ok" : "MISSED" }'
}
check() { # LABEL VALUE OP LIMIT
	printf '  %-46s %9s   target %s %s: %s\n' "$1" "$2" "$3" "$4" "$(verdict "$2" "$3" "$4")"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
runs() { echo "${S[$1]# }"; }
byte_ratio=$(awk -v a="${BYTES[fs]}" -v b="${BYTES[docker]}" 'BEGIN { printf "%.3f", a / b }')

echo
echo "stagefs write benchmark: ${SIZE_MB} MB stage (5 incompressible layers), $SMALL small stages on a shared base"
echo "$(nproc) cores, $(uname -r); load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "wall-clock seconds, median of $REPEAT rounds (all rounds in brackets); ratio < 1: stagefs is faster"
echo
printf '%-48s %9s   %s\n' ":local -> registry" seconds ratio
row "cp -r between the mounts" "${T[l2r_fs]}" "[$(runs l2r_fs)]"
row "docker push" "${T[l2r_docker]}" "[$(runs l2r_docker)]"
row "skopeo copy docker-daemon: docker://" "${T[l2r_skopeo]}" "[$(runs l2r_skopeo)]"
check "stagefs / skopeo" "$(ratio l2r_fs l2r_skopeo)" "<=" 0.8
row "stagefs / docker push" "$(ratio l2r_fs l2r_docker)"
row "layer bytes stored: stagefs" "${BYTES[fs]}"
row "layer bytes stored: docker push" "${BYTES[docker]}"
row "layer bytes stored: skopeo" "${BYTES[skopeo]}"
check "stagefs bytes / docker push bytes" "$byte_ratio" "<=" 1.05
check "peak RSS of the registry mount (MiB)" "$(mib "${RSS[l2r_w]}")" "<" 64
row "peak RSS of the :local mount (reading, MiB)" "$(mib "${RSS[l2r_r]}")"
echo
printf '%-48s %9s   %s\n' "registry -> :local (image absent)" seconds ratio
row "cp -r between the mounts" "${T[r2l_fs]}" "[$(runs r2l_fs)]"
row "docker pull" "${T[r2l_docker]}" "[$(runs r2l_docker)]"
check "stagefs / docker pull" "$(ratio r2l_fs r2l_docker)" "<=" 1.2
check "peak RSS of the :local mount (MiB)" "$(mib "${RSS[r2l_w]}")" "<" 64
row "peak RSS of the registry mount (reading, MiB)" "$(mib "${RSS[r2l_r]}")"
echo
printf '%-48s %9s   %s\n' "registry -> registry" seconds ratio
row "cp -r between the mounts" "${T[r2r_fs]}" "[$(runs r2r_fs)]"
row "skopeo copy docker:// docker://" "${T[r2r_skopeo]}" "[$(runs r2r_skopeo)]"
check "stagefs / skopeo" "$(ratio r2r_fs r2r_skopeo)" "<=" 1.5
row "peak RSS of the target mount (MiB)" "$(mib "${RSS[r2r_w]}")"
row "peak RSS of the source mount (reading, MiB)" "$(mib "${RSS[r2r_r]}")"
echo
printf '%-48s %9s   %s\n' "$SMALL small stages :local -> registry" seconds ratio
row "cp -rn PROJECT/. REGISTRY/" "${T[small_fs]}" "[$(runs small_fs)]"
row "$SMALL x docker push" "${T[small_docker]}" "[$(runs small_docker)]"
check "stagefs / docker push" "$(ratio small_fs small_docker)" "<=" 0.8
check "cp -rn again, all present (s)" "${T[small_again]}" "<=" 0.3
row "peak RSS of the registry mount (MiB)" "$(mib "${RSS[small_w]}")"
row "peak RSS of the :local mount (reading, MiB)" "$(mib "${RSS[small_r]}")"
