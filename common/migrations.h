// Versioned schema migrations applied at start-up. Each migration runs once
// per database, recorded in the schema_migrations table; a named lock makes
// concurrent start-ups of several instances apply each version once.
#ifndef CRM_COMMON_MIGRATIONS_H_
#define CRM_COMMON_MIGRATIONS_H_

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/mysql_pool.h"

namespace crm {

struct Migration {
  int version;
  absl::string_view name;
  // Statements separated by a semicolon at the end of a line.
  absl::string_view sql;
};

// Applies the migrations that `pool`'s database has not applied yet, in
// version order.
absl::Status ApplyMigrations(MysqlPool& pool, absl::string_view lock_name,
                             absl::Span<const Migration> migrations);

}  // namespace crm

#endif  // CRM_COMMON_MIGRATIONS_H_
