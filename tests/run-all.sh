#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (root): installs what it needs, builds
# with -Werror, runs the unit and integration suites, then the unit suite again under
# AddressSanitizer/UndefinedBehaviorSanitizer and valgrind, and the integration suite with
# an ASan/UBSan daemon. Nothing is skipped: a missing feature fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/deps.sh

export STAGEFS_TEST_NO_SKIP=1
meson setup build --reconfigure -Dwerror=true -Dbuildtype=debugoptimized >/dev/null 2>&1 ||
  meson setup build -Dwerror=true -Dbuildtype=debugoptimized >/dev/null
ninja -C build
meson test -C build --print-errorlogs --num-processes 2 --suite unit --suite integration

meson setup build-asan --reconfigure -Dwerror=true -Db_sanitize=address,undefined \
  -Db_lundef=false >/dev/null 2>&1 ||
  meson setup build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
ninja -C build-asan
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
meson test -C build-asan --print-errorlogs --num-processes 2 --suite unit --suite integration

meson test -C build --print-errorlogs --num-processes 2 --suite unit \
  --wrap='valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite -q'
