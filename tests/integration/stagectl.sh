#!/usr/bin/env bash
# stagectl end to end, against a real dockerd and registry: the guide's steps (sync, switch,
# block file bytes and mode, EROFS in a :local mount, rollback, verify) with werf's locks and
# lock file names (murmur3: myproject.stages_and_images -> fc47fcf3), waiting for a build that
# holds the lock, Ctrl-C while waiting, a failure injected at a switch step (registry down; a
# crash after the block was written) followed by a successful re-run, no mount left behind after
# any of it, and progress output as lines and as bars on a pty.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init
h_start_dockerd
h_start_registry --var REG

STAGECTL=${STAGECTL:-$(dirname "$(_h_stagefs_bin)")/../tools/stagectl}
[[ -x "$STAGECTL" ]] || h_fail "stagectl binary $STAGECTL not found (set STAGECTL)"
STAGECTL=$(realpath "$STAGECTL")
export STAGEFS=$(_h_stagefs_bin)
# stagectl's private mounts live under $TMPDIR: every check below looks there for leftovers.
export TMPDIR=$H_TMP/tmp
mkdir -p "$TMPDIR"
unset WERF_STAGES_STORAGE
export CI_REGISTRY_IMAGE=$REG/group/myproject
REPO=$CI_REGISTRY_IMAGE/stages
BLOCK=$WERF_HOME/service/stages_switch_from_local_block/myproject
LOCK=$WERF_HOME/service/locks/fc47fcf3 # werf's file for myproject.stages_and_images
PROJ=$H_TMP/proj
mkdir -p "$PROJ"
printf 'project: myproject\nconfigVersion: 1\n---\nimage: ~\nfrom: alpine\n' >"$PROJ/werf.yaml"

sc() { (cd "$PROJ" && "$STAGECTL" "$@" --insecure); }
no_mounts_left() { # WHAT
	local left
	left=$(awk -v p="$TMPDIR/" 'index($2, p) == 1' /proc/mounts)
	assert_eq "" "$left" "$1: no stagectl mount left"
	assert_eq "" "$(ls -A "$TMPDIR")" "$1: private directory removed"
}
local_id() { # PROJECT STAGE -> image ID or none
	h_docker image inspect -f '{{.Id}}' "werf-stages-storage/$1:$2" 2>/dev/null || echo none
}
local_stages() { # PROJECT -> tags, sorted
	h_docker images --format '{{.Tag}}' "werf-stages-storage/$1" | sort | xargs
}
repo_tags() { # REPO -> its tags, sorted, on one line ("" when the repository does not exist)
	local out
	out=$(curl -s "http://${1%%/*}/v2/${1#*/}/tags/list?n=100000")
	jq -r '.tags // [] | .[]' <<<"$out" | sort | xargs
}
repo_config() { # REPO TAG -> config digest of the manifest
	h_registry_curl -H "Accept: application/vnd.docker.distribution.manifest.v2+json" \
		"http://${1%%/*}/v2/${1#*/}/manifests/$2" | jq -r .config.digest
}

read -r S1 I1 < <(h_make_stage myproject --layers 2 --layer-size 150000 --seed 91)
read -r S2 I2 < <(h_make_stage myproject --layers 1 --seed 92 --parent "$I1")
read -r S3 I3 < <(h_make_stage myproject --layers 1 --seed 93)
read -r B1 IB1 < <(h_make_stage beta --layers 1 --seed 94)

# usage errors: exit 2
rc=0; "$STAGECTL" sync --to "$REPO" --project myproject 2>/dev/null || rc=$?
assert_eq 2 "$rc" "sync without --from"
rc=0; "$STAGECTL" frobnicate 2>/dev/null || rc=$?
assert_eq 2 "$rc" "unknown command"
rc=0; (cd "$H_TMP" && "$STAGECTL" sync --from :local 2>/dev/null) || rc=$?
assert_eq 2 "$rc" "no werf.yaml and no --project"
h_pass "usage errors exit 2"

