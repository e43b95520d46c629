#!/usr/bin/env bash
# Writes a throwaway certificate authority and certificates signed by it into
# DIR, for tests only:
#
#   tests/e2e/make_test_certs.sh DIR
#
#   ca.pem                          the test CA
#   server.pem, server.key          server certificate for localhost and
#                                   127.0.0.1 (both servers' listeners)
#   client.pem, client.key          client certificate of a CRM server
#   rogue-ca.pem                    a second, unrelated CA
#   rogue-client.pem, rogue-client.key  a client certificate from the rogue CA
#
# Keys are P-256 and certificates are valid for one day.
set -euo pipefail

dir=${1:?usage: make_test_certs.sh DIR}
mkdir -p "$dir"
cd "$dir"

new_ca() {
  local name=$1
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj "/CN=$name" -keyout "$name.key" -out "$name.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# new_leaf NAME CA USAGE SUBJECT_ALT_NAMES
new_leaf() {
  local name=$1 ca=$2 usage=$3 names=$4
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
    -keyout "$name.key" -out "$name.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
    "$usage" "$names" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA "$ca.pem" -CAkey "$ca.key" -CAcreateserial -days 1 \
    -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

new_ca ca
new_ca rogue-ca
new_leaf server ca serverAuth "DNS:localhost,IP:127.0.0.1"
new_leaf client ca clientAuth "DNS:crm-server"
new_leaf rogue-client rogue-ca clientAuth "DNS:crm-server"
chmod 600 ./*.key
