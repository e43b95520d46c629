#!/usr/bin/env bash
# Runs one non-C++ client against a stack started with tools/run.sh on free
# loopback ports (tests/e2e/start_stack.sh), and stops the stack afterwards.
#
#   tests/polyglot/client_test.sh REPO_ROOT BUILD_DIR CLIENT
#
# CLIENT is one of:
#   python    the README walkthrough through stubs that protoc generates from
#             proto/ into BUILD_DIR/polyglot/python-generated, with the error
#             details read through google/rpc messages generated from the npm
#             package google-proto-files (python_client.py)
#   node      the README walkthrough through @grpc/grpc-js (node_client.js)
#   buf-curl  server reflection: list both servers' services, then CRM calls
#             with JSON bodies and a token header
#   health    grpc.health.v1.Health/Check on both servers through buf curl
set -uo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: tests/polyglot/client_test.sh REPO_ROOT BUILD_DIR python|node|buf-curl|health" >&2
  exit 2
fi
root=$1
build=$2
client=$3
state=$build/polyglot/$client-stack
python_out=$build/polyglot/python-generated
buf=$root/tools/node_modules/.bin/buf
failures=0
passes=0

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

pass() {
  echo "ok: $*"
  passes=$((passes + 1))
}

# Prints the summary line and exits 1 when any check failed.
finish() {
  echo "$passes passed, $failures failed"
  ((failures == 0))
  exit
}

# buf curl over plaintext HTTP/2, as the README walkthrough calls it.
buf_curl() {
  "$buf" curl --protocol grpc --http2-prior-knowledge --timeout 10s "$@"
}

# Checks that `output` (buf curl's JSON) has `expected` at jq path `filter`.
expect_json() {
  local output=$1 filter=$2 expected=$3 description=$4 actual
  actual=$(jq -r "$filter" <<<"$output" 2>/dev/null)
  if [[ $actual == "$expected" ]]; then
    pass "$description"
  else
    fail "$description: expected $filter to be '$expected', got '$actual' in: $output"
  fi
}

generate_python() {
  rm -rf "$python_out"
  mkdir -p "$python_out"
  if ! (cd "$root" && /usr/bin/protoc -I proto --python_out="$python_out" --grpc_out="$python_out" \
    --plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin $(cd proto && find crm -name '*.proto' | sort)); then
    echo "FAIL: protoc could not generate the Python code from proto/"
    exit 1
  fi
  # The installed protobuf's include folder comes first, so imports of the
  # well-known types resolve to the files python3-protobuf was built from.
  if ! /usr/bin/protoc -I /usr/include -I "$root/tools/node_modules/google-proto-files" \
    --python_out="$python_out" google/rpc/status.proto google/rpc/error_details.proto; then
    echo "FAIL: protoc could not generate the Python code of google/rpc from tools/node_modules/google-proto-files"
    exit 1
  fi
}

run_python() {
  timeout 120 /usr/bin/python3 "$root/tests/polyglot/python_client.py" --generated "$python_out" \
    --auth "127.0.0.1:$STACK_AUTH_PORT" --crm "127.0.0.1:$STACK_CRM_PORT" --crmctl "$root/tools/crmctl.sh"
}

run_node() {
  timeout 120 node "$root/tests/polyglot/node_client.js" --root "$root" \
    --auth "127.0.0.1:$STACK_AUTH_PORT" --crm "127.0.0.1:$STACK_CRM_PORT"
}

# Checks that `services` (buf curl --list-services output) lists each of the
# remaining arguments on a line of its own.
expect_services() {
  local server=$1 services=$2
  shift 2
  local service
  for service in "$@"; do
    if grep -qx -- "$service" <<<"$services"; then
      pass "$server server lists $service through reflection"
    else
      fail "$server server does not list $service through reflection; it lists: $services"
    fi
  done
}

