-- List filters and sorting, etags, idempotent creates and lead conversion.
--
-- revision: the record's version, 1 on insert and incremented by every
-- change; the API shows it as the etag.
--
-- One index (organization_id, field, id) per field marked sortable in
-- crm/data/v1/resources.proto, so that a page sorted by that field is a
-- range scan of one organization in either direction, with id as the tie
-- breaker. Reference columns that are not sortable get an index too, so the
-- reference checks and the delete rules read only matching rows.
--
-- Each table changes in one ALTER TABLE so that MySQL 8, which has no
-- ADD COLUMN IF NOT EXISTS, applies each table's change whole or not at all.

ALTER TABLE leads
  ADD COLUMN revision BIGINT UNSIGNED NOT NULL DEFAULT 1,
  ADD COLUMN converted_account_id BIGINT UNSIGNED NULL,
  ADD COLUMN converted_contact_id BIGINT UNSIGNED NULL,
  ADD COLUMN converted_opportunity_id BIGINT UNSIGNED NULL,
  ADD INDEX leads_last_name (organization_id, last_name, id),
  ADD INDEX leads_email (organization_id, email, id),
  ADD INDEX leads_company (organization_id, company, id),
  ADD INDEX leads_status (organization_id, status, id),
  ADD INDEX leads_create_time (organization_id, create_time, id),
  ADD INDEX leads_update_time (organization_id, update_time, id),
  ADD INDEX leads_converted_account_id (organization_id, converted_account_id),
  ADD INDEX leads_converted_contact_id (organization_id, converted_contact_id),
  ADD INDEX leads_converted_opportunity_id (organization_id, converted_opportunity_id);

ALTER TABLE contacts
  ADD COLUMN revision BIGINT UNSIGNED NOT NULL DEFAULT 1,
  ADD INDEX contacts_last_name (organization_id, last_name, id),
  ADD INDEX contacts_email (organization_id, email, id),
  ADD INDEX contacts_account_id (organization_id, account_id, id),
  ADD INDEX contacts_create_time (organization_id, create_time, id),
  ADD INDEX contacts_update_time (organization_id, update_time, id);

ALTER TABLE accounts
  ADD COLUMN revision BIGINT UNSIGNED NOT NULL DEFAULT 1,
  ADD INDEX accounts_name (organization_id, name, id),
  ADD INDEX accounts_domain (organization_id, domain, id),
  ADD INDEX accounts_create_time (organization_id, create_time, id),
  ADD INDEX accounts_update_time (organization_id, update_time, id);

ALTER TABLE opportunities
  ADD COLUMN revision BIGINT UNSIGNED NOT NULL DEFAULT 1,
  ADD INDEX opportunities_name (organization_id, name, id),
  ADD INDEX opportunities_account_id (organization_id, account_id, id),
  ADD INDEX opportunities_amount_micros (organization_id, amount_micros, id),
  ADD INDEX opportunities_stage (organization_id, stage, id),
  ADD INDEX opportunities_close_date (organization_id, close_date, id),
  ADD INDEX opportunities_create_time (organization_id, create_time, id),
  ADD INDEX opportunities_update_time (organization_id, update_time, id);

ALTER TABLE activities
  ADD COLUMN revision BIGINT UNSIGNED NOT NULL DEFAULT 1,
  ADD INDEX activities_due_time (organization_id, due_time, id),
  ADD INDEX activities_status (organization_id, status, id),
  ADD INDEX activities_create_time (organization_id, create_time, id),
  ADD INDEX activities_update_time (organization_id, update_time, id),
  ADD INDEX activities_related (organization_id, related_module, related_id);

ALTER TABLE messages
  ADD COLUMN revision BIGINT UNSIGNED NOT NULL DEFAULT 1,
  ADD INDEX messages_sent_time (organization_id, sent_time, id),
  ADD INDEX messages_create_time (organization_id, create_time, id),
  ADD INDEX messages_update_time (organization_id, update_time, id),
  ADD INDEX messages_contact_id (organization_id, contact_id),
  ADD INDEX messages_lead_id (organization_id, lead_id);

-- Create calls with a request_id: the first call's record, so that a retry
-- returns it instead of creating another. record_id is 0 only while the
-- creating transaction is open.
CREATE TABLE IF NOT EXISTS create_requests (
  organization_id BIGINT UNSIGNED NOT NULL,
  module INT NOT NULL,
  request_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  record_id BIGINT UNSIGNED NOT NULL,
  create_time DATETIME(6) NOT NULL,
  PRIMARY KEY (organization_id, module, request_id)
) ENGINE=InnoDB;
