-- Token lifecycle, audit log and organization policy.
--
-- access_tokens: an app's current token is its row with revoke_time and
-- overlap_end_time both NULL. A rotation with an overlap keeps the previous
-- token unrevoked and sets its overlap_end_time; that token works until
-- then, or until its own expire_time when that comes first. A later
-- rotation revokes it. last_used_time is the start of the minute of the
-- latest use that a CRM server reported, last_used_peer the client's IP
-- address.
ALTER TABLE access_tokens
  ADD COLUMN IF NOT EXISTS expire_time DATETIME(6) NULL DEFAULT NULL,
  ADD COLUMN IF NOT EXISTS overlap_end_time DATETIME(6) NULL DEFAULT NULL,
  ADD COLUMN IF NOT EXISTS last_used_time DATETIME(6) NULL DEFAULT NULL,
  ADD COLUMN IF NOT EXISTS last_used_peer VARCHAR(64) COLLATE utf8mb4_bin NOT NULL DEFAULT '';

-- token_reveal_enabled: whether GetAccessToken may reveal tokens. Tokens
-- issued while it is false are stored with an empty token_ciphertext.
ALTER TABLE organizations
  ADD COLUMN IF NOT EXISTS token_reveal_enabled BOOLEAN NOT NULL DEFAULT TRUE;

-- One row per administrative action, written in the transaction of the
-- action. action is a crm.auth.v1.AuditAction value; scope columns hold
-- scope masks (common/scopes.h) or NULL when they do not apply. app_id has
-- no foreign key, so the events of a deleted app stay. admin_key_id names
-- the admin key row, never the key.
CREATE TABLE IF NOT EXISTS audit_events (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  organization_id BIGINT UNSIGNED NOT NULL,
  app_id BIGINT UNSIGNED NULL DEFAULT NULL,
  action INT NOT NULL,
  admin_key_id BIGINT UNSIGNED NOT NULL,
  create_time DATETIME(6) NOT NULL,
  scopes_before INT UNSIGNED NULL DEFAULT NULL,
  scopes_after INT UNSIGNED NULL DEFAULT NULL,
  changed_fields VARCHAR(255) COLLATE utf8mb4_bin NOT NULL DEFAULT '',
  token_hint VARCHAR(32) COLLATE utf8mb4_bin NOT NULL DEFAULT '',
  PRIMARY KEY (id),
  KEY audit_events_organization (organization_id, id),
  KEY audit_events_app (organization_id, app_id, id),
  CONSTRAINT audit_events_organization_fk FOREIGN KEY (organization_id)
    REFERENCES organizations (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
