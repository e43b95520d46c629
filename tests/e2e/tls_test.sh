#!/usr/bin/env bash
# Transport security against the real binaries: both servers on loopback
# with TLS, and mutual TLS on the auth server's internal TokenService port,
# using a throwaway CA that tests/e2e/make_test_certs.sh writes.
#
#   tests/e2e/tls_test.sh REPO_ROOT BUILD_DIR
#
# Checks that a CRM call is authorized through the mutual TLS channel. The
# internal port must reject a client without a certificate, with a
# certificate from another CA and in plaintext. The public ports must serve
# TLS and reject plaintext. Each server must exit at start-up in plaintext
# on a non-loopback address.
set -uo pipefail

root=$1
build=$2
state=$build/e2e-tls
rm -rf "$state"
mkdir -p "$state"
certs=$state/certs
"$root/tests/e2e/make_test_certs.sh" "$certs" || { echo "FAIL: cannot create test certificates"; exit 1; }

failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# Plaintext on a non-loopback address is rejected before anything listens.
# 192.0.2.1 is a documentation address (RFC 5737), so nothing is bound even
# if the check were missing, and the message distinguishes the two cases.
rejection=$("$build/services/auth/auth_server" --listen_host=192.0.2.1 --port=0 --internal_port=0 2>&1)
[[ $rejection == *"plaintext on a non-loopback address"* ]] ||
  fail "auth_server did not reject plaintext on 192.0.2.1: $rejection"
rejection=$("$build/services/auth/auth_server" --listen_host=192.0.2.1 --port=0 --internal_port=0 \
  --tls_cert_file="$certs/server.pem" --tls_key_file="$certs/server.key" 2>&1)
[[ $rejection == *"internal port without --tls_client_ca_file"* ]] ||
  fail "auth_server did not reject an internal port without client certificates on 192.0.2.1: $rejection"
rejection=$("$build/services/crm/crm_server" --listen_host=192.0.2.1 --port=0 2>&1)
[[ $rejection == *"plaintext on a non-loopback address"* ]] ||
  fail "crm_server did not reject plaintext on 192.0.2.1: $rejection"
