#!/usr/bin/env bash
# Writes the secrets that compose.yaml reads, with fresh random values.
#   secrets/db.env:   MARIADB_PASSWORD and CRM_DB_PASSWORD (one value)
#   secrets/keys.env: CRM_TOKEN_ENCRYPTION_KEY, CRM_TOKEN_HMAC_KEY and
#                     CRM_PAGE_TOKEN_KEY, 32 random bytes each in base64
# Files that already exist are kept: replacing keys.env would make every
# stored token unrevealable and every credential unverifiable. Back up
# keys.env separately from the database (docs/operations.md).
set -euo pipefail

secrets_dir=$(cd "$(dirname "$0")" && pwd)/secrets
mkdir -p "$secrets_dir"
umask 077

if [[ -e $secrets_dir/db.env ]]; then
  echo "make-secrets: keeping existing $secrets_dir/db.env"
else
  password=$(openssl rand -hex 24)
  printf 'MARIADB_PASSWORD=%s\nCRM_DB_PASSWORD=%s\n' "$password" "$password" >"$secrets_dir/db.env"
  echo "make-secrets: wrote $secrets_dir/db.env"
fi

if [[ -e $secrets_dir/keys.env ]]; then
  echo "make-secrets: keeping existing $secrets_dir/keys.env"
else
  {
    printf 'CRM_TOKEN_ENCRYPTION_KEY=%s\n' "$(openssl rand -base64 32)"
    printf 'CRM_TOKEN_HMAC_KEY=%s\n' "$(openssl rand -base64 32)"
    printf 'CRM_PAGE_TOKEN_KEY=%s\n' "$(openssl rand -base64 32)"
  } >"$secrets_dir/keys.env"
  echo "make-secrets: wrote $secrets_dir/keys.env"
fi
