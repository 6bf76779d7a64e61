#!/bin/bash
# reaper.sh PID H_TMP KEEP: started by h_init (harness.sh) in its own session. Waits for the
# test shell PID to end; if its $H_TMP is still there (the EXIT trap did not run: SIGKILL),
# stops and unmounts what the test started and removes H_TMP (unless KEEP=1).
pid=$1
tmp=$2
keep=${3:-0}
trap '' HUP INT TERM
alive() {
	local st
	[[ -r /proc/$pid/stat ]] || return 1
	st=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null) || return 1
	[[ "$st" != Z ]]
}
while alive; do sleep 0.5; done
# a completed EXIT trap removed $tmp, or (H_KEEP=1) left run/trap-done
[[ -d "$tmp/run" && ! -e "$tmp/run/trap-done" ]] || exit 0
. "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
H_TMP=$tmp
_h_release >/dev/null 2>&1
if [[ "$keep" != 1 ]]; then
	rm -rf "$tmp"
fi
