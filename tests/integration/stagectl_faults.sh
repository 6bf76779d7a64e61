#!/usr/bin/env bash
# stagectl switch-from-local with a failure injected at each step, each followed by a re-run that
# finishes the job: (a) the registry down during the first sync, (b) a stage the registry refuses
# (a 500 on its manifest PUT, from tests/lib/fault_proxy.py), (c) Ctrl-C (SIGINT) while a stage's
# commit is held by the proxy, (d) SIGTERM the same way during the removing sync, (e) a stage
# built while the switch waited for werf's exclusive lock and refused by the registry in the
# removing sync. After each failure: exit status 1, no mount left (/proc/mounts), no stagefs
# child left, the block file exactly as expected, the local and repository stages exactly as
# expected. After each re-run: exit 0, every stage in the repository with its image ID, none in
# :local. Then --docker-host and --docker-config reach the mounts: a private dockerd given only
# by --docker-host (DOCKER_HOST unset) and credentials for an htpasswd registry given only by
# --docker-config.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init
h_start_dockerd --var DH
h_start_registry --var REG

STAGECTL=${STAGECTL:-$(dirname "$(_h_stagefs_bin)")/../tools/stagectl}
[[ -x "$STAGECTL" ]] || h_fail "stagectl binary $STAGECTL not found (set STAGECTL)"
STAGECTL=$(realpath "$STAGECTL")
export STAGEFS=$(_h_stagefs_bin)
export TMPDIR=$H_TMP/tmp
mkdir -p "$TMPDIR"
unset WERF_STAGES_STORAGE CI_REGISTRY_IMAGE
export STAGECTL_PROGRESS=lines
RULES=$H_TMP/rules.json
echo '[]' >"$RULES"
h_start_proxy fault_proxy.py "$REG" "$RULES"
BLOCKS=$WERF_HOME/service/stages_switch_from_local_block
LOCKS=$WERF_HOME/service/locks

sc() { "$STAGECTL" "$@" --insecure; }
local_stages() { # PROJECT -> its tags in :local, sorted, on one line
	h_docker images --format '{{.Tag}}' "werf-stages-storage/$1" | LC_ALL=C sort | xargs
}
repo_tags() { # REPO -> its tags, sorted, on one line
	curl -s "http://${1%%/*}/v2/${1#*/}/tags/list?n=100000" | jq -r '.tags // [] | .[]' |
		LC_ALL=C sort | xargs
}
repo_config() { # REPO TAG -> config digest (the image ID)
	h_registry_curl -H "Accept: application/vnd.docker.distribution.manifest.v2+json" \
		"http://${1%%/*}/v2/${1#*/}/manifests/$2" | jq -r .config.digest
}
sorted() { printf '%s\n' "$@" | LC_ALL=C sort | xargs; }
# After a failed or interrupted run: no mount, no stagefs daemon, no private directory left.
no_leftovers() { # WHAT
	assert_eq "" "$(awk -v p="$TMPDIR/" 'index($2, p) == 1' /proc/mounts)" "$1: no mount left"
	ps -eo pid=,args= >"$H_TMP/ps"
	assert_eq "" "$(grep -F "$TMPDIR/stagectl." "$H_TMP/ps" || true)" "$1: no stagefs child left"
	assert_eq "" "$(ls -A "$TMPDIR")" "$1: private directory removed"
}
block_is() { # PROJECT CONTENT|none
	if [[ "$2" == none ]]; then
		assert_not_exists "$BLOCKS/$1" "block file of $1"
	else
		cmp <(printf '%s\n' "$2") "$BLOCKS/$1" || h_fail "block file of $1: $(od -c "$BLOCKS/$1" | head -3)"
		assert_eq 644 "$(stat -c %a "$BLOCKS/$1")" "block file mode"
	fi
}
rules() { printf '%s\n' "$1" >"$RULES"; }
# The re-run: exit 0, block written, every stage in REPO with its image ID, none in :local.
rerun_finishes() { # PROJECT REPO STAGE:ID...
	local p=$1 repo=$2 rc=0 err s
	shift 2
	err=$(sc switch-from-local --project "$p" --to "$repo" 2>&1 >"$H_TMP/out") || rc=$?
	assert_eq 0 "$rc" "re-run of $p: $err"
	assert_contains "$(cat "$H_TMP/out")" "project $p switched from :local to $repo" "re-run result"
	block_is "$p" "$repo"
	assert_eq "" "$(local_stages "$p")" "no stage of $p left in :local"
	local names=()
	for s in "$@"; do
		names+=("${s%%:*}")
		assert_eq "${s#*:}" "$(repo_config "$repo" "${s%%:*}")" "image ID of ${s%%:*} in $repo"
	done
	assert_eq "$(sorted "${names[@]}")" "$(repo_tags "$repo")" "tags of $repo"
	no_leftovers "re-run of $p"
}
# A werf build of PROJECT holding its lock shared until $H_TMP/release-PROJECT appears.
hold_lock() { # PROJECT LOCKFILE
	rm -f "$H_TMP/held-$1" "$H_TMP/release-$1"
	mkdir -p "$LOCKS"
	(
		flock -s 9
		touch "$H_TMP/held-$1"
		while [[ ! -e "$H_TMP/release-$1" ]]; do sleep 0.05; done
	) 9>"$2" &
	HOLDER=$!
	h_wait_for 10 test -e "$H_TMP/held-$1"
}

