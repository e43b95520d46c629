#!/usr/bin/env bash
# Runs systemd's own checks on the units in deploy/systemd:
# `systemd-analyze verify` (syntax, unknown keys, invalid values) and
# `systemd-analyze security --offline` (hardening exposure score).
#
#   systemd_analyze.sh UNIT_DIR
#
# Exits 77 (skipped) when systemd-analyze is missing. verify requires the
# ExecStart binary to exist, so each unit is checked as a copy whose
# ExecStart points to an empty stub of the same name.
set -euo pipefail

# Exposure scores above 2.0 (of 10) fail. The units score 1.2 with
# systemd 252; dropping NoNewPrivileges, ProtectSystem and
# CapabilityBoundingSet raises that to 3.0.
max_exposure_tenths=20

unit_dir=${1:?usage: systemd_analyze.sh UNIT_DIR}
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIPPED: systemd-analyze not found; install Debian's systemd package to verify the units"
  exit 77
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"
status=0

for unit in "$unit_dir"/*.service; do
  name=$(basename "$unit")
  binary=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit" | tail -1)
  if [[ -z $binary ]]; then
    echo "FAIL: $name has no ExecStart="
    status=1
    continue
  fi
  stub=$work/bin/$(basename "$binary")
  printf '#!/bin/sh\nexit 0\n' >"$stub"
  chmod +x "$stub"
  sed "s|^ExecStart=$binary|ExecStart=$stub|" "$unit" >"$work/$name"

  # verify exits 0 on unknown keys and invalid values but prints them, so
  # any line about this unit is a failure.
  verify_status=0
  output=$(systemd-analyze verify "$work/$name" 2>&1) || verify_status=$?
  if ((verify_status != 0)) || grep -qF "$name" <<<"$output"; then
    echo "FAIL: systemd-analyze verify $name (exit $verify_status):"
    echo "$output"
    status=1
  else
    echo "ok: systemd-analyze verify $name"
  fi

  if security=$(systemd-analyze security --offline=true --threshold="$max_exposure_tenths" "$work/$name" 2>&1); then
    echo "ok: $(grep -o 'Overall exposure level.*' <<<"$security")"
  else
    echo "FAIL: systemd-analyze security $name is above exposure $((max_exposure_tenths / 10)).$((max_exposure_tenths % 10)):"
    grep -E '✗|Overall' <<<"$security" || echo "$security"
    status=1
  fi
done
exit "$status"
