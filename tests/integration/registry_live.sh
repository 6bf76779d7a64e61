#!/usr/bin/env bash
# Runs registry_live (the registry client in C) against a real token-auth registry.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init
h_start_dockerd
h_start_registry --token carol:pa55 --var REG
read -r STAGE ID < <(h_make_stage live --layers 2 --seed 51)
h_make_record live managed-image web >/dev/null
h_docker_login "$REG" carol pa55
h_push_stage live "$STAGE" "$REG/live/stages" >/dev/null
h_push_record live managed-image web "$REG/live/stages" >/dev/null
bad=$H_TMP/bad
mkdir -p "$bad"
jq -n --arg r "$REG" --arg a "$(printf carol:nope | base64)" '{auths: {($r): {auth: $a}}}' >"$bad/config.json"
REGISTRY=$REG REPO=live/stages STAGE=$STAGE IMAGE_ID=$ID RECORD_TAG=managed-image-web \
	BAD_CONFIG=$bad "$REGISTRY_LIVE"
h_pass "registry client against a real registry"
