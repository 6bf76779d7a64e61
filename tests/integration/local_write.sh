#!/usr/bin/env bash
# The :local mount written: a stage folder copied in (cp -r, cp -a, rsync -a, tar -x) is loaded
# into the Docker daemon with the same image ID; rm -r untags exactly that stage; bad input is
# refused with its errno and leaves the daemon as it was; werf's switch block makes the
# project read-only.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init
h_start_dockerd

read -r S1 I1 < <(h_make_stage alpha --layers 3 --layer-size 100000 --seed 61)
read -r S2 I2 < <(h_make_stage alpha --layers 1 --seed 62 --parent "$I1")
MNT=$H_TMP/mnt
SAVE=$H_TMP/save
mkdir -p "$SAVE"
h_mount :local "$MNT" -o ttl=30

image_id() {
	local id
	id=$(h_docker image inspect -f '{{.Id}}' "werf-stages-storage/$1" 2>/dev/null) || id=none
	echo "$id"
}

cp -r "$MNT/alpha/$S1" "$MNT/alpha/$S2" "$SAVE/"
assert_eq "$S1" "$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$SAVE/$S1/index.json")" "saved copy"

# rm -r removes exactly that stage (an untag: the image stays for its child's sake or goes).
rm -r "$MNT/alpha/$S1"
assert_eq none "$(image_id "alpha:$S1")" "untagged"
assert_eq "$I2" "$(image_id "alpha:$S2")" "the other stage stays"
assert_eq "$S2" "$(ls "$MNT/alpha" | xargs)" "the listing shows it at once"
h_pass "rm -r removes exactly one stage"

# A plain rmdir of a stage folder that still has files is ENOTEMPTY, as anywhere; so it is after
# only index.json was unlinked (the folder still shows its blobs), which looks gone.
assert_eq ENOTEMPTY "$(h_errno 'os.rmdir(sys.argv[1])' "$MNT/alpha/$S2")" "rmdir alone"
rm "$MNT/alpha/$S2/index.json"
assert_eq "blobs oci-layout" "$(ls "$MNT/alpha/$S2" | xargs)" "index.json looks gone"
assert_eq ENOTEMPTY "$(h_errno 'os.rmdir(sys.argv[1])' "$MNT/alpha/$S2")" "rmdir with blobs left"
assert_eq ENOTEMPTY "$(h_errno 'os.rmdir(sys.argv[1])' "$MNT/alpha/$S2/blobs/sha256")" "rmdir of a full blobs/sha256"
assert_eq "$I2" "$(image_id "alpha:$S2")" "still there"

for tool in cp cp-a rsync tar; do
	case $tool in
	cp) cp -r "$SAVE/$S1" "$MNT/alpha/" ;;
	cp-a) cp -a "$SAVE/$S1" "$MNT/alpha/" ;;
	rsync) rsync -a "$SAVE/$S1" "$MNT/alpha/" ;;
	tar) (cd "$SAVE" && tar -c "$S1") | (cd "$MNT/alpha" && tar -x) ;;
	esac
	assert_eq "$I1" "$(image_id "alpha:$S1")" "$tool: loaded with the same image ID"
	assert_eq "$(printf '%s\n' "$S1" "$S2" | sort | xargs)" "$(ls "$MNT/alpha" | xargs)" "$tool: listed at once"
	cmp "$SAVE/$S1/index.json" "$MNT/alpha/$S1/index.json"
	# Again onto the existing stage: every call succeeds, nothing changes.
	case $tool in
	cp) cp -r "$SAVE/$S1" "$MNT/alpha/" ;;
	cp-a) cp -rn "$SAVE/." "$MNT/alpha/" ;;
	rsync)
		# Newer times on every source file: rsync sends them all again (temporary names,
		# then renames onto the stored names).
		find "$SAVE/$S1" -exec touch {} +
		rsync -a "$SAVE/$S1" "$MNT/alpha/"
		;;
	tar) (cd "$SAVE" && tar -c "$S1") | (cd "$MNT/alpha" && tar -x) ;;
	esac
	assert_eq "$I1" "$(image_id "alpha:$S1")" "$tool again: unchanged"
	rm -r "$MNT/alpha/$S1"
	assert_eq none "$(image_id "alpha:$S1")" "$tool: removed again"
	h_pass "$tool of a stage folder into :local loads the identical image; again is a no-op"
done

# A stage of another image under an existing name: EEXIST, never overwritten.
cp -r "$SAVE/$S1" "$MNT/alpha/"
mkdir -p "$H_TMP/other"
cp -r "$SAVE/$S2" "$H_TMP/other/$S1"
jq -c --arg s "$S1" '.manifests[0].annotations["org.opencontainers.image.ref.name"]=$s' \
	"$SAVE/$S2/index.json" >"$H_TMP/other/$S1/index.json"
