-- Auth schema: organizations with their admin keys, private apps and the
-- apps' access tokens. Times are DATETIME(6) in UTC (the pool sets the
-- session time_zone to +00:00). Secrets are stored only as HMAC-SHA-256
-- digests (lookup) and AES-256-GCM ciphertexts (reveal); the keys for both
-- live outside the database.

CREATE TABLE IF NOT EXISTS organizations (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  display_name VARCHAR(200) COLLATE utf8mb4_bin NOT NULL,
  create_time DATETIME(6) NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS admin_keys (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  organization_id BIGINT UNSIGNED NOT NULL,
  key_digest BINARY(32) NOT NULL,
  key_hint VARCHAR(32) COLLATE utf8mb4_bin NOT NULL,
  create_time DATETIME(6) NOT NULL,
  revoke_time DATETIME(6) NULL DEFAULT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY admin_keys_key_digest (key_digest),
  KEY admin_keys_organization (organization_id),
  CONSTRAINT admin_keys_organization_fk FOREIGN KEY (organization_id)
    REFERENCES organizations (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- scope_bits: bit (module - 1) * 4 + (action - 1) per granted scope, as
-- common/scopes.h defines it.
CREATE TABLE IF NOT EXISTS private_apps (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  organization_id BIGINT UNSIGNED NOT NULL,
  display_name VARCHAR(100) COLLATE utf8mb4_bin NOT NULL,
  description VARCHAR(1000) COLLATE utf8mb4_bin NOT NULL DEFAULT '',
  logo MEDIUMBLOB NULL DEFAULT NULL,
  logo_mime_type VARCHAR(16) COLLATE utf8mb4_bin NOT NULL DEFAULT '',
  scope_bits INT UNSIGNED NOT NULL,
  create_time DATETIME(6) NOT NULL,
  update_time DATETIME(6) NOT NULL,
  PRIMARY KEY (id),
  KEY private_apps_organization_id (organization_id, id),
  CONSTRAINT private_apps_organization_fk FOREIGN KEY (organization_id)
    REFERENCES organizations (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- An app has exactly one row with revoke_time NULL: its current token.
-- Rotation keeps the old rows, revoked, until the app is deleted.
CREATE TABLE IF NOT EXISTS access_tokens (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  app_id BIGINT UNSIGNED NOT NULL,
  token_digest BINARY(32) NOT NULL,
  token_ciphertext VARBINARY(255) NOT NULL,
  encryption_key_id CHAR(8) COLLATE utf8mb4_bin NOT NULL,
  token_hint VARCHAR(32) COLLATE utf8mb4_bin NOT NULL,
  create_time DATETIME(6) NOT NULL,
  revoke_time DATETIME(6) NULL DEFAULT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY access_tokens_token_digest (token_digest),
  KEY access_tokens_app_revoke (app_id, revoke_time),
  CONSTRAINT access_tokens_app_fk FOREIGN KEY (app_id)
    REFERENCES private_apps (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
