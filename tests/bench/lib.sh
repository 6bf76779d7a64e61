# shellcheck shell=bash
# Helpers shared by the benchmarks (bench.sh, bench_write.sh); source after tests/lib/harness.sh.
#
#   timed NAME CMD...   run CMD, record its wall-clock seconds under NAME; T[NAME] is the median
#                       of NAME's runs so far, S[NAME] all of them (space-separated)
#   drop                sync and drop the page cache (root)
#   ratio A B           T[A] / T[B], 2 decimals
#   peak_kb PID         the process's peak RSS (VmHWM) in KiB
#   median VALUES...    the median (the lower one of an even count)
#   row LABEL VALUE [NOTE]   one aligned line of the result table

declare -A T S

now() { printf '%s' "${EPOCHREALTIME/,/.}"; }

median() { printf '%s\n' "$@" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

timed() { # NAME CMD...
	local name=$1 a b t
	shift
	a=$(now)
	"$@"
	b=$(now)
	t=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b - a }')
	S[$name]="${S[$name]:-} $t"
	# shellcheck disable=SC2086 # split the list of runs
	T[$name]=$(median ${S[$name]})
	h_log "$name: $t s (load $(cut -d' ' -f1-3 /proc/loadavg))"
}

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

ratio() { awk -v a="${T[$1]}" -v b="${T[$2]}" 'BEGIN { printf "%.2f", a / b }'; }

peak_kb() { awk '/VmHWM/ { print $2 }' "/proc/$1/status"; }

row() { printf '  %-46s %9s%s\n' "$1" "$2" "${3:+   $3}"; }
