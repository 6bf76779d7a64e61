# shellcheck shell=bash disable=SC2119,SC2120
# stagefs integration test harness. Source it from a test script:
#
#   #!/bin/bash
#   set -euo pipefail
#   . "$(dirname "$0")/../lib/harness.sh"
#   h_init
#   h_start_dockerd
#   h_start_registry
#   read -r STAGE ID < <(h_make_stage myproject --seed 1)
#   h_mount :local "$H_TMP/mnt" -o project=myproject
#   assert_eq "$ID" "sha256:$(...)" "image id"
#   h_pass "local mount shows the stage"
#   h_umount "$H_TMP/mnt"
#
# Everything a test starts lives in a private $H_TMP (mktemp -d /tmp/sfs.XXXXXX) and is stopped
# by the EXIT trap that h_init installs, on success and on failure: stagefs mounts
# (fusermount3 -u, then -uz, then umount -l), stagefs daemons, registries, token servers,
# dockerds (and their containerd). On failure the trap prints the tail of every log (daemons,
# registries, dockerd) to stderr. H_KEEP=1 keeps $H_TMP for a post-mortem.
#
# Start services (h_start_dockerd, h_start_registry) and mounts (h_mount) in the test's main
# shell, not inside $(...): they record what to clean up in files, so that works anyway, but
# the variables they set (DOCKER_HOST, REGISTRY, ...) would be lost. h_make_stage and
# h_make_record print their result and are meant for $(...) / read < <(...).
#
# Output: "ok N - NAME" per h_pass; at exit "SCRIPT: P passed, F failed" (and "not ok - WHY"
# before it on failure; a script that ends with no passed check fails). H_NO_SUMMARY=1 (demo,
# benchmark) prints no verdict. H_TAP=1 also prints a TAP plan "1..N" at the end.
#
# Tunables (environment): STAGEFS_WRAP (run the daemon under this command, e.g. valgrind),
# STAGEFS (daemon binary; default $MESON_BUILD_ROOT/fs/stagefs if
# MESON_BUILD_ROOT is set, else <repo>/build/fs/stagefs), H_KEEP, H_TAP, H_LOG_LINES (60),
# H_DOCKERD_TIMEOUT (60), H_REGISTRY_TIMEOUT (30), H_MOUNT_TIMEOUT (30), H_UMOUNT_TIMEOUT (30),
# H_TRACE=1 (set -x with timestamps, from h_init on).
#
# Always use $H_DOCKER (/usr/bin/docker, the client matching dockerd 20.10); h_init also puts
# a `docker` -> /usr/bin/docker link first in PATH because /usr/local/bin/docker is another
# version.

if [[ -n "${_H_LOADED:-}" ]]; then
	return 0
fi
_H_LOADED=1

H_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
H_ROOT=$(cd "$H_LIB/../.." && pwd)
H_DOCKER=/usr/bin/docker
H_DOCKERD=/usr/sbin/dockerd
H_REGISTRY_BIN=/usr/bin/docker-registry
# Debian's python3 (stdlib only): starts in 30 ms, where a pyenv shim first in PATH takes 400 ms
if [[ -x /usr/bin/python3 ]]; then H_PYTHON=/usr/bin/python3; else H_PYTHON=$(command -v python3); fi
H_NAME=$(basename "$0")
H_TMP=""
_H_LAST_ERR=""

# ---------------------------------------------------------------------------- small helpers

h_log() { printf '# %s\n' "$*" >&2; }

_h_now() { printf '%s' "${EPOCHREALTIME/,/.}"; }

_h_elapsed() { # START -> seconds with 2 decimals since START
	awk -v a="$1" -v b="$(_h_now)" 'BEGIN { printf "%.2f", b - a }'
}

# _h_next NAME: next value of a per-test counter (1, 2, ...), safe across subshells and jobs.
_h_next() {
	local f="$H_TMP/run/counter-$1" v
	(
		flock 9
		v=$(cat "$f" 2>/dev/null || echo 0)
		v=$((v + 1))
		echo "$v" >"$f"
		echo "$v"
	) 9>"$H_TMP/run/.lock"
}

_h_need_init() {
	if [[ -z "$H_TMP" || ! -d "$H_TMP" ]]; then
		echo "harness: call h_init first" >&2
		exit 1
	fi
}