# Guide step 1: sync, first as a dry run (nothing written), the project from werf.yaml and the
# repository from $CI_REGISTRY_IMAGE/stages.
out=$(sc sync --from :local --dry-run)
assert_eq "$(printf 'copy myproject/%s\n' "$S1" "$S2" "$S3" | sort)" "$(grep '^copy ' <<<"$out" | sort)" "dry run lists"
assert_eq "" "$(repo_tags "$REPO")" "dry run copies nothing"
err=$(sc sync --from :local 2>&1 >/dev/null)
assert_eq "$(printf '%s\n' "$S1" "$S2" "$S3" | sort | xargs)" "$(repo_tags "$REPO")" "all stages in the repository"
for p in "$S1:$I1" "$S2:$I2" "$S3:$I3"; do
	assert_eq "${p#*:}" "$(repo_config "$REPO" "${p%%:*}")" "image ID kept for ${p%%:*}"
done
# lines mode (stderr is not a terminal): werf's "%5d/%d synced"
assert_eq 3 "$(grep -cE '^    [123]/3 synced myproject/[0-9a-f]{56}-[0-9]+$' <<<"$err")" "one line per stage: $err"
no_mounts_left "sync"
h_pass "sync :local -> \$CI_REGISTRY_IMAGE/stages copies every stage with its image ID, one line per stage"

start=$EPOCHREALTIME
json=$(sc sync --from :local --json)
t=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
assert_eq "true 0 3 3 0" "$(jq -r '[.ok, .planned, .projects[0].source, .projects[0].present, .projects[0].copied] | join(" ")' <<<"$json")" "no-op sync summary"
h_log "no-op sync of 3 stages (two fresh mounts) took ${t}s"
json=$(sc verify --from :local --to "$REPO" --project myproject --json)
assert_eq "true 3 0 0" "$(jq -r '[.ok, .checked, .missing, .different] | join(" ")' <<<"$json")" "verify"
assert_eq "$I1" "$(jq -r --arg s "$S1" '.stages[] | select(.stage == $s) | .to_image_id' <<<"$json")" "verify reads image IDs"
json=$(sc ls "$REPO" --json --sort time)
assert_eq "$S1 $S2 $S3" "$(jq -r 'map(.stage) | join(" ")' <<<"$json")" "ls sorted by time"
assert_eq "$I1 $I2 $I3" "$(jq -r 'map(.image_id) | join(" ")' <<<"$json")" "ls image IDs"
assert_eq "2020-09-13T12:28:11Z" "$(jq -r '.[0].created' <<<"$json")" "creation time from UNIQUEID"
out=$(sc ls :local --json)
assert_eq "beta=1 myproject=3" "$(jq -r 'map("\(.project)=\(.stages)") | join(" ")' <<<"$out")" "ls :local lists projects"
no_mounts_left "ls, verify"
h_pass "a re-sync copies nothing (${t}s); verify and ls report image IDs"

