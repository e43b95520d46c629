-- The invalidation log: one entry per change that affects what a token
-- grants (rotation, app deletion, scope edit), written in the same
-- transaction as the change. CRM servers follow it through
-- TokenService.WatchInvalidations to drop cached token checks.
--
-- invalidation_sequence has exactly one row (id 1). A change allocates its
-- sequence by incrementing last_sequence inside its transaction; the row
-- lock is held until commit, so entries commit in sequence order and a
-- reader of `sequence > N` never misses an entry that commits later.
-- Entries are gap-free: a rolled-back change also rolls back its increment.

CREATE TABLE IF NOT EXISTS invalidation_sequence (
  id TINYINT UNSIGNED NOT NULL,
  last_sequence BIGINT NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT IGNORE INTO invalidation_sequence (id, last_sequence) VALUES (1, 0);

-- reason: a crm.auth.v1.InvalidationReason value. No foreign keys, because
-- the entry of a deleted app outlives the app. The purge deletes the oldest
-- entries after the retention period, always a prefix in sequence order.
CREATE TABLE IF NOT EXISTS invalidation_log (
  sequence BIGINT NOT NULL,
  app_id BIGINT UNSIGNED NOT NULL,
  organization_id BIGINT UNSIGNED NOT NULL,
  reason INT NOT NULL,
  create_time DATETIME(6) NOT NULL,
  PRIMARY KEY (sequence),
  KEY invalidation_log_create_time (create_time)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