run_buf_curl() {
  local auth=http://127.0.0.1:$STACK_AUTH_PORT crm=http://127.0.0.1:$STACK_CRM_PORT
  local internal=http://127.0.0.1:$STACK_AUTH_INTERNAL_PORT
  local output admin_key app_id token lead_id

  output=$(buf_curl --list-services "$auth" 2>&1)
  expect_services auth "$output" crm.auth.v1.PrivateAppService grpc.health.v1.Health
  output=$(buf_curl --list-services "$internal" 2>&1)
  expect_services "auth internal" "$output" crm.auth.v1.TokenService grpc.health.v1.Health
  output=$(buf_curl --list-services "$crm" 2>&1)
  expect_services CRM "$output" crm.data.v1.CrmService crm.data.v1.CrmStatusService grpc.health.v1.Health
  output=$(buf_curl --list-methods "$crm" 2>&1)
  if grep -qx crm.data.v1.CrmService/CreateLead <<<"$output" && grep -qx crm.data.v1.CrmService/GetLead <<<"$output"; then
    pass "CRM server lists CrmService/CreateLead and GetLead through reflection"
  else
    fail "CRM server does not list CrmService/CreateLead and GetLead; it lists: $output"
  fi

  admin_key=$("$root/tools/crmctl.sh" create-organization --display_name="Polyglot buf curl" 2>>"$state/crmctl.log" |
    awk '/^admin_key:/ {print $2}')
  if [[ $admin_key != crmadm_* ]]; then
    fail "crmctl create-organization printed no admin key"
    finish
  fi
  output=$(buf_curl -H "authorization: Bearer $admin_key" \
    -d '{"privateApp": {"displayName": "buf curl", "scopes": [{"module": "MODULE_LEAD", "action": "ACTION_CREATE"},
         {"module": "MODULE_LEAD", "action": "ACTION_READ"}]}}' \
    "$auth/crm.auth.v1.PrivateAppService/CreatePrivateApp" 2>&1)
  app_id=$(jq -r '.privateApp.id // empty' <<<"$output" 2>/dev/null)
  token=$(jq -r '.accessToken // empty' <<<"$output" 2>/dev/null)
  if [[ -z $app_id || $token != crmpat_* ]]; then
    fail "CreatePrivateApp through buf curl returned no app id and token: $(jq -c '{code, message}' <<<"$output" 2>/dev/null || echo "$output")"
    finish
  fi
  pass "CreatePrivateApp through buf curl with a JSON body and the admin key header"

  output=$(buf_curl -H "authorization: Bearer $token" \
    -d '{"lead": {"firstName": "Grace", "lastName": "Hopper", "company": "Navy"}}' \
    "$crm/crm.data.v1.CrmService/CreateLead" 2>&1)
  expect_json "$output" .lead.lastName Hopper "CreateLead through buf curl with a JSON body and the token header"
  expect_json "$output" .lead.status LEAD_STATUS_NEW "CreateLead sets the default status"
  lead_id=$(jq -r '.lead.id // empty' <<<"$output" 2>/dev/null)

  output=$(buf_curl -H "authorization: Bearer $token" -d "{\"id\": \"$lead_id\"}" \
    "$crm/crm.data.v1.CrmService/GetLead" 2>&1)
  expect_json "$output" .lead.company Navy "GetLead through buf curl returns the created lead"

  # Without the header the same call must fail, so the passes above are the
  # token's doing.
  output=$(buf_curl -d "{\"id\": \"$lead_id\"}" "$crm/crm.data.v1.CrmService/GetLead" 2>&1)
  expect_json "$output" .code unauthenticated "GetLead through buf curl without a token header"
  # buf curl prints each detail's type and its bytes in base64, which
  # protoc decodes with the google-proto-files schema (docs/clients.md).
  expect_json "$output" '.details[0].type' google.rpc.ErrorInfo "buf curl shows the ErrorInfo detail"
  local decoded
  decoded=$(jq -r '.details[0].value' <<<"$output" 2>/dev/null | base64 -d 2>/dev/null |
    /usr/bin/protoc -I /usr/include -I "$root/tools/node_modules/google-proto-files" \
      --decode=google.rpc.ErrorInfo google/rpc/error_details.proto 2>&1)
  if grep -qx 'reason: "TOKEN_MISSING"' <<<"$decoded" && grep -qx 'domain: "data.crm.example"' <<<"$decoded"; then
    pass "the ErrorInfo that buf curl prints decodes to TOKEN_MISSING in data.crm.example"
  else
    fail "the ErrorInfo that buf curl prints does not decode to TOKEN_MISSING in data.crm.example: $decoded"
  fi
}

