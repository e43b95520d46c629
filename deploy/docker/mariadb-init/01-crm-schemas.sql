-- Runs once, when the MariaDB container initializes an empty data volume.
-- The image's entrypoint has already created the user MARIADB_USER ('crm')
-- with MARIADB_PASSWORD; this grants it both service schemas. The servers
-- create their tables themselves (schema migrations at start-up).
CREATE DATABASE IF NOT EXISTS crm_auth CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE DATABASE IF NOT EXISTS crm_data CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
GRANT ALL PRIVILEGES ON crm_auth.* TO 'crm'@'%';
GRANT ALL PRIVILEGES ON crm_data.* TO 'crm'@'%';
