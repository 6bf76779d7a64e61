#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (root): installs what it needs, builds
# with -Werror, runs the unit and integration suites; then both again built with
# AddressSanitizer/UndefinedBehaviorSanitizer; then the unit suite under valgrind and the main
# integration scripts with the daemon under valgrind. Nothing is skipped: a missing feature
# fails the run.
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

# The daemon itself under valgrind (memcheck) through the main integration scripts.
STAGEFS_WRAP="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --suppressions=$PWD/tests/valgrind.supp" \
  H_MOUNT_TIMEOUT=60 meson test -C build --print-errorlogs --num-processes 2 \
  integration-registry_read integration-registry_auth integration-local_read \
  integration-local_write integration-registry_write integration-write_faults
echo "run-all: every suite passed"