# ls, exactly: text and JSON, sorted by name, time and size (and reversed), on :local and on
# the repository; `ls :local` without --project lists projects with stage counts. Sizes and
# image IDs come from the mounts' user.stagefs.* attributes, so ls and verify of :local export
# nothing: Docker logs an image "save" event for every export (checked on a real `docker
# save` first), and none appears while they run.
row() { # STAGE CREATED_MS SIZE ID -> the text row
	printf '%-70s  %-20s  %12s  %s\n' "$1" "$(date -u -d "@$(($2 / 1000))" +%Y-%m-%dT%H:%M:%SZ)" "$3" "$4"
}
repo_size() { # REPO TAG -> manifest bytes + config + layers, as the registry stores them
	h_registry_curl -H "Accept: application/vnd.docker.distribution.manifest.v2+json" \
		"http://${1%%/*}/v2/${1#*/}/manifests/$2" >"$H_TMP/m.json"
	echo $(($(stat -c %s "$H_TMP/m.json") + $(jq '.config.size + ([.layers[].size] | add)' "$H_TMP/m.json")))
}
save_events() { # SINCE -> image save events from then to now
	h_docker events --since "$1" --until "$(date +%s.%N)" --filter type=image --filter event=save \
		--format '{{.Action}} {{.ID}}'
}
since=$(date +%s.%N)
h_docker save "werf-stages-storage/myproject:$S3" >/dev/null
assert_eq "save $I3" "$(save_events "$since")" "a docker save is seen as an event"
since=$(date +%s.%N)
declare -A ID=([$S1]=$I1 [$S2]=$I2 [$S3]=$I3) LSIZE=() RSIZE=() MS=()
for s in "$S1" "$S2" "$S3"; do
	LSIZE[$s]=$(h_docker image inspect -f '{{.Size}}' "werf-stages-storage/myproject:$s")
	RSIZE[$s]=$(repo_size "$REPO" "$s")
	MS[$s]=${s#*-}
done
by_name=$(printf '%s\n' "$S1" "$S2" "$S3" | LC_ALL=C sort | xargs)
by_time="$S1 $S2 $S3" # seeds 91 < 92 < 93: UNIQUEIDs in that order
for where in local repo; do
	if [[ $where == local ]]; then store=:local; declare -n SZ=LSIZE; else store=$REPO; declare -n SZ=RSIZE; fi
	by_size=$(for s in "$S1" "$S2" "$S3"; do echo "${SZ[$s]} $s"; done | LC_ALL=C sort -k1,1n -k2 | cut -d' ' -f2 | xargs)
	assert_ne "$by_name" "$by_size" "fixture: size order differs from name order"
	for sort in name time size; do
		case $sort in name) order=$by_name ;; time) order=$by_time ;; size) order=$by_size ;; esac
		want=$(printf '%-70s  %-20s  %12s  %s\n' STAGE CREATED SIZE "IMAGE ID"
			for s in $order; do row "$s" "${MS[$s]}" "${SZ[$s]}" "${ID[$s]}"; done)
		assert_eq "$want" "$(sc ls "$store" --project myproject --sort "$sort")" "ls $where --sort $sort"
		want_json=$(for s in $order; do
			jq -cn --arg s "$s" --arg id "${ID[$s]}" --argjson ms "${MS[$s]}" --argjson sz "${SZ[$s]}" \
				--arg t "$(date -u -d "@$((${MS[$s]} / 1000))" +%Y-%m-%dT%H:%M:%SZ)" \
				'{project: "myproject", stage: $s, created_ms: $ms, created: $t, size: $sz, image_id: $id}'
		done | jq -cs .)
		assert_eq "$want_json" "$(sc ls "$store" --project myproject --sort "$sort" --json | jq -c .)" "ls $where --sort $sort --json"
		rev=$(for s in $order; do echo "$s"; done | tac | xargs)
		assert_eq "$rev" "$(sc ls "$store" --project myproject --sort "$sort" --reverse --json | jq -r 'map(.stage) | join(" ")')" "ls $where --sort $sort --reverse"
	done
	unset -n SZ
done
want=$(printf '%-50s %s\n' PROJECT STAGES beta 1 myproject 3)
assert_eq "$want" "$(sc ls :local)" "ls :local lists projects"
assert_eq '[{"project":"beta","stages":1},{"project":"myproject","stages":3}]' "$(sc ls :local --json | jq -c .)" "ls :local --json"
out=$(sc verify --from :local --to "$REPO" --project myproject)
assert_eq "verify :local -> $REPO: 3 stages checked, 0 missing, 0 different, 0 errors: OK" "$out" "verify text"
# (only myproject's images count: in 1 run of 8 a save of beta's stage, which nothing here
# reads, appeared in this window; reported, unexplained)
assert_eq "" "$(save_events "$since" | grep -F -e "$I1" -e "$I2" -e "$I3" || true)" "ls and verify of :local exported none of the stages they read"
no_mounts_left "ls exact"
h_pass "ls: exact text and JSON sorted by name, time and size (and reversed) on :local and the repository; ls :local lists projects; ls and verify export nothing"

# Ctrl-C while switch waits for werf's lock (a cleanup holds it exclusively): no block, no mount.
mkdir -p "$(dirname "$LOCK")"
(flock -x 9; touch "$H_TMP/held"; sleep 30) 9>"$LOCK" &
holder=$!
h_wait_for 10 test -e "$H_TMP/held"
(cd "$PROJ" && exec "$STAGECTL" switch-from-local --insecure) >"$H_TMP/sw.out" 2>"$H_TMP/sw.err" &
sw=$!
h_wait_for 30 grep -q "waiting for werf's lock myproject.stages_and_images" "$H_TMP/sw.err"
kill -INT "$sw"
rc=0; wait "$sw" || rc=$?
assert_eq 1 "$rc" "interrupted switch exit status: $(cat "$H_TMP/sw.err")"
assert_not_exists "$BLOCK" "no block after an interrupted step 2"
no_mounts_left "Ctrl-C"
kill "$holder"; wait "$holder" 2>/dev/null || true
h_pass "Ctrl-C while waiting for werf's lock: exit 1, nothing blocked, mounts gone"