assert_errno EEXIST cp -r "$H_TMP/other/$S1" "$MNT/alpha/"
assert_eq "$I1" "$(image_id "alpha:$S1")" "not overwritten"
h_pass "another image onto an existing stage is EEXIST"

# A corrupt layer: EBADMSG at its close; nothing loaded.
rm -r "$MNT/alpha/$S1"
cp -r "$SAVE/$S1" "$H_TMP/bad"
layer=$(jq -r '.layers[0].digest' "$H_TMP/bad/blobs/sha256/$(jq -r '.manifests[0].digest' "$H_TMP/bad/index.json" | cut -c8-)")
printf 'X' | dd of="$H_TMP/bad/blobs/sha256/${layer#sha256:}" bs=1 seek=100 conv=notrunc 2>/dev/null
assert_errno EBADMSG cp -r "$H_TMP/bad" "$MNT/alpha/$S1"
assert_eq none "$(image_id "alpha:$S1")" "nothing loaded"
rm -rf "$MNT/alpha/$S1"
h_pass "a corrupt blob is EBADMSG and nothing is loaded"

# Malformed index.json: EINVAL.
cp -r "$SAVE/$S1" "$H_TMP/badidx"
echo '{"manifests":[]}' >"$H_TMP/badidx/index.json"
assert_errno EINVAL cp -r "$H_TMP/badidx" "$MNT/alpha/$S1"
assert_eq none "$(image_id "alpha:$S1")" "nothing loaded"
# A stage that can never complete is dropped: the folder is gone.
assert_eq ENOENT "$(h_errno 'os.stat(sys.argv[1])' "$MNT/alpha/$S1")" "dropped"
rm -rf "$MNT/alpha/$S1" # the kernel forgot the folder at once (no cached entry: no EISDIR)
h_pass "a malformed index.json is EINVAL"

# A stage of project alpha copied into project beta: werf would never see it (label werf=alpha).
mkdir "$MNT/beta"
assert_eq "alpha beta" "$(ls "$MNT" | xargs)" "mkdir PROJECT shows at once"
assert_errno EINVAL cp -r "$SAVE/$S1" "$MNT/beta/"
assert_eq none "$(image_id "beta:$S1")" "nothing loaded into beta"
assert_eq EINVAL "$(h_errno 'os.mkdir(sys.argv[1])' "$MNT/alpha/not-a-stage")" "mkdir of a bad name"
assert_eq EINVAL "$(h_errno 'os.mkdir(sys.argv[1])' "$MNT/Not_A_Project")" "mkdir of a bad project"
h_pass "labels of another project and bad names are EINVAL"

# werf's switch block: every change under the project is EROFS, reads go on.
cp -r "$SAVE/$S1" "$MNT/alpha/"
mkdir -p "$WERF_HOME/service/stages_switch_from_local_block"
echo "registry.example.com/alpha/stages" >"$WERF_HOME/service/stages_switch_from_local_block/alpha"
assert_eq EROFS "$(h_errno 'os.mkdir(sys.argv[1])' "$MNT/alpha/$(printf 'e%.0s' {1..56})-1")" "mkdir"
assert_errno EROFS rm -r "$MNT/alpha/$S1"
assert_eq EROFS "$(h_errno 'os.rename(sys.argv[1], sys.argv[2])' "$MNT/alpha/$S1/index.json" "$MNT/alpha/$S1/x")" "rename"
assert_eq "$I1" "$(image_id "alpha:$S1")" "still there"
cmp "$SAVE/$S1/index.json" "$MNT/alpha/$S1/index.json"
# A copy under way when the block appears: the close that would commit is refused too.
: >"$WERF_HOME/service/stages_switch_from_local_block/alpha"
rm -r "$MNT/alpha/$S1"
assert_eq EROFS "$(h_errno '
src, dst, block = sys.argv[1:4]
import shutil
os.mkdir(dst)
shutil.copytree(src + "/blobs", dst + "/blobs")
fd = os.open(dst + "/index.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.write(fd, open(src + "/index.json", "rb").read())
open(block, "w").write("registry.example.com/alpha/stages\n")
os.close(fd)' "$SAVE/$S1" "$MNT/alpha/$S1" "$WERF_HOME/service/stages_switch_from_local_block/alpha")" "close after the block appeared"
assert_eq none "$(image_id "alpha:$S1")" "nothing loaded"
: >"$WERF_HOME/service/stages_switch_from_local_block/alpha"
rm -rf "$MNT/alpha/$S1"
cp -r "$SAVE/$S1" "$MNT/alpha/"
rm -r "$MNT/alpha/$S1"
assert_eq none "$(image_id "alpha:$S1")" "an empty block file is no block"
h_pass "werf's switch block makes the project read-only in a running mount"

h_umount "$MNT"
assert_eq "" "$(ls "$H_TMP"/cache-*/pending 2>/dev/null | xargs)" "no pending stages left"
h_pass "unmount leaves no pending stages behind"