# (a) The registry down during step 2 (the first sync): nothing blocked, nothing removed.
read -r A1 IA1 < <(h_make_stage pa --layers 1 --seed 201)
read -r A2 IA2 < <(h_make_stage pa --layers 1 --seed 202)
h_stop_registry "$REG"
rc=0; err=$(sc switch-from-local --project pa --to "$REG/pa/stages" 2>&1) || rc=$?
assert_eq 1 "$rc" "registry down: $err"
assert_contains "$err" "mounting $REG/pa/stages" "says which storage failed"
block_is pa none
assert_eq "$(sorted "$A1" "$A2")" "$(local_stages pa)" "local stages kept"
no_leftovers "registry down"
h_restart_registry "$REG"
assert_eq "" "$(repo_tags "$REG/pa/stages")" "nothing reached the repository"
rerun_finishes pa "$REG/pa/stages" "$A1:$IA1" "$A2:$IA2"
h_pass "(a) registry down in step 2: exit 1, nothing blocked or removed, no leftovers; the re-run finishes"

# (b) A stage the registry refuses (500 on its manifest PUT) during step 2: the others are
# copied, nothing is blocked, every local stage stays.
read -r B1 IB1 < <(h_make_stage pb --layers 1 --seed 211)
read -r B2 IB2 < <(h_make_stage pb --layers 2 --seed 212)
read -r B3 IB3 < <(h_make_stage pb --layers 1 --seed 213)
rules "[{\"method\": \"PUT\", \"path\": \"/v2/pb/stages/manifests/$B2\$\", \"action\": \"status\", \"status\": 500}]"
rc=0; err=$(sc switch-from-local --project pb --to "$PROXY/pb/stages" 2>&1) || rc=$?
assert_eq 1 "$rc" "refused stage: $err"
assert_contains "$err" "failed pb/$B2: " "names the refused stage"
assert_contains "$err" "the first sync failed; nothing is blocked yet" "says what happened"
block_is pb none
assert_eq "$(sorted "$B1" "$B2" "$B3")" "$(local_stages pb)" "local stages kept"
assert_eq "$(sorted "$B1" "$B3")" "$(repo_tags "$REG/pb/stages")" "the other stages copied"
no_leftovers "refused stage"
rules '[]'
rerun_finishes pb "$PROXY/pb/stages" "$B1:$IB1" "$B2:$IB2" "$B3:$IB3"
h_pass "(b) a stage refused in step 2: exit 1, the others copied, nothing blocked or removed; the re-run finishes"

# (c) SIGINT while the first stage's commit (its manifest PUT) is held: that stage completes,
# the others are not started (--jobs 1), nothing is blocked or removed.
read -r C1 IC1 < <(h_make_stage pc --layers 1 --seed 221)
read -r C2 IC2 < <(h_make_stage pc --layers 1 --seed 222)
read -r C3 IC3 < <(h_make_stage pc --layers 1 --seed 223)
read -r CF _ < <(sorted "$C1" "$C2" "$C3")
rules "[{\"method\": \"PUT\", \"path\": \"/v2/pc/stages/manifests/$CF\$\", \"action\": \"delay\", \"seconds\": 3, \"times\": 1}]"
"$STAGECTL" switch-from-local --project pc --to "$PROXY/pc/stages" --insecure --jobs 1 \
	>"$H_TMP/c.out" 2>"$H_TMP/c.err" &
