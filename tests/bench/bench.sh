#!/usr/bin/env bash
# stagefs benchmark: one run, same machine, everything against its usual tool, as ratios.
#
#   bash tests/bench/bench.sh            (root, Debian 12; builds first; ~5 minutes)
#   SIZE_MB=300 TAGS=2000 LOCAL_STAGES=200 REPEAT=3 bash tests/bench/bench.sh
#
# Registry: reading a SIZE_MB stage (4 gzip layers) through the mount with cp, cold and warm,
# against `skopeo copy docker://... dir:`, a plain curl of the same blobs, and docker pull;
# `ls` / `ls -l` of a repository with TAGS stage tags against `skopeo list-tags`.
# :local: reading the same stage through the mount (export + read) against `docker save`;
# `ls -l` of a project with LOCAL_STAGES stages. Peak RSS of each daemon is reported.
# Ratios below 1 mean stagefs is faster. Times are wall-clock seconds, the median of REPEAT
# runs; the page cache is dropped before each, and every cold stagefs run is a new mount with
# an empty cache.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tools/deps.sh
[[ -x build/fs/stagefs ]] || { meson setup build >/dev/null; }
ninja -C build >/dev/null
H_NO_SUMMARY=1
. tests/lib/harness.sh
h_init
h_start_dockerd
h_start_registry

SIZE_MB=${SIZE_MB:-300}
TAGS=${TAGS:-2000}
LOCAL_STAGES=${LOCAL_STAGES:-200}
REPEAT=${REPEAT:-3}
LAYER=$((SIZE_MB * 1024 * 1024 / 4))
REPO=$REGISTRY/bench/stages
. tests/bench/lib.sh

