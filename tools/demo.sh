#!/usr/bin/env bash
# stagefs demo on an embedded default: a private Docker daemon (:local) and a loopback
# registry, a werf project's stages in each, both mounted and inspected with standard tools,
# then synced by copying (cp -r between the mounts, and stagectl sync / verify).
# Run as root on Debian 12: installs what it needs, builds, runs, cleans up after itself.
# On a terminal it waits for Enter before unmounting, so the mounts can be explored.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
[[ -f build/build.ninja ]] || meson setup build >/dev/null
ninja -C build >/dev/null
export STAGEFS=$PWD/build/fs/stagefs
H_NO_SUMMARY=1
. tests/lib/harness.sh
h_init
h_start_dockerd
h_start_registry
REPO=$REGISTRY/demo/myproject/stages

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; eval "$@"; }

echo "== werf-like stages of project 'myproject' in the private Docker daemon ($DOCKER_HOST)"
read -r S1 I1 < <(h_make_stage myproject --layers 3 --layer-size 1048576 --seed 1)
read -r S2 I2 < <(h_make_stage myproject --layers 2 --layer-size 524288 --seed 2 --parent "$I1")
read -r S3 _ < <(h_make_stage myproject --layers 1 --seed 3)
read -r S4 I4 < <(h_make_stage myproject --layers 2 --layer-size 524288 --seed 4 --parent "$I1")
h_make_record myproject managed-image __nameless__ >/dev/null
echo "   and in the registry $REPO (pushed with docker push):"
h_push_stage myproject "$S1" "$REPO" >/dev/null
h_push_stage myproject "$S2" "$REPO" >/dev/null

LOCAL=$H_TMP/local
REG=$H_TMP/registry
h_mount :local "$LOCAL"
h_mount "$REPO" "$REG" -o ttl=1

run "ls $LOCAL"
run "ls -l $LOCAL/myproject"
run "ls -l $REG"
run "find $REG/$S2 | sed 's|$REG/||'"
run "jq . $REG/$S2/index.json"
run "(cd $REG/$S2/blobs/sha256 && sha256sum *)"
m=$(jq -r '.manifests[0].digest' "$LOCAL/myproject/$S2/index.json")
run "jq -r .config.digest $LOCAL/myproject/$S2/blobs/sha256/${m#sha256:}   # = the image ID"
run "/usr/bin/docker image inspect --format '{{.Id}}' werf-stages-storage/myproject:$S2"
run "skopeo inspect oci:$REG/$S2 | jq '{Digest, Labels: .Labels | with_entries(select(.key|startswith(\"werf\")))}'"
run "skopeo copy -q --preserve-digests --dest-tls-verify=false oci:$LOCAL/myproject/$S3 docker://$REPO:$S3 && sleep 1.2 && ls $REG   # new stage shows after the ttl"

echo
echo "== sync is a copy: the :local stage missing in the registry, copied between the mounts"
run "cp -r $LOCAL/myproject/$S4 $REG/ && ls $REG"
run "python3 -c 'import os, sys; print(os.getxattr(sys.argv[1], \"user.stagefs.image_id\").decode())' $REG/$S4   # no blob read"
run "/usr/bin/docker rmi -f $REPO:$S4 >/dev/null 2>&1; /usr/bin/docker pull -q $REPO:$S4 >/dev/null && /usr/bin/docker image inspect --format '{{.Id}}' $REPO:$S4   # = $I4"
echo
echo "== the same with stagectl (private mounts, werf's locks): everything is there already"
run "build/tools/stagectl sync --from :local --to $REPO --project myproject --insecure"
run "build/tools/stagectl verify --from :local --to $REPO --project myproject --insecure"

if [[ -t 0 ]]; then
	printf '\nThe mounts stay up until you press Enter:\n  %s\n  %s\n' "$LOCAL" "$REG"
	read -r _
fi
h_umount "$REG"
h_umount "$LOCAL"
echo "demo done: mounts unmounted, daemons stopped"
