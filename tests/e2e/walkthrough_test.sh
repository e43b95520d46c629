#!/usr/bin/env bash
# Runs the README walkthrough, exactly as written between the
# walkthrough:begin and walkthrough:end markers, against servers started by
# tools/run.sh at the most verbose log level (trace), then checks what it
# printed. It also checks that no admin key or token it produced, and no
# key of the key file, appears in the logs, the output or a mariadb-dump of
# both schemas. Only the two address lines are pointed at free ports.
#
#   tests/e2e/walkthrough_test.sh REPO_ROOT BUILD_DIR
set -uo pipefail

root=$1
build=$2
state=$build/e2e-walkthrough
rm -rf "$state"
mkdir -p "$state"

source "$root/tests/e2e/start_stack.sh"
# Both servers and crmctl read it as --log_level.
export CRM_LOG_LEVEL=trace
start_stack "$root" "$build" "$state" || exit 1
auth_port=$STACK_AUTH_PORT
crm_port=$STACK_CRM_PORT

# The walkthrough block, with its two address lines pointed at our ports,
# followed by a line that saves the credentials for the log check below.
sed -n '/<!-- walkthrough:begin -->/,/<!-- walkthrough:end -->/p' "$root/README.md" |
  grep -v -e '^<!--' -e '^```' |
  sed -e "s|^AUTH=.*|AUTH=http://127.0.0.1:$auth_port|" -e "s|^CRM=.*|CRM=http://127.0.0.1:$crm_port|" \
    >"$state/walkthrough.sh"
echo 'printf "%s\n" "$ADMIN_KEY" "$TOKEN" "$NEW_TOKEN" >"$RUN_STATE_DIR/credentials"' >>"$state/walkthrough.sh"

(cd "$root" && RUN_STATE_DIR=$state RUN_BUILD_DIR=$build bash "$state/walkthrough.sh") >"$state/output" 2>&1

failures=0
expect_count() {
  local pattern=$1 expected=$2 what=$3 actual
  actual=$(grep -c -- "$pattern" "$state/output")
  if [[ $actual -ne $expected ]]; then
    echo "FAIL: $what: expected $expected lines matching '$pattern', found $actual"
    failures=$((failures + 1))
  fi
}
expect_count '"lastName": "Lovelace"' 2 "GetLead succeeds with the first token and with the rotated one"
expect_count '"code": "permission_denied"' 1 "ListContacts outside the scopes"
expect_count 'CONTACT:READ' 1 "the denial names the missing scope"
expect_count '"code": "unauthenticated"' 1 "the rotated-away token"
expect_count 'jq: error' 0 "every reply parsed"

mapfile -t credentials <"$state/credentials"
if [[ ${#credentials[@]} -ne 3 ]]; then
  echo "FAIL: the walkthrough did not produce an admin key and two tokens"
  failures=$((failures + 1))
fi
for credential in "${credentials[@]}"; do
  if [[ ! $credential =~ ^crm(adm|pat)_ ]]; then
    echo "FAIL: expected a credential, got '${credential:0:12}'"
    failures=$((failures + 1))
  elif grep -qF -- "$credential" "$state"/*.log "$state/output"; then
    echo "FAIL: a credential (${credential:0:7}...) appears in a log or the output"
    failures=$((failures + 1))
  fi
done

grep -q " trace \| debug " "$state/auth.log" "$state/crm.log" ||
  { echo "FAIL: the servers logged nothing below info; is --log_level=trace in effect?"; failures=$((failures + 1)); }

# Both schemas as stored, once as text and once with binary columns in hex,
# taken while the servers still run.
socket=$state/mariadb/mysqld.sock
dump() { mariadb-dump --no-defaults --socket="$socket" -uroot --single-transaction "$@" --databases crm_auth crm_data; }
if ! dump >"$state/dump.sql" 2>"$state/dump.err" || ! dump --hex-blob >"$state/dump-hex.sql" 2>>"$state/dump.err"; then
  echo "FAIL: mariadb-dump failed: $(cat "$state/dump.err")"
  failures=$((failures + 1))
fi
grep -q "INSERT INTO \`access_tokens\`" "$state/dump.sql" ||
  { echo "FAIL: the dump has no access_tokens rows, so it proves nothing"; failures=$((failures + 1)); }

# Searches every log, the output and both dumps for $1, also in hex (upper
# and lower case), and reports $2 when found.
expect_absent() {
  local value=$1 what=$2 hex
  hex=$(printf '%s' "$value" | od -An -tx1 | tr -d ' \n')
  if grep -qiF -e "$value" -e "$hex" "$state"/*.log "$state/output" "$state/dump.sql" "$state/dump-hex.sql"; then
    echo "FAIL: $what appears in a log, the output or a database dump"
    failures=$((failures + 1))
  fi
}
for credential in "${credentials[@]}"; do
  [[ $credential =~ ^crm(adm|pat)_ ]] && expect_absent "$credential" "a credential (${credential:0:7}...)"
done
# Each key of the key file, in its base64 form and as hex of its 32 bytes.
keys=0
while read -r line; do
  [[ -z $line || $line == \#* ]] && continue
  name=${line%%=*} value=${line#*=}
  keys=$((keys + 1))
  expect_absent "$value" "$name (base64)"
  expect_absent "$(printf '%s' "$value" | base64 -d | od -An -tx1 | tr -d ' \n')" "$name (hex)"
done <"$state/keys.txt"
((keys == 3)) || { echo "FAIL: expected 3 keys in $state/keys.txt, read $keys"; failures=$((failures + 1)); }

if ((failures > 0)); then
  echo "--- walkthrough output ---"
  cat "$state/output"
  echo "0 passed, $failures failed"
  exit 1
fi
echo "walkthrough: every step printed what the README says"
