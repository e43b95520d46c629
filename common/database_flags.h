// Command-line flags for the database connection, shared by both servers
// and the operator CLI. Like every flag, each can also be set through the
// environment as CRM_<FLAG NAME IN UPPER CASE>, e.g. CRM_DB_PASSWORD.
#ifndef CRM_COMMON_DATABASE_FLAGS_H_
#define CRM_COMMON_DATABASE_FLAGS_H_

#include <string>

#include "absl/flags/declare.h"
#include "common/mysql_pool.h"

ABSL_DECLARE_FLAG(std::string, db_host);
ABSL_DECLARE_FLAG(int, db_port);
ABSL_DECLARE_FLAG(std::string, db_socket);
ABSL_DECLARE_FLAG(std::string, db_user);
ABSL_DECLARE_FLAG(std::string, db_password);
ABSL_DECLARE_FLAG(std::string, db_name);
ABSL_DECLARE_FLAG(int, db_pool_size);
ABSL_DECLARE_FLAG(std::string, key_file);
ABSL_DECLARE_FLAG(std::string, log_level);

namespace crm {

// Reads the db_* flags. `default_database` applies when --db_name is empty.
MysqlOptions MysqlOptionsFromFlags(const std::string& default_database);

}  // namespace crm

#endif  // CRM_COMMON_DATABASE_FLAGS_H_