h_log "building a ${SIZE_MB} MB stage (4 layers)"
read -r STAGE ID < <(h_make_stage bench --layers 4 --layer-size "$LAYER" --seed 7)
h_push_stage bench "$STAGE" "$REPO" >/dev/null
manifest=$(curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$REGISTRY/v2/bench/stages/manifests/$STAGE")
curl_all() {
	local d
	mkdir -p "$H_TMP/curl"
	curl -sf -o "$H_TMP/curl/manifest" -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
		"http://$REGISTRY/v2/bench/stages/manifests/$STAGE"
	for d in $(jq -r '.config.digest, .layers[].digest' <<<"$manifest"); do
		curl -sf -o "$H_TMP/curl/${d#sha256:}" "http://$REGISTRY/v2/bench/stages/blobs/$d"
	done
}

for i in $(seq "$REPEAT"); do
	h_log "round $i of $REPEAT"
	# registry: a new mount with an empty cache each round
	h_mount "$REPO" "$H_TMP/reg$i" -o ttl=600
	drop
	timed fs_cold cp -r "$H_TMP/reg$i/$STAGE" "$H_TMP/out-cold"
	drop
	timed fs_warm cp -r "$H_TMP/reg$i/$STAGE" "$H_TMP/out-warm"
	REG_RSS=$(peak_kb "$H_MOUNT_PID")
	rm -rf "$H_TMP/out-cold" "$H_TMP/out-warm"
	h_umount "$H_TMP/reg$i"
	drop
	timed skopeo skopeo copy -q --src-tls-verify=false "docker://$REPO:$STAGE" "dir:$H_TMP/skopeo-dir"
	rm -rf "$H_TMP/skopeo-dir"
	drop
	timed curl curl_all
	rm -rf "$H_TMP/curl"
	# docker pull from scratch: the image must be gone locally first; it comes back tagged.
	h_docker rmi "$REPO:$STAGE" "werf-stages-storage/bench:$STAGE" >/dev/null
	drop
	timed docker_pull h_docker pull -q "$REPO:$STAGE"
	h_docker tag "$REPO:$STAGE" "werf-stages-storage/bench:$STAGE"
	[[ "$(h_docker image inspect --format '{{.Id}}' "$REPO:$STAGE")" == "$ID" ]] ||
		h_fail "pulled image differs"
	# :local: a new mount with an empty export cache each round
	h_mount :local "$H_TMP/local$i" -o project=bench -o ttl=600
	drop
	timed local_cold cp -r "$H_TMP/local$i/$STAGE" "$H_TMP/out-local"
	drop
	timed local_warm cp -r "$H_TMP/local$i/$STAGE" "$H_TMP/out-local2"
	LOC_RSS=$(peak_kb "$H_MOUNT_PID")
	rm -rf "$H_TMP/out-local" "$H_TMP/out-local2"
	h_umount "$H_TMP/local$i"
	drop
	timed docker_save h_docker save -o "$H_TMP/save.tar" "werf-stages-storage/bench:$STAGE"
	rm -f "$H_TMP/save.tar"
done

# --- registry: a repository with many tags --------------------------------------------
python3 "$H_LIB/mktags.py" "$REGISTRY" bench/stages "$STAGE" "$TAGS" >/dev/null
for i in $(seq "$REPEAT"); do
	h_mount "$REPO" "$H_TMP/tags$i" -o ttl=600
	timed ls_tags bash -c "ls '$H_TMP/tags$i' | wc -l >/dev/null"
	timed ls_l_tags bash -c "ls -l '$H_TMP/tags$i' >/dev/null"
	timed skopeo_tags bash -c "skopeo list-tags --tls-verify=false 'docker://$REPO' >/dev/null"
	n=$(ls "$H_TMP/tags$i" | wc -l)
	[[ "$n" == $((TAGS + 1)) ]] || h_fail "listed $n stages, expected $((TAGS + 1))"
	h_umount "$H_TMP/tags$i"
done

# --- :local: a project with many stages ----------------------------------------------
for i in $(seq 1 $((LOCAL_STAGES - 1))); do
	h_docker tag "$ID" "werf-stages-storage/bench:$(printf 'b-%d' "$i" | sha224sum | cut -c1-56)-$((1600000200000 + i))"
done
for i in $(seq "$REPEAT"); do
	h_mount :local "$H_TMP/local200-$i" -o project=bench -o ttl=600
	timed ls_l_local bash -c "ls -l '$H_TMP/local200-$i' >/dev/null"
	timed docker_images bash -c "/usr/bin/docker images --filter reference='werf-stages-storage/bench' --filter label=werf=bench >/dev/null"
	h_umount "$H_TMP/local200-$i"
done

for k in fs_cold fs_warm skopeo curl docker_pull ls_tags ls_l_tags skopeo_tags local_cold \
	local_warm docker_save ls_l_local docker_images; do
	[[ -n "${T[$k]:-}" ]] || h_fail "no measurement for $k"
done
echo
echo "stagefs benchmark: ${SIZE_MB} MB stage (4 layers), $((TAGS + 1)) tags, ${LOCAL_STAGES} local stages"
echo "$(nproc) cores, $(uname -r); wall-clock seconds, median of $REPEAT runs; ratio < 1: stagefs is faster"
echo
printf '%-48s %9s   %s\n' registry seconds ratio
row "cp -r through the mount, cold cache" "${T[fs_cold]}"
row "cp -r through the mount, warm cache" "${T[fs_warm]}"
row "skopeo copy docker:// dir:" "${T[skopeo]}" "stagefs cold / skopeo = $(ratio fs_cold skopeo)"
row "curl of the same blobs" "${T[curl]}" "stagefs cold / curl = $(ratio fs_cold curl)"
row "docker pull (image absent)" "${T[docker_pull]}" "stagefs cold / docker pull = $(ratio fs_cold docker_pull)"
row "ls of $((TAGS + 1)) stages (cold)" "${T[ls_tags]}" "/ skopeo list-tags = $(ratio ls_tags skopeo_tags)"
row "ls -l of $((TAGS + 1)) stages" "${T[ls_l_tags]}"
row "skopeo list-tags" "${T[skopeo_tags]}"
row "daemon peak RSS (MiB)" "$((REG_RSS / 1024))"
echo
printf '%-48s %9s   %s\n' :local seconds ratio
row "cp -r through the mount, cold (export)" "${T[local_cold]}" "stagefs cold / docker save = $(ratio local_cold docker_save)"
row "cp -r through the mount, warm" "${T[local_warm]}" "stagefs warm / docker save = $(ratio local_warm docker_save)"
row "docker save" "${T[docker_save]}"
row "ls -l of ${LOCAL_STAGES} stages (cold)" "${T[ls_l_local]}" "/ docker images = $(ratio ls_l_local docker_images)"
row "docker images (filtered)" "${T[docker_images]}"
row "daemon peak RSS (MiB)" "$((LOC_RSS / 1024))"