rejection=$("$build/services/crm/crm_server" --port=0 --auth_target=dns:///auth.example:50053 2>&1)
[[ $rejection == *"channel to --auth_target"* ]] ||
  fail "crm_server did not reject a plaintext channel to a remote auth server: $rejection"

# Both servers read these through their CRM_<FLAG> fallback: the same server
# certificate on every listener, client certificates required on the
# internal port, and the CRM server's client certificate for it.
export CRM_TLS_CERT_FILE=$certs/server.pem CRM_TLS_KEY_FILE=$certs/server.key
export CRM_TLS_CLIENT_CA_FILE=$certs/ca.pem
export CRM_AUTH_TLS_CA_FILE=$certs/ca.pem CRM_AUTH_TLS_CERT_FILE=$certs/client.pem
export CRM_AUTH_TLS_KEY_FILE=$certs/client.key

source "$root/tests/e2e/start_stack.sh"
start_stack "$root" "$build" "$state" || exit 1
auth=127.0.0.1:$STACK_AUTH_PORT
internal=127.0.0.1:$STACK_AUTH_INTERNAL_PORT
crm=127.0.0.1:$STACK_CRM_PORT

buf=$root/tools/node_modules/.bin/buf
# call [buf curl flags...] URL: prints the reply or the error, and returns
# buf's exit status.
call() { "$buf" curl --protocol grpc --connect-timeout 5 "$@" 2>&1; }
tls_call() { call --cacert "$certs/ca.pem" "$@"; }

grep -q "mutual TLS" "$state/auth.log" || fail "auth.log does not report the internal port as mutual TLS"
grep -q "over mutual TLS" "$state/crm.log" || fail "crm.log does not report a mutual TLS channel to the auth server"

admin_key=$(cd "$root" && tools/crmctl.sh create-organization --display_name=Tls | awk '/^admin_key:/ {print $2}')
[[ $admin_key == crmadm_* ]] || fail "crmctl printed no admin key"

app=$(tls_call -H "authorization: Bearer $admin_key" \
  -d '{"privateApp": {"displayName": "TLS", "scopes": [{"module": "MODULE_LEAD", "action": "ACTION_CREATE"}]}}' \
  "https://$auth/crm.auth.v1.PrivateAppService/CreatePrivateApp")
app_id=$(jq -r .privateApp.id <<<"$app" 2>/dev/null)
token=$(jq -r .accessToken <<<"$app" 2>/dev/null)
[[ $token == crmpat_* ]] || fail "CreatePrivateApp over TLS did not return a token: $app"

# The CRM server checks the new token with the auth server over mutual TLS.
lead=$(tls_call -H "authorization: Bearer $token" -d '{"lead": {"lastName": "Lovelace"}}' \
  "https://$crm/crm.data.v1.CrmService/CreateLead")
[[ $(jq -r .lead.lastName <<<"$lead" 2>/dev/null) == Lovelace ]] ||
  fail "CreateLead over TLS, authorized through the mutual TLS channel, failed: $lead"

# Positive control: the CRM server's client certificate is accepted.
reply=$(call --cacert "$certs/ca.pem" --cert "$certs/client.pem" --key "$certs/client.key" \
  -d "{\"token\": \"$token\"}" "https://$internal/crm.auth.v1.TokenService/CheckToken")
[[ $(jq -r .appId <<<"$reply" 2>/dev/null) == "$app_id" ]] ||
  fail "CheckToken with the CRM client certificate failed: $reply"

expect_rejected() {
  local what=$1 reply
  shift
  if reply=$(call "$@" -d "{\"token\": \"$token\"}" 2>&1); then
    fail "$what: the call succeeded: $reply"
  elif [[ $reply == *appId* ]]; then
    fail "$what: the reply contains claims: $reply"
  fi
}
expect_rejected "internal port without a client certificate" --cacert "$certs/ca.pem" \
  "https://$internal/crm.auth.v1.TokenService/CheckToken"
expect_rejected "internal port with a client certificate from another CA" --cacert "$certs/ca.pem" \
  --cert "$certs/rogue-client.pem" --key "$certs/rogue-client.key" \
  "https://$internal/crm.auth.v1.TokenService/CheckToken"
expect_rejected "internal port in plaintext" --http2-prior-knowledge \
  "http://$internal/crm.auth.v1.TokenService/CheckToken"
expect_rejected "public auth port in plaintext" --http2-prior-knowledge -H "authorization: Bearer $admin_key" \
  "http://$auth/crm.auth.v1.PrivateAppService/ListPrivateApps"
expect_rejected "CRM port in plaintext" --http2-prior-knowledge -H "authorization: Bearer $token" \
  "http://$crm/crm.data.v1.CrmService/ListLeads"
expect_rejected "CRM port with an unknown CA" -H "authorization: Bearer $token" \
  "https://$crm/crm.data.v1.CrmService/ListLeads"

# Reflection works over TLS, as docs/clients.md shows.
services=$(tls_call --list-services "https://$crm")
[[ $services == *crm.data.v1.CrmService* ]] || fail "buf curl --list-services over TLS failed: $services"

# And the public ports serve TLS to a client that trusts the CA.
reply=$(tls_call -H "authorization: Bearer $admin_key" -d '{}' \
  "https://$auth/crm.auth.v1.PrivateAppService/ListPrivateApps")
[[ $(jq -r '.privateApps | length' <<<"$reply" 2>/dev/null) == 1 ]] ||
  fail "ListPrivateApps over TLS failed: $reply"

if ((failures > 0)); then
  echo "$failures check(s) failed; logs in $state"
  exit 1
fi
echo "tls: mutual TLS on the internal port and TLS on the public ports work as expected"
