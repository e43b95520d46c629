#!/usr/bin/env bash
# Installs what building, running and testing the project needs: Debian 12
# packages (only those missing) and the pinned npm tools in tools/package.json.
# Safe to run again; it changes nothing when everything is present.
set -euo pipefail

cd "$(dirname "$0")/.."

packages=(
  build-essential cmake pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libmysqlcppconn-dev libssl-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev
  mariadb-server mariadb-client
  jq
  nodejs npm
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  # The package scripts must not start a system-wide MariaDB: the project
  # runs its own private instance (tools/mariadb.sh).
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [[ ! -x tools/node_modules/.bin/buf ]]; then
  echo "install-deps: installing npm tools from tools/package-lock.json"
  npm ci --prefix tools --no-audit --no-fund --loglevel=error
fi
