#!/usr/bin/env bash
# Runs the README walkthrough, exactly as written between the
# walkthrough:begin and walkthrough:end markers, against servers started by
# tools/run.sh, then checks what it printed and that no credential reached
# a log. Only the two address lines are pointed at free ports.
#
#   tests/e2e/walkthrough_test.sh REPO_ROOT BUILD_DIR
set -uo pipefail

root=$1
build=$2
state=$build/e2e-walkthrough
rm -rf "$state"
mkdir -p "$state"

source "$root/tests/e2e/start_stack.sh"
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

if ((failures > 0)); then
  echo "--- walkthrough output ---"
  cat "$state/output"
  echo "0 passed, $failures failed"
  exit 1
fi
echo "walkthrough: every step printed what the README says"