# _h_alive PID: the process exists and is not a zombie
_h_alive() {
	local st
	[[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null || return 1
	st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
	[[ "$st" != Z ]]
}

# _h_kill PID [TIMEOUT]: SIGTERM, wait up to TIMEOUT s (default 10), then SIGKILL.
_h_kill() {
	local pid=$1 t=${2:-10} i
	_h_alive "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < t * 20; i++)); do
		_h_alive "$pid" || return 0
		sleep 0.05
	done
	echo "harness: pid $pid ignored SIGTERM for ${t}s, sending SIGKILL" >&2
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		_h_alive "$pid" || return 0
		sleep 0.05
	done
}

_h_tail_log() { # FILE [LINES]
	local f=$1 n=${2:-${H_LOG_LINES:-60}}
	[[ -f "$f" ]] || return 0
	printf '==== %s (last %s lines) ====\n' "${f#"$H_TMP"/}" "$n" >&2
	tail -n "$n" "$f" >&2 || true
}

_h_free_port() {
	"$H_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ---------------------------------------------------------------------------- assertions

# h_fail MSG: fail the test now (exit 1) with MSG. The first failure's MSG is what the
# summary reports (also from subshells), except inside assert_fail / assert_errno, whose
# command is expected to fail.
h_fail() {
	local msg="$*"
	if [[ -z "${_H_EXPECTING_FAILURE:-}" ]]; then
		if [[ -n "$H_TMP" && -d "$H_TMP/run" && ! -s "$H_TMP/run/fail_msg" ]]; then
			printf '%s\n' "$msg" >"$H_TMP/run/fail_msg"
		fi
		printf 'FAIL: %s\n' "$msg" >&2
	else
		printf 'failed (as expected?): %s\n' "$msg" >&2
	fi
	exit 1
}

# h_pass NAME: print "ok N - NAME".
h_pass() {
	local n=1
	if [[ -n "$H_TMP" && -d "$H_TMP/run" ]]; then
		printf '%s\n' "$*" >>"$H_TMP/run/passed"
		n=$(wc -l <"$H_TMP/run/passed")
	fi
	printf 'ok %s - %s\n' "$n" "$*"
}

# h_skip REASON: skip the whole test (exit 77). Only where a feature is truly absent.
h_skip() {
	printf 'SKIP: %s\n' "$*" >&2
	if [[ -n "$H_TMP" && -d "$H_TMP/run" ]]; then printf '%s\n' "$*" >"$H_TMP/run/skip_msg"; fi
	exit 77
}

# assert_eq EXPECTED ACTUAL [MSG]
assert_eq() {
	if [[ "$1" != "$2" ]]; then
		h_fail "${3:-assert_eq}: expected '$1', got '$2'"
	fi
}

# assert_ne UNEXPECTED ACTUAL [MSG]
assert_ne() {
	if [[ "$1" == "$2" ]]; then
		h_fail "${3:-assert_ne}: did not expect '$2'"
	fi
}

# assert_contains HAYSTACK NEEDLE [MSG]
assert_contains() {
	if [[ "$1" != *"$2"* ]]; then
		h_fail "${3:-assert_contains}: '$2' not found in: $1"
	fi
}

# assert_file_eq FILE1 FILE2 [MSG]: same bytes.
assert_file_eq() {
	local a=$1 b=$2 msg=${3:-assert_file_eq}
	[[ -f "$a" ]] || h_fail "$msg: $a: not a readable file"
	[[ -f "$b" ]] || h_fail "$msg: $b: not a readable file"
	if ! cmp -s "$a" "$b"; then
		h_fail "$msg: $a ($(stat -c %s "$a") bytes, sha256 $(sha256sum <"$a" | cut -c1-16)...) differs from $b ($(stat -c %s "$b") bytes, sha256 $(sha256sum <"$b" | cut -c1-16)...)"
	fi
}

# assert_exists PATH [MSG] / assert_not_exists PATH [MSG] (lstat, so dangling links exist)
assert_exists() {
	if [[ ! -e "$1" && ! -L "$1" ]]; then h_fail "${2:-assert_exists}: $1 does not exist"; fi
}
assert_not_exists() {
	if [[ -e "$1" || -L "$1" ]]; then h_fail "${2:-assert_not_exists}: $1 exists"; fi
}

# assert_ok CMD...: CMD must succeed (its output is shown on failure).
assert_ok() {
	local out rc=0
	out=$("$@" 2>&1) || rc=$?
	if ((rc != 0)); then
		h_fail "assert_ok: '$*' exited $rc: $out"
	fi
}

# assert_fail CMD...: CMD must fail (any non-zero status).
assert_fail() {
	local out rc=0
	out=$(_H_EXPECTING_FAILURE=1 "$@" 2>&1) || rc=$?
	if ((rc == 0)); then
		h_fail "assert_fail: '$*' succeeded: $out"
	fi
}

# h_strerror ERRNAME: the C library's text for it (ENOENT -> "No such file or directory").
h_strerror() {
	"$H_PYTHON" -c 'import errno, os, sys
n = getattr(errno, sys.argv[1], None)
if n is None:
    sys.exit("unknown errno name " + sys.argv[1])
print(os.strerror(n))' "$1"
}

# assert_errno ERRNAME CMD...: CMD must fail and its stderr must contain strerror(ERRNAME).
assert_errno() {
	local name=$1 text err rc=0
	shift
	text=$(h_strerror "$name") || h_fail "assert_errno: unknown errno name $name"
	err=$(_H_EXPECTING_FAILURE=1 "$@" 2>&1 >/dev/null) || rc=$?
	if ((rc == 0)); then
		h_fail "assert_errno: expected $name ($text) from '$*', but it succeeded"
	fi
	if [[ "$err" != *"$text"* ]]; then
		h_fail "assert_errno: expected $name ($text) from '$*', got status $rc: $err"
	fi
}

# h_errno PYCODE [ARGS...]: run Python code (os, sys, errno imported; ARGS in sys.argv[1:])
# and print the errno NAME of the OSError it raises, or "OK". For exact errno checks where a
# tool's message is not precise enough:
#   assert_eq EINVAL "$(h_errno 'os.mkdir(sys.argv[1])' "$MNT/not-a-stage")"
#   assert_eq EEXIST "$(h_errno 'os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY)' "$F")"
h_errno() {
	local code=$1
	shift
	"$H_PYTHON" -c 'import errno, os, sys
code = sys.argv.pop(1)
try:
    exec(code)
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
else:
    print("OK")' "$code" "$@"
}

# h_wait_for TIMEOUT_S CMD...: poll CMD every 0.1 s until it succeeds; fail after TIMEOUT_S.
h_wait_for() {
	local t=$1 start
	shift
	start=$(_h_now)
	while ! "$@" >/dev/null 2>&1; do
		if awk -v a="$start" -v b="$(_h_now)" -v t="$t" 'BEGIN { exit !(b - a > t) }'; then
			h_fail "h_wait_for: '$*' did not succeed within ${t}s"
		fi
		sleep 0.1
	done
}

# ---------------------------------------------------------------------------- init / cleanup

# h_init: private $H_TMP, cleanup trap, private DOCKER_CONFIG and WERF_HOME.
h_init() {
	if [[ -n "$H_TMP" ]]; then
		return 0
	fi
	if [[ "${H_TRACE:-}" == 1 ]]; then
		PS4='+ ${EPOCHREALTIME} ${BASH_SOURCE[0]##*/}:${LINENO} '
		set -x
	fi
	H_TMP=$(mktemp -d /tmp/sfs.XXXXXX)
	chmod 0755 "$H_TMP"
	export H_TMP
	mkdir -p "$H_TMP/run" "$H_TMP/log" "$H_TMP/bin" "$H_TMP/work"
	trap '_h_on_exit' EXIT
	# if this shell is killed without running its EXIT trap (SIGKILL, a timeout's
	# --kill-after), a reaper in its own session cleans up after it
	setsid "$BASH" "$H_LIB/reaper.sh" "$$" "$H_TMP" "${H_KEEP:-0}" </dev/null >/dev/null 2>&1 &
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap '_H_LAST_ERR="${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND"' ERR
	ln -s "$H_DOCKER" "$H_TMP/bin/docker"
	export PATH="$H_TMP/bin:$PATH"
	# no test may reach a Docker daemon or credentials it did not set up itself
	export DOCKER_HOST="unix://$H_TMP/no-dockerd-started.sock"
	export DOCKER_CONFIG="$H_TMP/docker-config"
	mkdir -p "$DOCKER_CONFIG"
	echo '{"auths":{}}' >"$DOCKER_CONFIG/config.json"
	export WERF_HOME="$H_TMP/werf-home"
	mkdir -p "$WERF_HOME"
	unset DOCKER_CONTEXT DOCKER_CERT_PATH DOCKER_TLS_VERIFY
}

# h_on_cleanup CMD: run CMD (a string, eval'd) first thing in the cleanup trap.
h_on_cleanup() {
	_h_need_init
	printf '%s\n' "$*" >>"$H_TMP/run/hooks"
}

# _h_is_mounted PATH: PATH is a mount point (also a dead FUSE mount, where stat fails).
_h_is_mounted() {
	awk -v p="$1" '$5 == p { found = 1 } END { exit !found }' /proc/self/mountinfo 2>/dev/null
}

# _h_release: stop and unmount everything recorded under $H_TMP/run (idempotent; also used
# by reaper.sh when the test process died without running its EXIT trap).
_h_release() {
	local f mnt n d cpid
	# 1. mounts
	for f in "$H_TMP"/run/stagefs-*.mnt; do
		[[ -f "$f" ]] || continue
		mnt=$(cat "$f")
		if _h_is_mounted "$mnt"; then
			fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null ||
				echo "harness: could not unmount $mnt" >&2
		fi
	done
	# 2. stagefs daemons
	for f in "$H_TMP"/run/stagefs-*.pid; do
		[[ -f "$f" ]] || continue
		_h_kill "$(cat "$f")" 10
	done
	# 3. registries and token servers
	for f in "$H_TMP"/run/registry-*.pid "$H_TMP"/run/token-*.pid; do
		[[ -f "$f" ]] || continue
		_h_kill "$(cat "$f")" 10
	done
	# 4. dockerds, then their managed containerd if it outlived them
	for f in "$H_TMP"/run/dockerd-*.pid; do
		[[ -f "$f" ]] || continue
		n=${f##*/dockerd-}
		n=${n%.pid}
		d=$(cat "$H_TMP/run/dockerd-$n.dir" 2>/dev/null)
		_h_kill "$(cat "$f")" 30
		cpid=$(cat "$d/x/containerd/containerd.pid" 2>/dev/null)
		if _h_alive "$cpid" && tr '\0' ' ' <"/proc/$cpid/cmdline" 2>/dev/null | grep -F "$H_TMP/" >/dev/null; then
			_h_kill "$cpid" 10
		fi
	done
	# 5. anything still mounted under $H_TMP (dockerd's data-root bind mount, stray mounts)
	awk -v p="$H_TMP/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo 2>/dev/null | sort -r |
		while IFS= read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
}

_h_on_exit() {
	local rc=$? f passed reason
	set +e +u
	trap - ERR INT TERM
	[[ -n "$H_TMP" && -d "$H_TMP" ]] || exit "$rc"

	if [[ -f "$H_TMP/run/hooks" ]]; then
		while IFS= read -r f; do eval "$f" || true; done <"$H_TMP/run/hooks"
	fi
	_h_release

	# report
	passed=0
	[[ -f "$H_TMP/run/passed" ]] && passed=$(wc -l <"$H_TMP/run/passed")
	if [[ -n "${H_NO_SUMMARY:-}" ]]; then
		: # a tool (demo, benchmark), not a test: no verdict line
	elif ((rc == 0 && passed == 0)); then
		# A test that ends without one passed check proved nothing: that is a failure.
		printf 'not ok 1 - the script ended without a single passed check\n'
		printf '%s: 0 passed, 1 failed\n' "$H_NAME"
		rc=1
	elif ((rc != 0 && rc != 77)); then
		for f in "$H_TMP"/log/*.log; do _h_tail_log "$f"; done
		reason=$(cat "$H_TMP/run/fail_msg" 2>/dev/null)
		[[ -n "$reason" ]] || reason="exit status $rc${_H_LAST_ERR:+ after $_H_LAST_ERR}"
		printf 'not ok %s - %s\n' "$((passed + 1))" "$reason"
		[[ "${H_TAP:-}" == 1 ]] && printf '1..%s\n' "$((passed + 1))"
		printf '%s: %s passed, 1 failed\n' "$H_NAME" "$passed"
	elif ((rc == 77)); then
		[[ "${H_TAP:-}" == 1 ]] && printf '1..0 # SKIP %s\n' "$(cat "$H_TMP/run/skip_msg" 2>/dev/null)"
		printf '%s: %s passed, 0 failed, 1 skipped\n' "$H_NAME" "$passed"
	else
		[[ "${H_TAP:-}" == 1 ]] && printf '1..%s\n' "$passed"
		printf '%s: %s passed, 0 failed\n' "$H_NAME" "$passed"
	fi

	if [[ "${H_KEEP:-}" == 1 ]]; then
		: >"$H_TMP/run/trap-done"
		echo "harness: kept $H_TMP" >&2
	else
		rm -rf "$H_TMP" 2>/dev/null || { sleep 1; rm -rf "$H_TMP" || echo "harness: could not remove $H_TMP" >&2; }
	fi
	exit "$rc"
}

# ---------------------------------------------------------------------------- dockerd

# h_start_dockerd [--var NAME]: start a private dockerd (vfs, no networking), wait until it
# answers, export DOCKER_HOST=unix://$H_TMP/dN/s (and set NAME to the same if given).
# Sets H_DOCKERD_DIR (data in $H_DOCKERD_DIR/data, exec-root $H_DOCKERD_DIR/x) and
# H_DOCKERD_LOG.
h_start_dockerd() {
	_h_need_init
	local var="" n d sock pid start end ns
	while (($#)); do
		case $1 in
		--var) var=$2; shift 2 ;;
		*) h_fail "h_start_dockerd: unknown argument $1" ;;
		esac
	done
	n=$(_h_next dockerd)
	d="$H_TMP/d$n"
	sock="$d/s"
	# unix sockets: 108 bytes, and dockerd puts $exec_root/containerd/containerd-debug.sock
	# and $exec_root/libnetwork/<12 hex>.sock under the exec-root
	if ((${#d} > 60)); then h_fail "h_start_dockerd: $d is too long for unix socket paths"; fi
	mkdir -p "$d"
	echo '{}' >"$d/daemon.json"
	ns="${H_TMP##*/}-$n"
	ns=${ns//[^A-Za-z0-9-]/-}
	H_DOCKERD_LOG="$H_TMP/log/dockerd-$n.log"
	start=$(_h_now)
	# --config-file: ignore the host's /etc/docker/daemon.json.
	# The exec-root is private, so the managed containerd's sockets, state and pid file are too
	# ($d/x/containerd/...). The namespaces keep two dockerds apart even if a system containerd
	# at /run/containerd/containerd.sock exists (dockerd 20.10 then uses it instead).
	"$H_DOCKERD" --config-file "$d/daemon.json" \
		--data-root "$d/data" --exec-root "$d/x" --host "unix://$sock" --pidfile "$d/pid" \
		--storage-driver vfs --iptables=false --ip6tables=false --bridge=none --ip-masq=false \
		--containerd-namespace "sfs-$ns" --containerd-plugins-namespace "sfs-$ns-plugins" \
		</dev/null >"$H_DOCKERD_LOG" 2>&1 &
	pid=$!
	echo "$pid" >"$H_TMP/run/dockerd-$n.pid"
	echo "$d" >"$H_TMP/run/dockerd-$n.dir"
	end=$((EPOCHSECONDS + ${H_DOCKERD_TIMEOUT:-60}))
	while :; do
		if DOCKER_HOST="unix://$sock" "$H_DOCKER" version >/dev/null 2>&1; then
			break
		fi
		if ! _h_alive "$pid"; then
			_h_tail_log "$H_DOCKERD_LOG"
			[[ -e /run/containerd/containerd.sock ]] &&
				echo "harness: note: /run/containerd/containerd.sock exists; dockerd uses that containerd" >&2
			h_fail "h_start_dockerd: dockerd exited during start-up"
		fi
		if ((EPOCHSECONDS > end)); then
			_h_tail_log "$H_DOCKERD_LOG"
			h_fail "h_start_dockerd: dockerd not ready within ${H_DOCKERD_TIMEOUT:-60}s"
		fi
		sleep 0.1
	done
	export DOCKER_HOST="unix://$sock"
	# shellcheck disable=SC2034 # for the caller
	H_DOCKERD_DIR=$d
	[[ -z "$var" ]] || printf -v "$var" '%s' "unix://$sock"
	h_log "dockerd $n ready in $(_h_elapsed "$start")s at $DOCKER_HOST"
}

# h_docker ARGS...: the right docker client (/usr/bin/docker).
h_docker() { "$H_DOCKER" "$@"; }

# ---------------------------------------------------------------------------- registry

# _h_token_keys: RSA key + self-signed cert for the token servers of this test (made once).
_h_token_keys() {
	local k="$H_TMP/tokenkey"
	if [[ ! -f "$k/cert.pem" ]]; then
		mkdir -p "$k"
		openssl req -x509 -newkey rsa:2048 -nodes -keyout "$k/key.pem" -out "$k/cert.tmp" \
			-days 3650 -subj "/CN=stagefs-test-token-server" >"$k/openssl.log" 2>&1 ||
			{ _h_tail_log "$k/openssl.log"; h_fail "openssl could not make the token key"; }
		mv "$k/cert.tmp" "$k/cert.pem"
	fi
}

# h_start_registry [--htpasswd USER:PASS] [--token USER:PASS] [--token-readonly USER:PASS]
#                  [--jwt-header x5c|kid|both] [--expires-in S] [--refresh-tokens] [--var NAME]
# Start a registry (distribution 2.8) on 127.0.0.1:<free port> with filesystem storage in
# $H_TMP/rN/data and deletes enabled. Exports REGISTRY=127.0.0.1:PORT (the newest one), sets
# H_REGISTRY_DIR (its storage root, e.g. to corrupt a blob) and, with --token, TOKEN_SERVER=http://127.0.0.1:PORT2.
# --var NAME also stores the address in $NAME, so several registries can coexist.
# --htpasswd and --token may be repeated (several users); --token-readonly users get pull only.
h_start_registry() {
	_h_need_init
	local var="" jwt=x5c exp=300 refresh="" deletes=true n dir port tport="" attempt i start end
	local -a basic=() tok=() tokro=() targs=()
	while (($#)); do
		case $1 in
		--htpasswd) basic+=("$2"); shift 2 ;;
		--token) tok+=("$2"); shift 2 ;;
		--token-readonly) tokro+=("$2"); shift 2 ;;
		--jwt-header) jwt=$2; shift 2 ;;
		--expires-in) exp=$2; shift 2 ;;
		--refresh-tokens) refresh=1; shift ;;
		--no-delete) deletes=false; shift ;;
		--var) var=$2; shift 2 ;;
		*) h_fail "h_start_registry: unknown argument $1" ;;
		esac
	done
	if ((${#basic[@]} && (${#tok[@]} + ${#tokro[@]}))); then
		h_fail "h_start_registry: --htpasswd and --token exclude each other"
	fi
	n=$(_h_next registry)
	dir="$H_TMP/r$n"
	mkdir -p "$dir/data"
	start=$(_h_now)

	local auth=""
	if ((${#basic[@]})); then
		: >"$dir/htpasswd"
		for i in "${basic[@]}"; do
			htpasswd -Bbn "${i%%:*}" "${i#*:}" | sed '/^$/d' >>"$dir/htpasswd"
		done
		auth=$(printf 'auth:\n  htpasswd:\n    realm: stagefs-test-registry\n    path: %s\n' "$dir/htpasswd")
	elif ((${#tok[@]} + ${#tokro[@]})); then
		_h_token_keys
		targs=(--key "$H_TMP/tokenkey/key.pem" --cert "$H_TMP/tokenkey/cert.pem"
			--issuer stagefs-test-token-server --service stagefs-test-registry
			--port-file "$dir/token.port" --expires-in "$exp" --jwt-header "$jwt")
		for i in "${tok[@]}"; do targs+=(--user "$i"); done
		for i in "${tokro[@]}"; do targs+=(--readonly-user "$i"); done
		[[ -z "$refresh" ]] || targs+=(--refresh-tokens)
		"$H_PYTHON" "$H_LIB/token_server.py" "${targs[@]}" </dev/null >"$H_TMP/log/token-$n.log" 2>&1 &
		echo $! >"$H_TMP/run/token-$n.pid"
		end=$((EPOCHSECONDS + 15))
		while :; do
			[[ -s "$dir/token.port" ]] && break
			if ! _h_alive "$(cat "$H_TMP/run/token-$n.pid")" || ((EPOCHSECONDS > end)); then
				_h_tail_log "$H_TMP/log/token-$n.log"
				h_fail "h_start_registry: token server did not start"
			fi
			sleep 0.02
		done
		tport=$(cat "$dir/token.port")
		echo "http://127.0.0.1:$tport" >"$H_TMP/run/registry-$n.token"
		auth=$(printf 'auth:\n  token:\n    realm: http://127.0.0.1:%s/token\n    service: stagefs-test-registry\n    issuer: stagefs-test-token-server\n    rootcertbundle: %s\n' \
			"$tport" "$H_TMP/tokenkey/cert.pem")
	fi

	# a free port can be taken between our probe and the registry's bind: retry on collision
	for ((attempt = 1; attempt <= 5; attempt++)); do
		port=$(_h_free_port)
		cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: $deletes
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: stagefs-test-$n-$RANDOM$RANDOM
$auth
EOF
		if _h_registry_run "$n" "$port"; then
			break
		fi
		if ((attempt == 5)) || ! grep -q 'address already in use' "$H_TMP/log/registry-$n.log"; then
			_h_tail_log "$H_TMP/log/registry-$n.log"
			h_fail "h_start_registry: registry did not start"
		fi
		h_log "registry port $port was taken, retrying"
	done
	echo "127.0.0.1:$port" >"$H_TMP/run/registry-$n.addr"
	export REGISTRY="127.0.0.1:$port"
	# shellcheck disable=SC2034 # for the caller
	H_REGISTRY_DIR="$dir/data"
	if [[ -n "$tport" ]]; then export TOKEN_SERVER="http://127.0.0.1:$tport"; fi
	[[ -z "$var" ]] || printf -v "$var" '%s' "$REGISTRY"
	h_log "registry $n ready in $(_h_elapsed "$start")s at $REGISTRY${tport:+ (token server $TOKEN_SERVER)}${basic:+ (htpasswd)}"
}

# _h_registry_run N PORT: start registry N from $H_TMP/rN/config.yml and wait until it serves
# PORT. 0 = ready; 1 = it exited (see its log).
_h_registry_run() {
	local n=$1 port=$2 pid i code log end skip
	log="$H_TMP/log/registry-$n.log"
	local -a unset=()
	echo "---- start on port $port" >>"$log"
	skip=$(wc -l <"$log")
	# the registry takes REGISTRY_* environment variables as configuration: drop them all
	for i in $(compgen -e); do [[ "$i" != REGISTRY_* ]] || unset+=(-u "$i"); done
	env "${unset[@]}" "$H_REGISTRY_BIN" serve "$H_TMP/r$n/config.yml" </dev/null >>"$log" 2>&1 &
	pid=$!
	echo "$pid" >"$H_TMP/run/registry-$n.pid"
	end=$((EPOCHSECONDS + ${H_REGISTRY_TIMEOUT:-30}))
	while :; do
		if ! _h_alive "$pid"; then
			wait "$pid" 2>/dev/null || true
			rm -f "$H_TMP/run/registry-$n.pid"
			return 1
		fi
		# our own "listening on" line, so a foreign server on the port is not mistaken for us
		if tail -n "+$skip" "$log" | grep -F "listening on 127.0.0.1:$port" >/dev/null; then
			code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/v2/" || true)
			if [[ "$code" == 200 || "$code" == 401 ]]; then return 0; fi
		fi
		if ((EPOCHSECONDS > end)); then
			_h_tail_log "$log"
			h_fail "registry $n: not ready within ${H_REGISTRY_TIMEOUT:-30}s"
		fi
		sleep 0.05
	done
}

_h_registry_index() { # ADDR -> N
	local f
	for f in "$H_TMP"/run/registry-*.addr; do
		[[ -f "$f" ]] || continue
		if [[ "$(cat "$f")" == "${1%%/*}" ]]; then
			f=${f##*/registry-}
			echo "${f%.addr}"
			return 0
		fi
	done
	h_fail "no registry at $1"
}

# h_token_server_of ADDR: echo the token server URL of the registry at ADDR (empty if none).
# h_start_proxy SCRIPT UPSTREAM RULES: a proxy of tests/lib (rewrite_proxy.py, fault_proxy.py)
# on a free loopback port in front of UPSTREAM (HOST:PORT), with its RULES file; stopped at exit.
# Sets PROXY (127.0.0.1:PORT) and PROXY_LOG (its stderr).
h_start_proxy() {
	local script=$1 upstream=$2 rules=$3 port
	port=$(_h_free_port)
	"$H_PYTHON" "$H_LIB/$script" "$port" "$upstream" "$rules" >"$H_TMP/log/proxy-$port.out" \
		2>"$H_TMP/log/proxy-$port.log" &
	h_on_cleanup "kill $! 2>/dev/null || true"
	h_wait_for 10 grep -q ready "$H_TMP/log/proxy-$port.out"
	PROXY=127.0.0.1:$port
	PROXY_LOG=$H_TMP/log/proxy-$port.log
}

h_token_server_of() {
	local n
	n=$(_h_registry_index "$1")
	cat "$H_TMP/run/registry-$n.token" 2>/dev/null || true
}

# h_stop_registry ADDR: stop the registry at ADDR (its data is kept), e.g. to test "registry
# down". h_restart_registry ADDR: start it again on the same port with the same data.
h_stop_registry() {
	local n
	n=$(_h_registry_index "$1")
	if [[ -f "$H_TMP/run/registry-$n.pid" ]]; then
		_h_kill "$(cat "$H_TMP/run/registry-$n.pid")" 10
		rm -f "$H_TMP/run/registry-$n.pid"
	fi
}
h_restart_registry() {
	local n port
	n=$(_h_registry_index "$1")
	port=${1#*:}
	port=${port%%/*}
	h_stop_registry "$1"
	_h_registry_run "$n" "$port" || { _h_tail_log "$H_TMP/log/registry-$n.log"; h_fail "registry $n did not restart on port $port"; }
}

# h_docker_login REGISTRY USER PASS: docker login into the private $DOCKER_CONFIG.
h_docker_login() {
	local out
	out=$(printf '%s' "$3" | "$H_DOCKER" login --username "$2" --password-stdin "$1" 2>&1) ||
		h_fail "docker login $1 as $2 failed: $out"
}

# h_registry_curl [-u USER:PASS] [--scope SCOPE] [CURL ARGS...] URL
# GET (or what CURL ARGS say, e.g. -X POST, -H 'Accept: ...') URL, answering a 401 challenge
# the way Docker does: Basic, or Bearer (token from the realm with USER:PASS; the challenge's
# scope unless --scope). URL is the LAST argument. Body on stdout. Sets H_HTTP_CODE (000 when
# nothing answered); returns 1 unless the final status is 2xx or 3xx.
h_registry_curl() {
	local creds="" scope="" url hdr body realm service chscope tok
	local -a q=() cargs=()
	while (($#)); do
		case $1 in
		-u) creds=$2; shift 2 ;;
		--scope) scope=$2; shift 2 ;;
		*) cargs+=("$1"); shift ;;
		esac
	done
	((${#cargs[@]})) || h_fail "h_registry_curl: URL missing"
	url=${cargs[-1]}
	unset 'cargs[-1]'
	set -- "${cargs[@]}"
	hdr=$(mktemp "$H_TMP/work/curl.XXXXXX")
	body=$(mktemp "$H_TMP/work/curl.XXXXXX")
	H_HTTP_CODE=$(curl -s -D "$hdr" -o "$body" -w '%{http_code}' "$@" "$url" || echo 000)
	if [[ "$H_HTTP_CODE" == 401 ]]; then
		local ch
		ch=$(tr -d '\r' <"$hdr" | sed -n 's/^[Ww][Ww][Ww]-[Aa]uthenticate: *//p')
		ch=${ch%%$'\n'*}
		if [[ "$ch" == [Bb]earer* ]]; then
			realm=$(sed -n 's/.*realm="\([^"]*\)".*/\1/p' <<<"$ch")
			service=$(sed -n 's/.*service="\([^"]*\)".*/\1/p' <<<"$ch")
			chscope=$(sed -n 's/.*scope="\([^"]*\)".*/\1/p' <<<"$ch")
			[[ -n "$scope" ]] || scope=$chscope
			q=(--data-urlencode "service=$service")
			[[ -z "$scope" ]] || q+=(--data-urlencode "scope=$scope")
			[[ -z "$creds" ]] || q+=(-u "$creds")
			tok=$(curl -s -G "${q[@]}" "$realm" | jq -r '.token // empty' 2>/dev/null || true)
			if [[ -n "$tok" ]]; then
				H_HTTP_CODE=$(curl -s -D "$hdr" -o "$body" -w '%{http_code}' -H "Authorization: Bearer $tok" "$@" "$url" || echo 000)
			fi
		elif [[ "$ch" == [Bb]asic* && -n "$creds" ]]; then
			H_HTTP_CODE=$(curl -s -D "$hdr" -o "$body" -w '%{http_code}' -u "$creds" "$@" "$url" || echo 000)
		fi
	fi
	cat "$body"
	rm -f "$hdr" "$body"
	[[ "$H_HTTP_CODE" =~ ^[23] ]]
}

# h_registry_tags REPO_ADDR [USER:PASS]: the repository's tags, sorted, one per line
# (nothing if the repository does not exist).
h_registry_tags() {
	local host=${1%%/*} repo=${1#*/} out
	local -a u=()
	[[ -z "${2:-}" ]] || u=(-u "$2")
	out=$(mktemp "$H_TMP/work/tags.XXXXXX")
	# Not in $(...): H_HTTP_CODE must reach this shell.
	if ! h_registry_curl "${u[@]}" "http://$host/v2/$repo/tags/list?n=100000" >"$out"; then
		[[ "$H_HTTP_CODE" == 404 ]] && { rm -f "$out"; return 0; }
		h_fail "h_registry_tags $1: HTTP $H_HTTP_CODE: $(cat "$out")"
	fi
	jq -r '.tags // [] | .[]' <"$out" | sort
	rm -f "$out"
}

# ---------------------------------------------------------------------------- images

# h_make_stage PROJECT [--layers N] [--layer-size BYTES] [--seed S] [--parent IMAGE]
#              [--signature HEX56] [--uniqueid MS]
# Build a werf-like stage (tests/lib/mkstage.py) and `docker load` it as
# werf-stages-storage/PROJECT:SIGNATURE-UNIQUEID. Prints "STAGE IMAGE_ID".
# Defaults: 2 layers of 64 KiB; seed = 1000 + a per-test counter. Same arguments => same
# image ID. SIGNATURE = sha3_224 of project and seed; UNIQUEID = 1600000000000 + seed*1000 +
# (seed*337)%1000. --parent IMAGE (ID or reference): the parent's layers and history come
# first, then the new layers.
h_make_stage() {
	_h_need_init
	local project=$1 seed="" parent="" work out stage id got rc=0
	local -a args=()
	shift || h_fail "h_make_stage: PROJECT missing"
	while (($#)); do
		case $1 in
		--layers | --layer-size | --signature | --uniqueid) args+=("$1" "$2"); shift 2 ;;
		--seed) seed=$2; shift 2 ;;
		--parent) parent=$2; shift 2 ;;
		*) h_fail "h_make_stage: unknown argument $1" ;;
		esac
	done
	[[ -n "$seed" ]] || seed=$((1000 + $(_h_next seed)))
	work=$(mktemp -d "$H_TMP/work/stage.XXXXXX")
	if [[ -n "$parent" ]]; then
		"$H_DOCKER" save -o "$work/parent.tar" "$parent" 2>"$work/err" ||
			h_fail "h_make_stage: docker save $parent: $(cat "$work/err")"
		args+=(--parent-archive "$work/parent.tar")
	fi
	"$H_PYTHON" "$H_LIB/mkstage.py" stage --project "$project" --seed "$seed" "${args[@]}" \
		--out - --info "$work/info" --workdir "$work" 2>"$work/err" |
		"$H_DOCKER" load >"$work/load" 2>>"$work/err" || rc=$?
	if ((rc != 0)) || [[ ! -s "$work/info" ]]; then
		h_fail "h_make_stage $project: $(cat "$work/err" "$work/load" 2>/dev/null)"
	fi
	read -r stage id <"$work/info"
	got=$("$H_DOCKER" image inspect --format '{{.Id}}' "werf-stages-storage/$project:$stage" 2>&1) ||
		h_fail "h_make_stage: loaded image not found: $got"
	[[ "$got" == "$id" ]] || h_fail "h_make_stage: docker has image $got, expected $id"
	rm -rf "$work"
	echo "$stage $id"
}

# h_record_ref PROJECT KIND NAME: the :local reference of a werf record.
# h_record_tag KIND NAME: its registry tag. KIND: managed-image | metadata | client-id.
h_record_ref() {
	case $2 in
	managed-image | managed) echo "werf-managed-images/$1:$3" ;;
	metadata | metadata-by-commit | images-metadata-by-commit) echo "werf-images-metadata-by-commit/$1:$3" ;;
	client-id) echo "werf-client-id/$1:$3" ;;
	*) h_fail "unknown record kind $2 (managed-image | metadata | client-id)" ;;
	esac
}
h_record_tag() {
	case $1 in
	managed-image | managed) echo "managed-image-$2" ;;
	metadata | metadata-by-commit | images-metadata-by-commit) echo "image-metadata-by-commit-$2" ;;
	client-id) echo "client-id-$2" ;;
	*) h_fail "unknown record kind $1 (managed-image | metadata | client-id)" ;;
	esac
}

# h_make_record PROJECT KIND NAME [LABEL=VALUE...]: werf's non-stage records (werf-stages.md
# section 4) as `docker import` of nothing would make them: one empty layer.
#   managed-image  werf-managed-images/PROJECT:NAME                 no labels
#   metadata       werf-images-metadata-by-commit/PROJECT:NAME      (NAME = IMAGENAME-COMMIT)
#                  label ContentSignature=<sha3_224 of NAME> unless given
#   client-id      werf-client-id/PROJECT:NAME                      (NAME = UUID-TS)
# Prints "REF IMAGE_ID".
h_make_record() {
	_h_need_init
	local project=$1 kind=$2 name=$3 ref work rc=0 id i
	local -a labels=()
	shift 3 || h_fail "h_make_record: PROJECT KIND NAME"
	ref=$(h_record_ref "$project" "$kind" "$name")
	for i in "$@"; do labels+=(--label "$i"); done
	if [[ "$ref" == werf-images-metadata-by-commit/* && " $* " != *" ContentSignature="* ]]; then
		labels+=(--label "ContentSignature=$("$H_PYTHON" -c 'import hashlib, sys; print(hashlib.sha3_224(sys.argv[1].encode()).hexdigest())' "$name")")
	fi
	work=$(mktemp -d "$H_TMP/work/record.XXXXXX")
	"$H_PYTHON" "$H_LIB/mkstage.py" record --ref "$ref" --seed "$project" "${labels[@]}" \
		--out - --info "$work/info" --workdir "$work" 2>"$work/err" |
		"$H_DOCKER" load >"$work/load" 2>>"$work/err" || rc=$?
	if ((rc != 0)) || [[ ! -s "$work/info" ]]; then
		h_fail "h_make_record $ref: $(cat "$work/err" "$work/load" 2>/dev/null)"
	fi
	read -r ref id <"$work/info"
	rm -rf "$work"
	echo "$ref $id"
}

# h_tag_foreign IMAGE REF: give IMAGE one more (non-werf) tag. (A tag in
# werf-stages-storage/PROJECT that is not SIGNATURE-UNIQUEID breaks werf's own listing:
# only make one on purpose.)
h_tag_foreign() {
	local out
	out=$("$H_DOCKER" tag "$1" "$2" 2>&1) || h_fail "docker tag $1 $2: $out"
}

# _h_push REF: docker push; prints the manifest digest.
_h_push() {
	local out
	out=$("$H_DOCKER" push "$1" 2>&1) || h_fail "docker push $1: $out"
	printf '%s\n' "$out" >>"$H_TMP/log/docker-push.log"
	sed -n 's/.*digest: \(sha256:[0-9a-f]\{64\}\).*/\1/p' <<<"$out" | tail -1
}

# h_push_stage PROJECT STAGE REPO_ADDR [--untag]: docker tag werf-stages-storage/PROJECT:STAGE
# REPO_ADDR:STAGE, docker push it (log in first for auth registries). Prints the manifest
# digest. --untag removes the REPO_ADDR:STAGE tag from the local daemon afterwards.
h_push_stage() {
	_h_need_init
	local project=$1 stage=$2 repo=$3 untag=${4:-} out
	out=$("$H_DOCKER" tag "werf-stages-storage/$project:$stage" "$repo:$stage" 2>&1) ||
		h_fail "h_push_stage: docker tag: $out"
	_h_push "$repo:$stage"
	if [[ "$untag" == --untag ]]; then
		"$H_DOCKER" rmi "$repo:$stage" >/dev/null 2>&1 || h_fail "h_push_stage: could not untag $repo:$stage"
	fi
}

# h_push_record PROJECT KIND NAME REPO_ADDR: push a record made by h_make_record under its
# registry tag (e.g. REPO:managed-image-NAME). Prints the manifest digest.
h_push_record() {
	_h_need_init
	local ref tag out
	ref=$(h_record_ref "$1" "$2" "$3")
	tag=$(h_record_tag "$2" "$3")
	out=$("$H_DOCKER" tag "$ref" "$4:$tag" 2>&1) || h_fail "h_push_record: docker tag: $out"
	_h_push "$4:$tag"
}

# ---------------------------------------------------------------------------- stagefs mounts

_h_stagefs_bin() {
	if [[ -n "${STAGEFS:-}" ]]; then
		echo "$STAGEFS"
	elif [[ -n "${MESON_BUILD_ROOT:-}" ]]; then
		echo "$MESON_BUILD_ROOT/fs/stagefs"
	else
		echo "$H_ROOT/build/fs/stagefs"
	fi
}

# h_mount STORAGE MNT [STAGEFS OPTIONS...]: run `stagefs -f -o cache_dir=$H_TMP/cache-N
# [OPTIONS] STORAGE MNT` in the background (no cache_dir of ours if OPTIONS name one), log in
# $H_TMP/log/stagefs-N.log, and wait until MNT is a mount point. MNT is created if missing.
# Sets H_MOUNT_LOG (that log) and H_MOUNT_PID (the daemon's pid).
h_mount() {
	_h_need_init
	local storage=$1 mnt=$2 bin n log pidf rcf start end
	local -a opts=()
	shift 2 || h_fail "h_mount: STORAGE MNT [OPTIONS...]"
	bin=$(_h_stagefs_bin)
	[[ -x "$bin" ]] || h_fail "h_mount: stagefs binary $bin not found (build it or set STAGEFS)"
	mkdir -p "$mnt"
	mnt=$(realpath "$mnt")
	n=$(_h_next stagefs)
	if [[ " $* " != *cache_dir=* ]]; then
		mkdir -p "$H_TMP/cache-$n"
		opts+=(-o "cache_dir=$H_TMP/cache-$n")
	fi
	opts+=("$@")
	log="$H_TMP/log/stagefs-$n.log"
	pidf="$H_TMP/run/stagefs-$n.pid"
	rcf="$H_TMP/run/stagefs-$n.rc"
	echo "$mnt" >"$H_TMP/run/stagefs-$n.mnt"
	echo "+ $bin -f ${opts[*]} $storage $mnt" >"$log"
	start=$(_h_now)
	(
		set +e
		trap - ERR
		# STAGEFS_WRAP: a command to run the daemon under (valgrind in CI), split on spaces.
		${STAGEFS_WRAP:-} "$bin" -f "${opts[@]}" "$storage" "$mnt" </dev/null >>"$log" 2>&1 &
		echo $! >"$pidf"
		wait $!
		echo $? >"$rcf"
	) </dev/null >/dev/null 2>>"$log" &
	end=$((EPOCHSECONDS + ${H_MOUNT_TIMEOUT:-30}))
	while :; do
		if mountpoint -q "$mnt" && [[ -s "$pidf" ]]; then break; fi
		if [[ -f "$rcf" ]]; then
			_h_tail_log "$log"
			h_fail "h_mount $storage $mnt: stagefs exited with status $(cat "$rcf") before mounting"
		fi
		if ((EPOCHSECONDS > end)); then
			_h_tail_log "$log"
			h_fail "h_mount $storage $mnt: not mounted within ${H_MOUNT_TIMEOUT:-30}s"
		fi
		sleep 0.05
	done
	# shellcheck disable=SC2034 # for the caller
	H_MOUNT_LOG=$log
	# shellcheck disable=SC2034 # for the caller
	H_MOUNT_PID=$(cat "$pidf")
	h_log "mounted $storage on $mnt in $(_h_elapsed "$start")s (log ${log#"$H_TMP"/})"
}

_h_mount_index() { # MNT -> N of the live mount record
	local f m want
	want=$(realpath -m "$1")
	for f in "$H_TMP"/run/stagefs-*.mnt; do
		[[ -f "$f" ]] || continue
		m=$(cat "$f")
		if [[ "$m" == "$want" ]]; then
			f=${f##*/stagefs-}
			echo "${f%.mnt}"
			return 0
		fi
	done
	h_fail "no stagefs mount recorded at $1"
}

# h_mount_log MNT: echo the log file of the daemon serving MNT.
h_mount_log() {
	local n
	n=$(_h_mount_index "$1")
	echo "$H_TMP/log/stagefs-$n.log"
}

# h_umount MNT: fusermount3 -u MNT (retrying while busy), wait for the daemon and FAIL unless
# it exits 0.
# h_kill_mount MNT: kill -9 the stagefs daemon of MNT (a crash on purpose), detach the dead
# mount and retire its record, so MNT can be mounted again.
h_kill_mount() {
	_h_need_init
	local mnt n
	mnt=$(realpath -m "$1")
	n=$(_h_mount_index "$mnt")
	kill -9 "$(cat "$H_TMP/run/stagefs-$n.pid")"
	h_wait_for 10 test -s "$H_TMP/run/stagefs-$n.rc"
	fusermount3 -u -z "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
	mv "$H_TMP/run/stagefs-$n.mnt" "$H_TMP/run/stagefs-$n.killed"
}

h_umount() {
	_h_need_init
	local mnt n rcf out rc end
	mnt=$(realpath -m "$1")
	n=$(_h_mount_index "$mnt")
	rcf="$H_TMP/run/stagefs-$n.rc"
	end=$((EPOCHSECONDS + 10))
	while :; do
		out=$(fusermount3 -u "$mnt" 2>&1) && break
		if [[ -f "$rcf" ]] && ! mountpoint -q "$mnt"; then break; fi
		if ((EPOCHSECONDS > end)); then
			_h_tail_log "$H_TMP/log/stagefs-$n.log"
			h_fail "h_umount $mnt: fusermount3 -u: $out"
		fi
		sleep 0.1
	done
	end=$((EPOCHSECONDS + ${H_UMOUNT_TIMEOUT:-30}))
	while :; do
		[[ -s "$rcf" ]] && break
		if ((EPOCHSECONDS > end)); then
			_h_tail_log "$H_TMP/log/stagefs-$n.log"
			h_fail "h_umount $mnt: stagefs did not exit within ${H_UMOUNT_TIMEOUT:-30}s of the unmount"
		fi
		sleep 0.05
	done
	rc=$(cat "$rcf")
	mv "$H_TMP/run/stagefs-$n.mnt" "$H_TMP/run/stagefs-$n.unmounted"
	if [[ "$rc" != 0 ]]; then
		_h_tail_log "$H_TMP/log/stagefs-$n.log"
		h_fail "h_umount $mnt: stagefs exited with status $rc$( ((rc > 128)) && echo " (killed by signal $((rc - 128)))")"
	fi
}
