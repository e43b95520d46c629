#!/usr/bin/env bash
# Builds both servers and runs them on a private MariaDB, for development.
#
#   tools/run.sh
#
# Installs missing packages, builds into build/, starts MariaDB on a unix
# socket under build/run/, creates the databases, a database user and a
# development key file (build/run/keys.txt) when none exists, then runs the
# auth server on 127.0.0.1:50051 (internal TokenService port 50053) and the
# CRM server on 127.0.0.1:50052 until Ctrl-C, in plaintext on loopback.
# Logs: build/run/*.log. Environment overrides: RUN_AUTH_PORT,
# RUN_AUTH_INTERNAL_PORT, RUN_CRM_PORT, RUN_STATE_DIR (instead of build/run), RUN_BUILD_DIR (instead
# of build/) and RUN_SKIP_BUILD=1 (use the binaries already built).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${RUN_BUILD_DIR:-$root/build}
state=${RUN_STATE_DIR:-$build/run}
auth_port=${RUN_AUTH_PORT:-50051}
auth_internal_port=${RUN_AUTH_INTERNAL_PORT:-50053}
crm_port=${RUN_CRM_PORT:-50052}

if [[ ${RUN_SKIP_BUILD:-0} != 1 ]]; then
  "$root/tools/install-deps.sh"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j"$(nproc)" --target auth_server crm_server crmctl
fi

mkdir -p "$state"
"$root/tools/mariadb.sh" start "$state/mariadb"
socket=$state/mariadb/mysqld.sock

if [[ ! -f $state/db-password ]]; then
  (umask 077 && openssl rand -hex 24 >"$state/db-password")
fi
password=$(cat "$state/db-password")
mariadb --no-defaults --socket="$socket" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS crm_auth CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE DATABASE IF NOT EXISTS crm_data CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS 'crm'@'localhost' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON crm_auth.* TO 'crm'@'localhost';
GRANT ALL PRIVILEGES ON crm_data.* TO 'crm'@'localhost';
SQL

if [[ ! -f $state/keys.txt ]]; then
  "$build/tools/crmctl" generate-key-file "$state/keys.txt"
  echo "run: created development key file $state/keys.txt"
fi

# The servers and tools/crmctl.sh read these through their CRM_* fallbacks.
export CRM_DB_SOCKET=$socket CRM_DB_USER=crm CRM_DB_PASSWORD=$password CRM_KEY_FILE=$state/keys.txt

pids=()
stop_all() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  "$root/tools/mariadb.sh" stop "$state/mariadb"
}
trap stop_all INT TERM EXIT

# Waits until the server that writes $state/$1.log reports it is listening.
await_listening() {
  for _ in $(seq 1 100); do
    grep -q "listening on" "$state/$1.log" 2>/dev/null && return
    if ! kill -0 "${pids[@]}" 2>/dev/null; then
      echo "run: a server exited during start-up:" >&2
      tail -5 "$state/auth.log" "$state/crm.log" 2>/dev/null >&2
      exit 1
    fi
    sleep 0.1
  done
}

"$build/services/auth/auth_server" --port="$auth_port" --internal_port="$auth_internal_port" 2>"$state/auth.log" &
pids+=($!)
# The CRM server starts once the auth server listens. Otherwise its first
# connection to the internal port is refused, and gRPC waits about a second
# before it connects again, so the first token checks fail with UNAVAILABLE.
await_listening auth
"$build/services/crm/crm_server" --port="$crm_port" --auth_target="127.0.0.1:$auth_internal_port" \
  2>"$state/crm.log" &
pids+=($!)
await_listening crm

cat <<EOF_READY
run: auth server on 127.0.0.1:$auth_port (internal 127.0.0.1:$auth_internal_port), CRM server on 127.0.0.1:$crm_port
run: logs in $state/auth.log and $state/crm.log; press Ctrl-C to stop
run: create an organization with: tools/crmctl.sh create-organization --display_name=Acme
EOF_READY
wait -n "${pids[@]}"
echo "run: a server exited; stopping the rest" >&2