pid=$!
h_wait_for 60 grep -q "PUT /v2/pc/stages/manifests/$CF -> delayed" "$PROXY_LOG"
kill -INT "$pid"
rc=0; wait "$pid" || rc=$?
assert_eq 1 "$rc" "SIGINT: $(cat "$H_TMP/c.err")"
assert_contains "$(cat "$H_TMP/c.err")" "interrupted" "says it was interrupted"
block_is pc none
assert_eq "$(sorted "$C1" "$C2" "$C3")" "$(local_stages pc)" "local stages kept"
assert_eq "$CF" "$(repo_tags "$REG/pc/stages")" "the held stage completed, no other started"
no_leftovers "SIGINT"
rerun_finishes pc "$PROXY/pc/stages" "$C1:$IC1" "$C2:$IC2" "$C3:$IC3"
h_pass "(c) SIGINT during a copy in step 2: exit 1, the copy in flight completes, nothing blocked; the re-run finishes"

# (d) SIGTERM during step 5 (the removing sync). A build holds the project lock while step 2
# runs; a stage D3 is built while the switch waits for the exclusive lock (so only step 5 copies
# it, from a :local listing made after the lock); its commit is held, then SIGTERM. With --jobs
# 1 the stages sorted before D3 were verified and removed, D3 completes and is removed, the ones
# after it are left for the re-run; the block stays.
read -r D1 ID1 < <(h_make_stage pd --layers 1 --seed 231)
read -r D2 ID2 < <(h_make_stage pd --layers 1 --seed 232)
hold_lock pd "$LOCKS/31c613d" # murmur3("pd.stages_and_images"), no zero padding
"$STAGECTL" switch-from-local --project pd --to "$PROXY/pd/stages" --insecure --jobs 1 \
	>"$H_TMP/d.out" 2>"$H_TMP/d.err" &
pid=$!
h_wait_for 60 grep -q "waiting for werf's lock pd.stages_and_images" "$H_TMP/d.err"
assert_eq "$(sorted "$D1" "$D2")" "$(repo_tags "$REG/pd/stages")" "step 2 copied beside the build"
read -r D3 ID3 < <(h_make_stage pd --layers 1 --seed 233)
rules "[{\"method\": \"PUT\", \"path\": \"/v2/pd/stages/manifests/$D3\$\", \"action\": \"delay\", \"seconds\": 3, \"times\": 1}]"
touch "$H_TMP/release-pd"
wait "$HOLDER"
h_wait_for 60 grep -q "PUT /v2/pd/stages/manifests/$D3 -> delayed" "$PROXY_LOG"
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
assert_eq 1 "$rc" "SIGTERM: $(cat "$H_TMP/d.err")"
assert_contains "$(cat "$H_TMP/d.err")" "the switch is not finished (:local stays blocked)" "says so"
block_is pd "$PROXY/pd/stages"
left=()
for s in $(sorted "$D1" "$D2" "$D3"); do [[ "$s" > "$D3" ]] && left+=("$s"); done
assert_eq "$(sorted "${left[@]}")" "$(local_stages pd)" "local: the stages after $D3 (not started)"
assert_eq "$(sorted "$D1" "$D2" "$D3")" "$(repo_tags "$REG/pd/stages")" "every stage in the repository"
no_leftovers "SIGTERM"
rerun_finishes pd "$PROXY/pd/stages" "$D1:$ID1" "$D2:$ID2" "$D3:$ID3"
h_pass "(d) SIGTERM during a copy in step 5: exit 1, block kept, verified stages removed, the rest left; the re-run finishes"

# (e) A failure during step 5: the stage built while the switch waited is refused by the
# registry; every other stage is verified and removed, the block stays, the refused stage stays
# in :local; the re-run copies and removes it.
read -r E1 IE1 < <(h_make_stage pe --layers 1 --seed 241)
read -r E2 IE2 < <(h_make_stage pe --layers 2 --seed 242)
hold_lock pe "$LOCKS/eea2e629" # murmur3("pe.stages_and_images")
"$STAGECTL" switch-from-local --project pe --to "$PROXY/pe/stages" --insecure \
	>"$H_TMP/e.out" 2>"$H_TMP/e.err" &
