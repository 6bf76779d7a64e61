#!/usr/bin/env bash
# The write path when things go wrong: a registry answering 500, 429 or resetting uploads (a
# fault proxy in front of the real registry), the daemon killed mid-copy, the cache dir full,
# and two copies of one stage at once. Each copy either commits the identical image or fails
# with its errno and leaves no tag.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init
h_start_dockerd
h_start_registry --var REG

read -r S1 I1 < <(h_make_stage app --layers 3 --layer-size 3000000 --seed 81)
read -r S2 I2 < <(h_make_stage app --layers 2 --layer-size 100000 --seed 82)
LOCAL=$H_TMP/local
SAVE=$H_TMP/save
mkdir -p "$SAVE"
h_mount :local "$LOCAL" -o project=app
cp -r "$LOCAL/$S1" "$LOCAL/$S2" "$SAVE/"
h_umount "$LOCAL"

RULES=$H_TMP/rules.json
echo '[]' >"$RULES"
h_start_proxy fault_proxy.py "$REG" "$RULES"
REPO=$PROXY/app/stages
R=$H_TMP/reg
h_mount "$REPO" "$R" -o cache_dir="$H_TMP/cache-r"

tags() { h_registry_tags "$REG/app/stages" | xargs; }
config_of() {
	h_registry_curl -H "Accept: application/vnd.docker.distribution.manifest.v2+json" \
		"http://$REG/v2/app/stages/manifests/$1" | jq -r .config.digest
}
rules() { printf '%s\n' "$1" >"$RULES"; }

# Passing faults are retried: two 500s on blob uploads, a 429 with Retry-After on the manifest.
rules '[{"method":"PUT","path":"/blobs/uploads/","action":"status","status":500,"times":2},
        {"method":"PUT","path":"/manifests/","action":"status","status":429,"retry_after":"1","times":1}]'
cp -r "$SAVE/$S2" "$R/"
assert_eq "$I2" "$(config_of "$S2")" "committed after retries"
assert_eq 2 "$(grep -c 'PUT .*/blobs/uploads/.* -> 500' "$PROXY_LOG")" "two 500s seen"
assert_eq 1 "$(grep -c 'PUT .*/manifests/.* -> 429' "$PROXY_LOG")" "one 429 seen"
h_pass "500s and a 429 are retried and the copy commits"

# Faults that last: the close fails with the errno, and no tag exists.
rm -r "$R/$S2"
for f in 'status 500 EIO' 'status 429 EAGAIN' 'reset - EIO'; do
	read -r action status errno <<<"$f"
	if [[ $action == status ]]; then
		rules "[{\"method\":\"PUT\",\"path\":\"/manifests/\",\"action\":\"status\",\"status\":$status}]"
	else
		rules '[{"method":"PUT","path":"/manifests/","action":"reset"}]'
	fi
	assert_errno "$errno" cp -r "$SAVE/$S2" "$R/"
	assert_eq "" "$(tags)" "$action $status: no tag"
	assert_eq ENOENT "$(h_errno 'os.stat(sys.argv[1])' "$R/$S2")" "$action $status: nothing pending"
	h_pass "a lasting $action $status fails the copy with $errno and leaves no tag"
done
rules '[]'
cp -r "$SAVE/$S2" "$R/"
assert_eq "$I2" "$(config_of "$S2")" "the same copy succeeds once the registry is well"
h_pass "after the failures the same copy commits"

# A registry that refuses Docker schema 2 (Zot answers 415): the same blobs go up under an OCI
# manifest, with the same config.
rm -r "$R/$S2"
rules '[{"method":"PUT","path":"/manifests/","content_type":"docker","action":"status","status":415}]'
cp -r "$SAVE/$S2" "$R/"
m=$(h_registry_curl -H "Accept: application/vnd.oci.image.manifest.v1+json" "http://$REG/v2/app/stages/manifests/$S2")
assert_eq "application/vnd.oci.image.manifest.v1+json" "$(jq -r .mediaType <<<"$m")" "OCI manifest"
assert_eq "$I2" "$(jq -r .config.digest <<<"$m")" "same config"
assert_eq "application/vnd.oci.image.layer.v1.tar+gzip" "$(jq -r '.layers | map(.mediaType) | unique | .[]' <<<"$m")" "gzip layers"
assert_eq 1 "$(grep -c 'PUT .*/manifests/.* -> 415' "$PROXY_LOG")" "one refusal"
rules '[]'
h_pass "a registry refusing Docker schema 2 gets the same image under an OCI manifest"

