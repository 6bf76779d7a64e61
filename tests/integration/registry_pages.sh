#!/usr/bin/env bash
# Many tags: every stage is listed, nothing else. distribution 2.8 answers all tags at once
# (it ignores n), so the listing is checked twice: straight from the registry, and through
# tests/lib/pager.py, which pages the same real tag list with n/last/Link as GitLab, Harbor
# and Docker Hub do.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init
h_start_dockerd
h_start_registry
REPO=$REGISTRY/big/stages
read -r S0 _ < <(h_make_stage big --layers 1 --seed 31)
h_push_stage big "$S0" "$REPO"
python3 "$H_LIB/mktags.py" "$REGISTRY" big/stages "$S0" 2100 \
	--extra managed-image-web client-id-5d5b3f8e-1589786063772 latest >"$H_TMP/made"
(echo "$S0"; cat "$H_TMP/made") | sort >"$H_TMP/want"
assert_eq 2101 "$(wc -l <"$H_TMP/want")" "stage tags made"

h_mount "$REPO" "$H_TMP/direct"
ls "$H_TMP/direct" >"$H_TMP/got"
assert_file_eq "$H_TMP/want" "$H_TMP/got" "every stage, nothing else"
h_pass "2101 stages list fully (one answer)"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 "$H_LIB/pager.py" "$port" "$REGISTRY" >"$H_TMP/log/pager.out" 2>"$H_TMP/log/pager.log" &
h_on_cleanup "kill $! 2>/dev/null || true"
h_wait_for 10 grep -q ready "$H_TMP/log/pager.out"
h_mount "127.0.0.1:$port/big/stages" "$H_TMP/paged"
ls "$H_TMP/paged" >"$H_TMP/got-paged"
assert_file_eq "$H_TMP/want" "$H_TMP/got-paged" "every stage on every page, nothing else"
assert_eq 3 "$(grep -c '"GET /v2/big/stages/tags/list' "$H_TMP/log/pager.log")" \
	"three pages of 1000, one request each"
h_pass "2101 stages over three pages list fully"
h_umount "$H_TMP/direct"
h_umount "$H_TMP/paged"
