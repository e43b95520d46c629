#!/usr/bin/env bash
# Builds everything and runs the whole test suite (unit and integration).
#
#   tools/test.sh
#
# Installs missing packages first. The integration tests start their own
# MariaDB under build/test-mariadb/ and their own servers on loopback ports
# picked by the kernel, so nothing else needs to be running. Extra arguments
# go to ctest, e.g. tools/test.sh -R Scope.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build

"$root/tools/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure --timeout 600 "$@"