# kill -9 while the commit waits on the manifest: no tag; a new daemon on the same cache dir
# removes what the dead one left, and the same copy then succeeds.
# First, connection resets in the middle of every blob upload: EIO, nothing stored.
rules '[{"method":"PUT","path":"/blobs/uploads/","action":"reset"},
        {"method":"PATCH","path":"/blobs/uploads/","action":"reset"}]'
assert_errno EIO cp -r "$SAVE/$S1" "$R/"
assert_eq "$S2" "$(tags)" "no tag after resets mid-upload"
h_pass "connection resets mid-upload fail the copy with EIO and leave no tag"
rules '[{"method":"PUT","path":"/manifests/","action":"delay","seconds":30}]'
cp -r "$SAVE/$S1" "$R/" 2>/dev/null &
cp_pid=$!
h_wait_for 60 grep -q "PUT .*/manifests/$S1 -> delayed" "$PROXY_LOG"
h_kill_mount "$R"
wait "$cp_pid" && h_fail "cp succeeded against a killed daemon" || true
assert_eq "$S2" "$(tags)" "no tag from the killed copy"
assert_eq 1 "$(ls -d "$H_TMP"/cache-r/pending/D.* | wc -l)" "the dead daemon's folder is left"
rules '[]'
h_mount "$REPO" "$R" -o cache_dir="$H_TMP/cache-r"
assert_contains "$(cat "$H_MOUNT_LOG")" "removed 1 pending stage(s) left by a daemon that died" "log"
assert_eq 1 "$(ls -d "$H_TMP"/cache-r/pending/D.* | wc -l)" "only the new daemon's folder"
cp -r "$SAVE/$S1" "$R/"
assert_eq "$I1" "$(config_of "$S1")" "committed after the remount"
h_pass "kill -9 mid-copy leaves no tag; the next mount cleans up and the copy succeeds"

# Two copies of one stage at once, from two mounts: one image, both exit 0.
rm -r "$R/$S1"
R2=$H_TMP/reg2
h_mount "$REPO" "$R2"
cp -r "$SAVE/$S1" "$R/" &
a=$!
cp -r "$SAVE/$S1" "$R2/" &
b=$!
wait "$a" || h_fail "first concurrent copy failed"
wait "$b" || h_fail "second concurrent copy failed"
assert_eq "$I1" "$(config_of "$S1")" "one valid image"
h_pass "two copies of one stage at once both succeed with one image"
h_umount "$R2"

# Sixteen stages of one image copied eight at a time into one mount: every blob is uploaded
# once (the others wait for it), every copy exits 0 (distribution refused manifests with
# MANIFEST_BLOB_UNKNOWN when the same blob was uploaded twice at once).
for i in $(seq 1 16); do
	sig=$(printf 'many-%d' "$i" | sha224sum | cut -c1-56)
	cp -r "$SAVE/$S2" "$SAVE/$sig-$((1600000200000 + i))"
	jq -c --arg s "$sig-$((1600000200000 + i))" \
		'.manifests[0].annotations["org.opencontainers.image.ref.name"]=$s' \
		"$SAVE/$S2/index.json" >"$SAVE/$sig-$((1600000200000 + i))/index.json"
done
RM=$H_TMP/regm
h_mount "$REG/many/stages" "$RM"
(cd "$SAVE" && ls -d ./*-16000002* | xargs -P 8 -I{} cp -r {} "$RM/") || h_fail "a parallel copy failed"
assert_eq 16 "$(h_registry_tags "$REG/many/stages" | wc -l)" "sixteen tags"
h_umount "$RM"
h_pass "sixteen stages of one image, eight copies at a time: all committed"

# The cache dir full: ENOSPC at write, nothing committed.
SMALL=$H_TMP/small
mkdir -p "$SMALL"
mount -t tmpfs -o size=2m tmpfs "$SMALL"
h_on_cleanup "umount -l '$SMALL' 2>/dev/null || true"
R3=$H_TMP/reg3
h_mount "$REPO" "$R3" -o cache_dir="$SMALL/cache"
rm -r "$R/$S1"
assert_errno ENOSPC cp -r "$SAVE/$S1" "$R3/"
assert_eq "$S2" "$(tags)" "nothing committed"
rm -rf "$R3/$S1"
assert_eq "" "$(ls "$SMALL/cache/pending"/D.*/ | grep -v lock | xargs)" "the pending stage is gone"
h_pass "a full cache dir fails the copy with ENOSPC and commits nothing"

for m in "$R3" "$R"; do h_umount "$m"; done
h_pass "every mount exits 0"
