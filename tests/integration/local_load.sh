#!/usr/bin/env bash
# Runs local_load (docker_load_image / docker_remove_image in C, archives planned with
# core/tar_writer) against a real dockerd, then checks the end state with the docker CLI.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init
h_start_dockerd
work=$H_TMP/work/local_load
mkdir -p "$work"
LOCAL_LOAD=${LOCAL_LOAD:-$H_ROOT/build/tests/integration/local_load}
DOCKER_CLI=$H_DOCKER WORKDIR=$work "$LOCAL_LOAD" || h_fail "local_load: a case failed (see above)"
h_pass "load, gzip layers, repeated layer, moved tag, corrupt and truncated layers, untag"
# What stays: the stages of the plain, gzip, repeated-layer, moved-tag and failing-source cases;
# nothing of the corrupt and truncated ones, nor of the removed tags.
tags=$(h_docker images werf-stages-storage/loadtest --format '{{.Tag}}' | sort)
[[ $(wc -l <<<"$tags") == 5 ]] || h_fail "expected 5 stage tags, got: $tags"
for n in 1 2 3 4 7; do
	t=$(printf '%056x-%u' $((n * 2654435761 % 4294967296)) $((1600000000000 + n)))
	grep -qx "$t" <<<"$tags" || h_fail "stage tag $t missing from: $tags"
done
h_pass "docker images shows exactly the loaded stages"
