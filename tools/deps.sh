#!/usr/bin/env bash
# Install what stagefs needs to build, test and demo on Debian 12 (run as root).
# Quiet when everything is already there.
set -euo pipefail

pkgs=(
  build-essential meson ninja-build pkg-config
  libfuse3-dev fuse3 libcurl4-openssl-dev libjansson-dev libssl-dev libcmocka-dev libdeflate-dev zlib1g-dev libisal-dev
  docker.io docker-registry skopeo rsync jq curl python3 apache2-utils openssl
  valgrind util-linux procps
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# FUSE needs its device; containers sometimes lack the module autoload.
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
[ -e /dev/fuse ] || { echo "deps: /dev/fuse is missing: FUSE cannot work here" >&2; exit 1; }
