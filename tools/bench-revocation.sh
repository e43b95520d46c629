#!/usr/bin/env bash
# Prints revocation latency across two auth and two CRM servers (p50, p99,
# max over 200 rotations) and GetLead throughput with and without the
# token-check cache, as a markdown table.
#
#   tools/bench-revocation.sh [--revocations=N] [--seconds=S] [--concurrency=C]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${RUN_BUILD_DIR:-$root/build}
"$root/tools/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target revocation_bench

database=$build/bench-mariadb
"$root/tools/mariadb.sh" start "$database" >/dev/null
trap '"$root/tools/mariadb.sh" stop "$database" >/dev/null' EXIT
CRM_TEST_DB_SOCKET=$database/mysqld.sock "$build/tools/bench/revocation_bench" "$@"
