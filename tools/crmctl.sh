#!/usr/bin/env bash
# Runs the operator CLI (build/tools/crmctl) against the private database
# that tools/run.sh started, e.g.:
#   tools/crmctl.sh create-organization --display_name=Acme
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${RUN_BUILD_DIR:-$root/build}
state=${RUN_STATE_DIR:-$build/run}
if [[ ! -S $state/mariadb/mysqld.sock ]]; then
  echo "crmctl.sh: no database running; start tools/run.sh first" >&2
  exit 1
fi
CRM_DB_SOCKET=$state/mariadb/mysqld.sock CRM_DB_USER=crm CRM_DB_PASSWORD=$(cat "$state/db-password") \
  CRM_KEY_FILE=$state/keys.txt exec "$build/tools/crmctl" "$@"
