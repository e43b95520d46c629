#!/usr/bin/env bash
# Builds everything and runs the whole test suite four ways, each through
# its preset in CMakePresets.json:
#
#   1. default     every unit and integration test (build/)
#   2. asan-ubsan  the same suite under AddressSanitizer, LeakSanitizer and
#                  UndefinedBehaviorSanitizer (build-asan/)
#   3. tsan        the concurrency tests under ThreadSanitizer (build-tsan/)
#   4. fuzz        each libFuzzer target for CRM_FUZZ_SECONDS (build-fuzz/)
#
#   tools/test.sh [CTEST_ARGS...]
#
# Installs missing packages first. The integration tests start their own
# MariaDB under <build dir>/test-mariadb/ and their own servers on loopback
# ports picked by the kernel, so nothing else needs to be running. Extra
# arguments go to ctest for the default suite only, e.g. tools/test.sh -R Scope.
#
# Environment:
#   CRM_TEST_SANITIZERS=0  stop after the default suite, for a quick local
#                          run. Ignored when CI is set: CI runs every stage.
#   CRM_FUZZ_SECONDS=N     seconds each fuzz target runs (default 10).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc)
cd "$root"

"$root/tools/install-deps.sh"

stage() { echo "test: === $* ($(date -u +%H:%M:%S) UTC)"; }

stage "default build and suite"
cmake --preset default >/dev/null
cmake --build --preset default -j"$jobs"
ctest --preset default "$@"

if [[ ${CRM_TEST_SANITIZERS:-1} == 0 ]]; then
  if [[ -z ${CI:-} ]]; then
    echo "test: CRM_TEST_SANITIZERS=0: skipped the asan-ubsan, tsan and fuzz stages"
    exit 0
  fi
  echo "test: CI is set, so CRM_TEST_SANITIZERS=0 is ignored"
fi

stage "asan-ubsan build and suite"
cmake --preset asan-ubsan >/dev/null
cmake --build --preset asan-ubsan -j"$jobs"
# Every sanitized process writes its report here (log_path in the preset),
# including servers that test scripts start, whose exit status no test sees.
reports=$root/build-asan/sanitizer-reports
rm -rf "$reports"
mkdir -p "$reports"
asan_status=0
ctest --preset asan-ubsan || asan_status=$?
if compgen -G "$reports/*" >/dev/null; then
  for report in "$reports"/*; do
    echo "test: sanitizer report $report:"
    cat "$report"
  done
  echo "test: FAIL: the asan-ubsan suite produced sanitizer reports (above)"
  exit 1
fi
if ((asan_status != 0)); then
  echo "test: FAIL: the asan-ubsan suite failed"
  exit "$asan_status"
fi

stage "tsan build and concurrency tests"
cmake --preset tsan >/dev/null
cmake --build --preset tsan -j"$jobs"
ctest --preset tsan

stage "fuzz build and short fuzz runs"
cmake --preset fuzz -DCRM_FUZZ_SECONDS="${CRM_FUZZ_SECONDS:-10}" >/dev/null
cmake --build --preset fuzz -j"$jobs"
ctest --preset fuzz

stage "all stages passed"
