#!/usr/bin/env bash
# Checks the servers' configuration handling without a database:
#   - every flag that auth_server, crm_server and crmctl define is listed in
#     docs/configuration.md with its environment variable;
#   - invalid values make the server exit with status 2 and a message that
#     names the flag, the value and its source, and no secret;
#   - the effective configuration logged at start-up has every flag and
#     redacts the database password and the keys.
# Usage: config_test.sh REPO_ROOT BUILD_DIR
set -uo pipefail

root=$1
build=$2
auth_server=$build/services/auth/auth_server
crm_server=$build/services/crm/crm_server
crmctl=$build/tools/crmctl
doc=$root/docs/configuration.md
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failures=0
passes=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
pass() {
  passes=$((passes + 1))
}

# Prints the flags a binary defines in this repository's sources, one per
# line, from the "Flags from FILE:" sections of --helpfull.
project_flags() {
  "$1" --helpfull 2>&1 | awk '
    /^  Flags from / { own = ($3 ~ /(^|\/)(services|common|tools)\//); next }
    own && /^    --[a-z0-9_]+/ { sub(/^    --/, ""); sub(/[ (].*$/, ""); print }'
}

for binary in "$auth_server" "$crm_server" "$crmctl"; do
  flags=$(project_flags "$binary")
  if [[ -z $flags ]]; then
    fail "$(basename "$binary") --helpfull listed no project flags"
    continue
  fi
  while read -r flag; do
    variable="CRM_${flag^^}"
    if ! grep -q -- "| \`--$flag\` | \`$variable\` |" "$doc"; then
      fail "docs/configuration.md has no row for --$flag ($variable) of $(basename "$binary")"
    else
      pass
    fi
  done <<<"$flags"
done

# expect_invalid NAME EXPECTED_TEXT [ENV=VALUE...] -- COMMAND...
expect_invalid() {
  local name=$1 expected=$2
  shift 2
  local environment=()
  while [[ $1 != -- ]]; do
    environment+=("$1")
    shift
  done
  shift
  local output status
  output=$(env "${environment[@]}" "$@" 2>&1 </dev/null)
  status=$?
  if [[ $status -ne 2 ]]; then
    fail "$name: exit status $status, expected 2; output: $output"
  elif [[ $output != *"$expected"* ]]; then
    fail "$name: output lacks \"$expected\": $output"
  elif [[ $output == *"S3cr3t-password"* ]]; then
    fail "$name: output shows the database password: $output"
  else
    pass
  fi
}

expect_invalid "auth port" "invalid --port=70000 (from command line): must be from 0 to 65535" \
  -- "$auth_server" --port=70000
expect_invalid "crm worker threads from environment" \
  "invalid --worker_threads=0 (from environment variable CRM_WORKER_THREADS): must be from 1 to 1024" \
  CRM_WORKER_THREADS=0 -- "$crm_server"
expect_invalid "crm log level" "invalid --log_level=loud" -- "$crm_server" --log_level=loud
expect_invalid "auth pool size with a password set" "invalid --db_pool_size=0" \
  CRM_DB_PASSWORD=S3cr3t-password -- "$auth_server" --db_pool_size=0
expect_invalid "crm empty auth target" "invalid --auth_target= (from command line): must not be empty" \
  -- "$crm_server" --auth_target=
expect_invalid "auth heartbeat" "invalid --invalidation_heartbeat_interval_ms=5" \
  -- "$auth_server" --invalidation_heartbeat_interval_ms=5
expect_invalid "crm metrics port" "invalid --metrics_port=-2" -- "$crm_server" --metrics_port=-2
expect_invalid "crm cache age" "invalid --token_cache_max_age_seconds=0" \
  CRM_TOKEN_CACHE_MAX_AGE_SECONDS=0 -- "$crm_server"
expect_invalid "crm trusted proxy range" \
  "invalid --trusted_proxy_cidrs=10.0.0.0/8,10.1.2.3/8 (from command line): \"10.1.2.3/8\" has host bits set" \
  -- "$crm_server" --client_ip_header=x-forwarded-for --trusted_proxy_cidrs=10.0.0.0/8,10.1.2.3/8
expect_invalid "crm client IP header without proxies" \
  "invalid --trusted_proxy_cidrs= (from command line): must be set when --client_ip_header is set" \
  -- "$crm_server" --client_ip_header=x-forwarded-for --trusted_proxy_cidrs=
expect_invalid "crm proxies without a header" \
  "invalid --client_ip_header= (from default): must be set when --trusted_proxy_cidrs is set" \
  CRM_TRUSTED_PROXY_CIDRS=10.0.0.0/8 -- "$crm_server"
expect_invalid "crm upper-case client IP header" "invalid --client_ip_header=X-Forwarded-For" \
  -- "$crm_server" --client_ip_header=X-Forwarded-For --trusted_proxy_cidrs=10.0.0.0/8

# A port nothing listens on: the servers log their configuration, then fail
# to connect to the database and exit with status 1.
closed_port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
encryption_key=$(head -c 32 /dev/urandom | base64)
hmac_key=$(head -c 32 /dev/urandom | base64)
page_key=$(head -c 32 /dev/urandom | base64)
for binary in "$auth_server" "$crm_server"; do
  name=$(basename "$binary")
  output=$(env CRM_DB_PASSWORD=S3cr3t-password CRM_TOKEN_ENCRYPTION_KEY="$encryption_key" \
    CRM_TOKEN_HMAC_KEY="2:$hmac_key,1:$(head -c 32 /dev/urandom | base64)" CRM_PAGE_TOKEN_KEY="$page_key" \
    "$binary" --db_host=127.0.0.1 --db_port="$closed_port" --port=0 --log_level=info 2>&1 </dev/null)
  status=$?
  if [[ $status -ne 1 ]]; then
    fail "$name without a database: exit status $status, expected 1; output: $output"
  else
    pass
  fi
  for secret in S3cr3t-password "$encryption_key" "$hmac_key" "$page_key"; do
    if [[ $output == *"$secret"* ]]; then
      fail "$name start-up output shows a secret: $output"
    else
      pass
    fi
  done
  for expected in "config --db_password=<redacted> (environment variable CRM_DB_PASSWORD)" \
    "config --db_port=$closed_port (command line)" "config --log_level=info (command line)" \
    "config --metrics_port=-1 (default)" "loaded keys: token_encryption_key ids ["; do
    if [[ $output != *"$expected"* ]]; then
      fail "$name start-up output lacks \"$expected\": $output"
    else
      pass
    fi
  done
  # One config line per project flag.
  while read -r flag; do
    if [[ $output != *"config --$flag="* ]]; then
      fail "$name start-up output has no line for --$flag"
    else
      pass
    fi
  done < <(project_flags "$binary")
done

echo "$passes passed, $failures failed"
[[ $failures -eq 0 ]]
