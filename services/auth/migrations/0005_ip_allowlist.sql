-- Per-app IP allowlist. ip_allowlist holds the app's CIDR ranges in
-- canonical form ("203.0.113.0/24,2001:db8::/32"), joined by commas; empty
-- means every address. At most 50 ranges of at most 49 characters each, so
-- 2,500 ASCII characters hold the longest list with its commas.
ALTER TABLE private_apps
  ADD COLUMN IF NOT EXISTS ip_allowlist VARCHAR(2500) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '';

-- The allowlist before and after an action, in the same form; NULL when
-- the action does not concern it.
ALTER TABLE audit_events
  ADD COLUMN IF NOT EXISTS ip_allowlist_before VARCHAR(2500) CHARACTER SET ascii COLLATE ascii_bin NULL DEFAULT NULL,
  ADD COLUMN IF NOT EXISTS ip_allowlist_after VARCHAR(2500) CHARACTER SET ascii COLLATE ascii_bin NULL DEFAULT NULL;