# Guide step 3: switch-from-local while a build holds the project lock shared: step 2 runs beside
# it, step 3 waits for it and proceeds when it ends. A stage built "meanwhile" is copied too.
read -r S4 I4 < <(h_make_stage myproject --layers 1 --seed 95)
SIG1=${S1%%-*}
mkdir -p "$WERF_HOME/shared_context/storage/stages_storage_cache/1/myproject"
printf '{"stages":[{"signature":"%s","uniqueID":%s}]}\n' "$SIG1" "${S1#*-}" \
	>"$WERF_HOME/shared_context/storage/stages_storage_cache/1/myproject/$SIG1"
rm -f "$H_TMP/held"
(flock -s 9; touch "$H_TMP/held"; sleep 4) 9>"$LOCK" &
holder=$!
h_wait_for 10 test -e "$H_TMP/held"
start=$EPOCHREALTIME
rc=0; sc switch-from-local --timeout 60 >"$H_TMP/sw.out" 2>"$H_TMP/sw.err" || rc=$?
t=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
wait "$holder" 2>/dev/null || true
assert_eq 0 "$rc" "switch: $(cat "$H_TMP/sw.err")"
assert_contains "$(cat "$H_TMP/sw.err")" "waiting for werf's lock myproject.stages_and_images" "said it waits"
awk -v t="$t" 'BEGIN { exit !(t >= 2.5) }' || h_fail "switch did not wait for the build (${t}s)"
assert_eq "$(printf '%s\n' "$REPO")" "$(cat "$BLOCK")" "block content"
cmp <(printf '%s\n' "$REPO") "$BLOCK" || h_fail "block file bytes"
assert_eq 644 "$(stat -c %a "$BLOCK")" "block file mode"
assert_eq 600 "$(stat -c %a "$LOCK")" "lock file mode"
assert_eq "" "$(local_stages myproject)" "every local stage removed"
assert_eq "$(printf '%s\n' "$S1" "$S2" "$S3" "$S4" | sort | xargs)" "$(repo_tags "$REPO")" "repository"
assert_eq "$I4" "$(repo_config "$REPO" "$S4")" "the stage built meanwhile"
assert_not_exists "$WERF_HOME/shared_context/storage/stages_storage_cache/1/myproject/$SIG1" "werf's stale cache entry"
assert_contains "$(cat "$H_TMP/sw.out")" "project myproject switched from :local to $REPO" "result"
no_mounts_left "switch"
h_pass "switch-from-local waits for a build (${t}s), writes werf's block ($REPO\\n, 0644), removes every local stage once verified, clears werf's cache"

# While blocked: a :local mount refuses changes to the project (EROFS); sync into :local refuses.
h_mount :local "$H_TMP/lmnt"
assert_eq EROFS "$(h_errno 'os.mkdir(sys.argv[1])' "$H_TMP/lmnt/myproject")" "mkdir of the blocked project"
h_umount "$H_TMP/lmnt"
rc=0; err=$(sc sync --from "$REPO" --to :local 2>&1) || rc=$?
assert_eq 1 "$rc" "sync into a blocked :local"
assert_contains "$err" "stagectl rollback" "says what to do"
# Re-running the switch: same REPO continues (nothing left to do), another REPO is refused.
assert_ok sc switch-from-local
rc=0; err=$(sc switch-from-local --to "$REG/other/stages" 2>&1) || rc=$?
assert_eq 1 "$rc" "switch to another repository"
assert_contains "$err" "was switched from :local to $REPO" "names the block's repository"
assert_eq "$REPO" "$(cat "$BLOCK")" "block unchanged"
no_mounts_left "blocked"
h_pass "blocked: EROFS in the :local mount, sync into :local refused, switch re-run continues, another REPO refused"

