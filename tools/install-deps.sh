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
  libmicrohttpd-dev
  mariadb-server mariadb-client
  jq sysbench
  python3-grpcio python3-protobuf
  python3-yaml
)
# Only the tests need these, not the servers or their image: clang and
# libFuzzer for the fuzz preset, and libpng and libjpeg as the reference
# decoders of the logo fuzz target. gcc's sanitizer runtimes come with
# build-essential.
test_packages=(
  clang-14 libclang-rt-14-dev
  libpng-dev libjpeg62-turbo-dev
)

missing=()
for package in "${packages[@]}" "${test_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
# Node.js and npm may come from another source than Debian (a NodeSource
# nodejs package ships npm itself and conflicts with Debian's npm), so they
# are judged by the commands, not by package names.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)

if ((${#missing[@]} > 0)); then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  # The package scripts must not start a system-wide MariaDB: the project
  # runs its own private instance (tools/mariadb.sh).
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Reinstall the npm tools whenever the lock file changed since the last
# install, so an existing checkout picks up new pins too.
lock_hash=$(sha256sum tools/package-lock.json | cut -d' ' -f1)
stamp=tools/node_modules/.installed-lock-sha256
if [[ ! -f $stamp || $(cat "$stamp") != "$lock_hash" ]]; then
  echo "install-deps: installing npm tools from tools/package-lock.json"
  npm ci --prefix tools --no-audit --no-fund --loglevel=error
  echo "$lock_hash" >"$stamp"
fi