run_health() {
  local schema=$root/tests/polyglot/health server port output service
  for server in auth crm; do
    port=$STACK_AUTH_PORT
    [[ $server == crm ]] && port=$STACK_CRM_PORT
    output=$(buf_curl --schema "$schema" -d '{}' "http://127.0.0.1:$port/grpc.health.v1.Health/Check" 2>&1)
    expect_json "$output" .status SERVING "$server server health check reports SERVING"
    # An unknown name must fail, which shows that the SERVING status above
    # comes from the server's health service.
    output=$(buf_curl --schema "$schema" -d '{"service": "no.such.Service"}' \
      "http://127.0.0.1:$port/grpc.health.v1.Health/Check" 2>&1)
    expect_json "$output" .code not_found "$server server health check of an unknown service"
  done
  for service in crm.auth.v1.PrivateAppService:$STACK_AUTH_PORT crm.auth.v1.TokenService:$STACK_AUTH_INTERNAL_PORT; do
    output=$(buf_curl --schema "$schema" -d "{\"service\": \"${service%%:*}\"}" \
      "http://127.0.0.1:${service##*:}/grpc.health.v1.Health/Check" 2>&1)
    expect_json "$output" .status SERVING "auth server health check of ${service%%:*} reports SERVING"
  done
  # NOTE: the CRM server registers no per-service status, so a check of
  # crm.data.v1.CrmService is NOT_FOUND and only its server-wide status is
  # tested.

  # With the database stopped both servers turn NOT_SERVING, and SERVING
  # again once it is back, without a restart.
  "$root/tools/mariadb.sh" stop "$STACK_STATE_DIR/mariadb" >/dev/null
  expect_health_within NOT_SERVING "while the database is stopped"
  "$root/tools/mariadb.sh" start "$STACK_STATE_DIR/mariadb" >/dev/null
  expect_health_within SERVING "after the database is back"
}

# Polls both servers' overall health until it is $1, for up to 15 s.
expect_health_within() {
  local expected=$1 when=$2 server port output status
  for server in auth crm; do
    port=$STACK_AUTH_PORT
    [[ $server == crm ]] && port=$STACK_CRM_PORT
    status=
    for _ in $(seq 1 60); do
      output=$(buf_curl --schema "$root/tests/polyglot/health" -d '{}' \
        "http://127.0.0.1:$port/grpc.health.v1.Health/Check" 2>&1)
      status=$(jq -r '.status // empty' <<<"$output" 2>/dev/null)
      [[ $status == "$expected" ]] && break
      sleep 0.25
    done
    if [[ $status != "$expected" ]]; then
      echo "FAIL: $server server health $when: expected $expected, got '${status:-$output}'"
      failures=$((failures + 1))
    fi
  done
}

case $client in
  python | node | buf-curl | health) ;;
  *)
    echo "client_test.sh: unknown client '$client'; expected python, node, buf-curl or health" >&2
    exit 2
    ;;
esac
if [[ ! -x $buf ]]; then
  echo "FAIL: $buf is missing; run tools/install-deps.sh"
  exit 1
fi

if [[ $client == python ]]; then
  generate_python
fi
rm -rf "$state"
source "$root/tests/e2e/start_stack.sh"
start_stack "$root" "$build" "$state" || exit 1

case $client in
  python | node)
    if "run_$client"; then
      pass "$client client walkthrough"
    else
      fail "$client client walkthrough (server logs: $state/auth.log, $state/crm.log)"
    fi
    ;;
  buf-curl) run_buf_curl ;;
  health) run_health ;;
esac
finish