pid=$!
h_wait_for 60 grep -q "waiting for werf's lock pe.stages_and_images" "$H_TMP/e.err"
read -r E3 IE3 < <(h_make_stage pe --layers 1 --seed 243)
rules "[{\"method\": \"PUT\", \"path\": \"/v2/pe/stages/manifests/$E3\$\", \"action\": \"status\", \"status\": 500}]"
touch "$H_TMP/release-pe"
wait "$HOLDER"
rc=0; wait "$pid" || rc=$?
assert_eq 1 "$rc" "step 5 failure: $(cat "$H_TMP/e.err")"
assert_contains "$(cat "$H_TMP/e.err")" "failed pe/$E3: " "names the refused stage"
block_is pe "$PROXY/pe/stages"
assert_eq "$E3" "$(local_stages pe)" "only the refused stage left in :local"
assert_eq "$(sorted "$E1" "$E2")" "$(repo_tags "$REG/pe/stages")" "the others in the repository"
no_leftovers "step 5 failure"
rules '[]'
rerun_finishes pe "$PROXY/pe/stages" "$E1:$IE1" "$E2:$IE2" "$E3:$IE3"
h_pass "(e) a stage built during the wait and refused in step 5: exit 1, block kept, the others removed; the re-run finishes"

# --docker-host and --docker-config reach the mounts: DOCKER_HOST unset (or pointing nowhere),
# DOCKER_CONFIG without credentials; the private dockerd and the login only on the command line.
h_start_registry --htpasswd stager:s3cret --var AREG
CREDS=$H_TMP/creds
mkdir -p "$CREDS"
echo '{"auths":{}}' >"$CREDS/config.json"
(export DOCKER_CONFIG=$CREDS; h_docker_login "$AREG" stager s3cret)
read -r O1 IO1 < <(h_make_stage po --layers 1 --seed 251)
read -r O2 IO2 < <(h_make_stage po --layers 1 --seed 252)
rc=0; err=$(env -u DOCKER_HOST "$STAGECTL" sync --from :local --to "$AREG/po/stages" --project po \
	--insecure --docker-host "$DH" 2>&1) || rc=$?
assert_eq 1 "$rc" "without --docker-config: $err"
rc=0; err=$(env DOCKER_HOST=unix://$H_TMP/nowhere.sock "$STAGECTL" sync --from :local \
	--to "$AREG/po/stages" --project po --insecure --docker-config "$CREDS" 2>&1) || rc=$?
assert_eq 1 "$rc" "without --docker-host: $err"
assert_eq '{"repositories":[]}' "$(h_registry_curl -u stager:s3cret "http://$AREG/v2/_catalog")" "nothing pushed yet"
rc=0; out=$(env -u DOCKER_HOST "$STAGECTL" sync --from :local --to "$AREG/po/stages" --project po \
	--insecure --docker-host "$DH" --docker-config "$CREDS" --json 2>"$H_TMP/o.err") || rc=$?
assert_eq 0 "$rc" "with both: $(cat "$H_TMP/o.err")"
assert_eq "true 2 2" "$(jq -r '[.ok, .projects[0].source, .projects[0].copied] | join(" ")' <<<"$out")" "summary"
for s in "$O1:$IO1" "$O2:$IO2"; do
	got=$(h_registry_curl -u stager:s3cret -H "Accept: application/vnd.docker.distribution.manifest.v2+json" \
		"http://$AREG/v2/po/stages/manifests/${s%%:*}" | jq -r .config.digest)
	assert_eq "${s#*:}" "$got" "image ID of ${s%%:*} behind htpasswd"
done
out=$(env -u DOCKER_HOST "$STAGECTL" verify --from :local --to "$AREG/po/stages" --project po \
	--insecure --docker-host "$DH" --docker-config "$CREDS" --json)
assert_eq "true 2 0" "$(jq -r '[.ok, .checked, .missing] | join(" ")' <<<"$out")" "verify with both"
no_leftovers "docker options"
h_pass "--docker-host (DOCKER_HOST unset) and --docker-config (credentials for an htpasswd registry) reach the mounts"