# A failure injected at step 2 (registry down), then a successful re-run.
BREPO=$REG/group/beta/stages
BBLOCK=$WERF_HOME/service/stages_switch_from_local_block/beta
h_stop_registry "$REG"
rc=0; err=$(sc switch-from-local --project beta --to "$BREPO" 2>&1) || rc=$?
assert_eq 1 "$rc" "switch with the registry down"
assert_not_exists "$BBLOCK" "no block when step 2 failed"
assert_eq "$IB1" "$(local_id beta "$B1")" "local stage kept"
no_mounts_left "registry down"
h_restart_registry "$REG"
# A crash after the block was written (step 4) and before step 5: the re-run finishes the job.
mkdir -p "$(dirname "$BBLOCK")"
printf '%s\n' "$BREPO" >"$BBLOCK"
h_mount :local "$H_TMP/lmnt2"
assert_errno EROFS rm -r "$H_TMP/lmnt2/beta/$B1"
assert_eq EROFS "$(h_errno 'os.mkdir(sys.argv[1])' "$H_TMP/lmnt2/beta/$S1")" "mkdir in a blocked project"
assert_eq "$IB1" "$(local_id beta "$B1")" "EROFS kept the stage"
h_umount "$H_TMP/lmnt2"
rc=0; err=$(sc switch-from-local --project beta --to "$BREPO" 2>&1) || rc=$?
assert_eq 0 "$rc" "re-run: $err"
assert_contains "$err" "continuing the switch" "continues"
assert_eq "" "$(local_stages beta)" "beta's local stage removed"
assert_eq "$IB1" "$(repo_config "$BREPO" "$B1")" "beta in its repository"
no_mounts_left "re-run"
h_pass "a switch that failed (registry down, or stopped after the block) finishes on a re-run"

# Guide rollback: stages back to :local, block removed, the manual steps printed.
rc=0; sc rollback >"$H_TMP/rb.out" 2>"$H_TMP/rb.err" || rc=$?
assert_eq 0 "$rc" "rollback: $(cat "$H_TMP/rb.err")"
assert_not_exists "$BLOCK" "block removed"
for p in "$S1:$I1" "$S2:$I2" "$S3:$I3" "$S4:$I4"; do
	assert_eq "${p#*:}" "$(local_id myproject "${p%%:*}")" "back in :local: ${p%%:*}"
done
assert_contains "$(cat "$H_TMP/rb.out")" "revert the CI change" "manual steps"
assert_ok sc rollback
json=$(sc verify --from "$REPO" --to :local --json)
assert_eq "true 4" "$(jq -r '[.ok, .checked] | join(" ")' <<<"$json")" "verify after rollback"
# rollback into a project :local no longer has (beta: switched above; mkdir PROJECT in the mount)
assert_eq "myproject=4" "$(sc ls :local --json | jq -r 'map("\(.project)=\(.stages)") | join(" ")')" "beta has no folder in :local"
assert_ok sc rollback --project beta --from "$BREPO"
assert_eq "$IB1" "$(local_id beta "$B1")" "beta back"
assert_not_exists "$BBLOCK" "beta's block removed"
no_mounts_left "rollback"
h_pass "rollback copies the stages back (also into a project :local lacks), removes the block, prints the manual steps"

# verify finds a missing stage: exit 1 and a list.
h_docker rmi "werf-stages-storage/myproject:$S3" >/dev/null
rc=0; out=$(sc verify --from "$REPO" --to :local) || rc=$?
assert_eq 1 "$rc" "verify with a missing stage"
assert_contains "$out" "missing myproject/$S3" "lists it"
h_pass "verify: exit 1 and the missing stage listed"

# Progress as bars on a terminal (script gives a pty), for two projects in one display.
rm -f "$BBLOCK"
read -r G1 _ < <(h_make_stage gamma --layers 1 --seed 96)
out=$(cd "$PROJ" && script -qec "'$STAGECTL' sync --from :local --to '$REG/group/all/stages' --all-projects --insecure" /dev/null)
assert_contains "$out" $'\r' "redrawn"
assert_contains "$out" "5/5 stages" "bar counts both projects' stages"
assert_contains "$out" "/s" "rate"
assert_contains "$out" "gamma: 1 stages in :local" "summary per project"
no_mounts_left "pty"
h_pass "progress: bars with stages, bytes, rate and ETA on a pty"
