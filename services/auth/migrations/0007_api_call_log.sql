-- The API call log: one row per CrmService call that a CRM server answered
-- for an app's token, reported in batches through
-- TokenService.ReportApiCalls and listed by PrivateAppService.ListApiCalls.
--
-- call_time is when the CRM server received the call (its clock), code a
-- google.rpc.Code value, latency_micros the time until the status was
-- sent. No foreign keys: rows are written in bulk at a high rate, a
-- deleted app's rows are never listed (ListApiCalls checks the app first),
-- and every row is purged after the retention period
-- (--api_call_retention_days) by call_time, oldest first.
--
-- api_calls_app_time serves ListApiCalls: one organization's app, newest
-- first, with keyset paging on (call_time, id); InnoDB appends the primary
-- key to every secondary index, so the index covers the tie-break on id.
CREATE TABLE IF NOT EXISTS api_calls (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  organization_id BIGINT UNSIGNED NOT NULL,
  app_id BIGINT UNSIGNED NOT NULL,
  call_time DATETIME(6) NOT NULL,
  method VARCHAR(128) COLLATE utf8mb4_bin NOT NULL,
  code TINYINT UNSIGNED NOT NULL,
  latency_micros BIGINT UNSIGNED NOT NULL,
  peer_address VARCHAR(64) COLLATE utf8mb4_bin NOT NULL DEFAULT '',
  PRIMARY KEY (id),
  KEY api_calls_app_time (organization_id, app_id, call_time),
  KEY api_calls_call_time (call_time)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
