#!/usr/bin/env bash
# Errors keep their meaning: ENOENT only for names nobody lists; every other failure is EIO
# (or its own errno) with one log line naming the URL and what the server said.
#  - a web UI (HTML on every path) is not a registry: the mount is refused, exit 1;
#  - a registry that turns into a web page after a good mount: EIO and a log line;
#  - an image index whose manifests the registry's garbage collection removed: EIO and one
#    log line naming the missing manifest (real distribution 2.8, real garbage-collect).
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init
h_start_registry
bin=$(_h_stagefs_bin)

# web_start NAME ARGS...: run webui.py ARGS in the background; sets WEB_PORT.
web_start() {
	local name=$1 pid end
	shift
	"$H_PYTHON" "$H_LIB/webui.py" --port-file "$H_TMP/$name.port" "$@" </dev/null >"$H_TMP/log/$name.log" 2>&1 &
	pid=$!
	h_on_cleanup "kill $pid 2>/dev/null"
	end=$((EPOCHSECONDS + 15))
	until [[ -s "$H_TMP/$name.port" ]]; do
		kill -0 "$pid" 2>/dev/null && ((EPOCHSECONDS <= end)) || h_fail "webui.py $name did not start"
		sleep 0.05
	done
	WEB_PORT=$(cat "$H_TMP/$name.port")
}

# log_lines MNT PATTERN: how many lines of the mount's log contain PATTERN (fixed string).
log_lines() { grep -cF -- "$2" "$(h_mount_log "$1")" || true; }

# push_stage SEED REPO: a werf-like stage (mkstage.py) pushed with skopeo; prints its name.
push_stage() {
	local stage id
	read -r stage id < <("$H_PYTHON" "$H_LIB/mkstage.py" stage --project web --seed "$1" --out "$H_TMP/s$1.tar")
	skopeo copy -q --dest-tls-verify=false "docker-archive:$H_TMP/s$1.tar" "docker://$2:$stage" >&2
	echo "$stage"
}

# ---- a. a web UI where the registry should be: the mount is refused --------------------
mkdir -p "$H_TMP/never"
for status in 200 404; do
	web_start "ui$status" --status "$status"
	rc=0
	# (a daemon that mounts stays in the foreground: the timeout ends it, status 124)
	out=$(timeout -k 5 20 "$bin" -f -o "cache_dir=$H_TMP/c-ui" "127.0.0.1:$WEB_PORT/web/stages" "$H_TMP/never" 2>&1) || rc=$?
	assert_eq 1 "$rc" "exit status for a web UI answering $status"
	assert_eq "stagefs: registry 127.0.0.1:$WEB_PORT: GET http://127.0.0.1:$WEB_PORT/v2/: HTTP $status, not a Docker registry API (HTML answer)" "$out" "refusal for a web UI answering $status"
	if mountpoint -q "$H_TMP/never"; then h_fail "a refused mount left a mount behind"; fi
done
h_pass "a web UI (HTML with 200 or 404 on every path) is refused: exit 1, 'not a Docker registry API (HTML answer)'"

