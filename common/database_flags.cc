#include "common/database_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, db_host, "127.0.0.1", "MySQL-protocol server host name or address");
ABSL_FLAG(int, db_port, 3306, "MySQL-protocol server TCP port");
ABSL_FLAG(std::string, db_socket, "",
          "Unix socket of the database server; when set, db_host and db_port are ignored");
ABSL_FLAG(std::string, db_user, "crm", "Database user name");
ABSL_FLAG(std::string, db_password, "",
          "Database password; prefer the CRM_DB_PASSWORD environment variable, which no process "
          "listing shows");
ABSL_FLAG(std::string, db_name, "", "Database (schema) name; each service has its own default");
ABSL_FLAG(int, db_pool_size, 16, "Maximum open database connections of this process");
ABSL_FLAG(std::string, key_file, "",
          "Path of the key file with token_encryption_key, token_hmac_key and page_token_key; "
          "see CRM_TOKEN_ENCRYPTION_KEY and related variables for the environment form");
ABSL_FLAG(std::string, log_level, "info", "Log level: trace, debug, info, warn, error or off");

namespace crm {

MysqlOptions MysqlOptionsFromFlags(const std::string& default_database) {
  MysqlOptions options;
  options.host = absl::GetFlag(FLAGS_db_host);
  options.port = absl::GetFlag(FLAGS_db_port);
  options.socket = absl::GetFlag(FLAGS_db_socket);
  options.user = absl::GetFlag(FLAGS_db_user);
  options.password = absl::GetFlag(FLAGS_db_password);
  options.database = absl::GetFlag(FLAGS_db_name).empty() ? default_database : absl::GetFlag(FLAGS_db_name);
  options.pool_size = absl::GetFlag(FLAGS_db_pool_size);
  return options;
}

}  // namespace crm
