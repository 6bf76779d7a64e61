#!/usr/bin/env bash
# Install what stagefs needs to build, test and demo on Debian 12 (run as root).
# Quiet when everything is already there.
set -euo pipefail

# Installed with --no-install-recommends, so name what a recommendation would have brought:
# ca-certificates (the system CA bundle: libcurl verifies HTTPS registries with it, and
# tests/integration/registry_tls.sh builds on it; docker.io only recommends it), kmod
# (modprobe, below). What the scripts call beyond these is in every Debian 12, even a
# container's minbase: coreutils, util-linux and mount (mountpoint, unshare, setsid, flock,
# mount --bind), findutils, diffutils, sed, mawk, tar, gzip.
pkgs=(
  build-essential meson ninja-build pkg-config
  libfuse3-dev fuse3 libcurl4-openssl-dev libjansson-dev libssl-dev libcmocka-dev libmurmurhash-dev
  libdeflate-dev zlib1g-dev libisal-dev
  docker.io docker-registry skopeo rsync jq curl python3 apache2-utils openssl
  valgrind util-linux procps ca-certificates kmod
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
