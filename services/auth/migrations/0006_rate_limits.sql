-- Rate limits (docs/architecture.md, "Rate limits").
--
-- burst_limit_per_10s and daily_limit: the organization's policy; 0 means
-- the auth server's default (--default_burst_limit_per_10s,
-- --default_daily_limit).
ALTER TABLE organizations
  ADD COLUMN IF NOT EXISTS burst_limit_per_10s INT NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS daily_limit BIGINT NOT NULL DEFAULT 0;

-- Calls granted to CRM servers per app and 10-second window. window_start
-- is in seconds since the Unix epoch, a multiple of 10. Rows stay two days,
-- so today's calls per app are the sum of today's windows.
CREATE TABLE IF NOT EXISTS quota_windows (
  app_id BIGINT UNSIGNED NOT NULL,
  window_start BIGINT NOT NULL,
  organization_id BIGINT UNSIGNED NOT NULL,
  used_calls BIGINT NOT NULL,
  PRIMARY KEY (app_id, window_start),
  KEY quota_windows_window_start (window_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Calls granted to CRM servers per organization and UTC day. day_start is
-- in seconds since the Unix epoch, a multiple of 86,400.
CREATE TABLE IF NOT EXISTS quota_days (
  organization_id BIGINT UNSIGNED NOT NULL,
  day_start BIGINT NOT NULL,
  used_calls BIGINT NOT NULL,
  PRIMARY KEY (organization_id, day_start),
  KEY quota_days_day_start (day_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
