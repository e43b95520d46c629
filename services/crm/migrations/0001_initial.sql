-- One table per CRM module. Column names equal the proto field names of the
-- module's resource message (crm/data/v1/resources.proto); the server maps
-- rows and messages through the descriptors, so a new field needs a column
-- here under the same name. Rows are keyed by organization first, so every
-- query is an index range of one organization, and a sharded deployment can
-- split tables by organization_id.
--
-- Column types by field kind: text VARCHAR/TEXT NOT NULL DEFAULT '';
-- record ids BIGINT UNSIGNED NULL; dates DATE NULL; enums INT (the enum
-- number); timestamps DATETIME(6) in UTC, NULL when unset.

CREATE TABLE IF NOT EXISTS leads (
  organization_id BIGINT UNSIGNED NOT NULL,
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  first_name VARCHAR(100) NOT NULL DEFAULT '',
  last_name VARCHAR(100) NOT NULL DEFAULT '',
  email VARCHAR(254) NOT NULL DEFAULT '',
  phone VARCHAR(32) NOT NULL DEFAULT '',
  company VARCHAR(200) NOT NULL DEFAULT '',
  title VARCHAR(100) NOT NULL DEFAULT '',
  status INT NOT NULL DEFAULT 0,
  source VARCHAR(100) NOT NULL DEFAULT '',
  create_time DATETIME(6) NOT NULL,
  update_time DATETIME(6) NOT NULL,
  PRIMARY KEY (organization_id, id),
  UNIQUE KEY leads_id (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS contacts (
  organization_id BIGINT UNSIGNED NOT NULL,
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  first_name VARCHAR(100) NOT NULL DEFAULT '',
  last_name VARCHAR(100) NOT NULL DEFAULT '',
  email VARCHAR(254) NOT NULL DEFAULT '',
  phone VARCHAR(32) NOT NULL DEFAULT '',
  title VARCHAR(100) NOT NULL DEFAULT '',
  account_id BIGINT UNSIGNED NULL,
  create_time DATETIME(6) NOT NULL,
  update_time DATETIME(6) NOT NULL,
  PRIMARY KEY (organization_id, id),
  UNIQUE KEY contacts_id (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS accounts (
  organization_id BIGINT UNSIGNED NOT NULL,
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  name VARCHAR(200) NOT NULL DEFAULT '',
  domain VARCHAR(253) NOT NULL DEFAULT '',
  industry VARCHAR(100) NOT NULL DEFAULT '',
  phone VARCHAR(32) NOT NULL DEFAULT '',
  create_time DATETIME(6) NOT NULL,
  update_time DATETIME(6) NOT NULL,
  PRIMARY KEY (organization_id, id),
  UNIQUE KEY accounts_id (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS opportunities (
  organization_id BIGINT UNSIGNED NOT NULL,
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  name VARCHAR(200) NOT NULL DEFAULT '',
  account_id BIGINT UNSIGNED NULL,
  amount_micros BIGINT NOT NULL DEFAULT 0,
  currency_code CHAR(3) NOT NULL DEFAULT '',
  stage INT NOT NULL DEFAULT 0,
  close_date DATE NULL,
  create_time DATETIME(6) NOT NULL,
  update_time DATETIME(6) NOT NULL,
  PRIMARY KEY (organization_id, id),
  UNIQUE KEY opportunities_id (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS activities (
  organization_id BIGINT UNSIGNED NOT NULL,
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  type INT NOT NULL DEFAULT 0,
  subject VARCHAR(300) NOT NULL DEFAULT '',
  due_time DATETIME(6) NULL,
  status INT NOT NULL DEFAULT 0,
  related_module INT NOT NULL DEFAULT 0,
  related_id BIGINT UNSIGNED NULL,
  create_time DATETIME(6) NOT NULL,
  update_time DATETIME(6) NOT NULL,
  PRIMARY KEY (organization_id, id),
  UNIQUE KEY activities_id (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS messages (
  organization_id BIGINT UNSIGNED NOT NULL,
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  channel INT NOT NULL DEFAULT 0,
  direction INT NOT NULL DEFAULT 0,
  sender VARCHAR(320) NOT NULL DEFAULT '',
  recipient VARCHAR(320) NOT NULL DEFAULT '',
  body MEDIUMTEXT NOT NULL,
  sent_time DATETIME(6) NULL,
  contact_id BIGINT UNSIGNED NULL,
  lead_id BIGINT UNSIGNED NULL,
  create_time DATETIME(6) NOT NULL,
  update_time DATETIME(6) NOT NULL,
  PRIMARY KEY (organization_id, id),
  UNIQUE KEY messages_id (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
