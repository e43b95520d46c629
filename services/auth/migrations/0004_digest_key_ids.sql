-- Key rotation: the id of the token_hmac_key that computed each lookup
-- digest (common/secrets.h defines key ids). NULL marks a digest written
-- before this column existed, under the key that was newest then. Lookups
-- try every loaded HMAC key, so the column only tells `crmctl
-- reencrypt-tokens` and the admin key check which rows still use an older
-- key. access_tokens.encryption_key_id already records the encryption key.

ALTER TABLE access_tokens
  ADD COLUMN IF NOT EXISTS digest_key_id CHAR(8) COLLATE utf8mb4_bin NULL DEFAULT NULL AFTER token_digest;

ALTER TABLE admin_keys
  ADD COLUMN IF NOT EXISTS digest_key_id CHAR(8) COLLATE utf8mb4_bin NULL DEFAULT NULL AFTER key_digest;