# ---- a. a registry that turns into a web page after a good mount -------------------------
S1=$(push_stage 31 "$REGISTRY/web/stages")
S2=$(push_stage 32 "$REGISTRY/web/stages")
web_start proxy --upstream "http://$REGISTRY" --switch "$H_TMP/html-now"
P=127.0.0.1:$WEB_PORT
h_mount "$P/web/stages" "$H_TMP/kept" -o ttl=3600
h_mount "$P/web/stages" "$H_TMP/live" -o ttl=0
K=$H_TMP/kept L=$H_TMP/live
want=$(printf '%s\n' "$S1" "$S2" | sort | xargs)
assert_eq "$want" "$(ls "$K" | xargs)" "stages through the proxy"
assert_eq "$want" "$(ls "$L" | xargs)" "stages through the proxy (ttl=0)"
cp "$K/$S1/index.json" "$H_TMP/s1-index.json"
touch "$H_TMP/html-now"
# The listing is asked again (ttl=0): EIO, one log line with the URL.
assert_eq EIO "$(h_errno 'os.listdir(sys.argv[1])' "$L")" "listing a registry turned web page"
assert_eq 1 "$(log_lines "$L" "stagefs: /: GET http://$P/v2/web/stages/tags/list?n=1000: HTTP 200, not a Docker registry API (HTML answer)")" "the listing's log line"
# A stage listed before (ttl=3600) and not described yet: its manifest is a web page now.
assert_eq EIO "$(h_errno 'open(sys.argv[1]).read()' "$K/$S2/index.json")" "a manifest turned web page"
assert_eq 1 "$(log_lines "$K" "stagefs: /$S2/index.json: GET http://$P/v2/web/stages/manifests/$S2: HTTP 200, not a Docker registry API (HTML answer)")" "the manifest's log line"
# What was read before is still served.
assert_file_eq "$H_TMP/s1-index.json" "$K/$S1/index.json" "a stage described before"
# Errors are not cached: the registry back, the listing is back.
rm "$H_TMP/html-now"
assert_eq "$want" "$(ls "$L" | xargs)" "stages once the registry is back"
assert_eq OK "$(h_errno 'open(sys.argv[1]).read()' "$K/$S2/index.json")" "the manifest once the registry is back"
h_pass "a registry turned web page after a good mount: EIO with one log line naming the URL; back when it is back"
h_umount "$K"
h_umount "$L"

# ---- b. a dangling image index after garbage-collect --delete-untagged -------------------
IDX="$(printf 'd%.0s' {1..56})-1600000000789"
python3 "$H_LIB/mkindex.py" "$H_TMP/src" 71 >"$H_TMP/index-digest"
skopeo copy -q --all --preserve-digests --dest-tls-verify=false "oci:$H_TMP/src" "docker://$REGISTRY/multi/stages:$IDX"
child=$(jq -r '.manifests[0].digest' "$H_TMP/src/blobs/sha256/$(cut -c8- "$H_TMP/index-digest")")
h_mount "$REGISTRY/multi/stages" "$H_TMP/before"
assert_eq OK "$(h_errno 'open(sys.argv[1]).read()' "$H_TMP/before/$IDX/index.json")" "the index before garbage collection"
h_umount "$H_TMP/before"
h_stop_registry "$REGISTRY"
out=$("$H_REGISTRY_BIN" garbage-collect --delete-untagged "${H_REGISTRY_DIR%/data}/config.yml" 2>&1) ||
	h_fail "garbage-collect failed: $out"
h_restart_registry "$REGISTRY"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REGISTRY/v2/multi/stages/manifests/$child")
assert_eq 404 "$code" "the registry lost the index's first manifest"

h_mount "$REGISTRY/multi/stages" "$H_TMP/gc"
G=$H_TMP/gc
assert_eq "$IDX" "$(ls "$G" | xargs)" "the index is still listed"
assert_eq EIO "$(h_errno 'open(sys.argv[1]).read()' "$G/$IDX/index.json")" "index.json of a dangling index"
line="stagefs: /$IDX/index.json: stage $IDX: manifest $child listed in its image index is missing: GET http://$REGISTRY/v2/multi/stages/manifests/$child: HTTP 404 (MANIFEST_UNKNOWN: manifest unknown)"
assert_eq 1 "$(log_lines "$G" "$line")" "one log line naming the missing manifest"
assert_eq 1 "$(log_lines "$G" "listed in its image index is missing")" "no other line about it"
# Nothing under the stage is "no such file" either: its layout cannot be known.
assert_eq EIO "$(h_errno 'os.listdir(sys.argv[1])' "$G/$IDX/blobs/sha256")" "blobs of a dangling index"
# ENOENT stays for what is not listed.
assert_eq ENOENT "$(h_errno 'open(sys.argv[1]).read()' "$G/$(printf 'c%.0s' {1..56})-1600000000001/index.json")" "a stage nobody lists"
h_pass "a dangling image index (garbage-collect --delete-untagged): EIO and one log line naming the missing manifest; ENOENT only for names not listed"
h_umount "$G"
