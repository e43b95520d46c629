#include "common/migrations.h"

#include <cppconn/connection.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>

#include <memory>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/logging.h"

namespace crm {
namespace {

constexpr int kLockWaitSeconds = 60;

std::vector<std::string> SplitStatements(absl::string_view sql) {
  std::vector<std::string> statements;
  std::string current;
  for (absl::string_view line : absl::StrSplit(sql, '\n')) {
    absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    if (trimmed.empty() || absl::StartsWith(trimmed, "--")) continue;
    absl::StrAppend(&current, line, "\n");
    if (absl::EndsWith(trimmed, ";")) {
      statements.push_back(std::move(current));
      current.clear();
    }
  }
  if (!absl::StripAsciiWhitespace(current).empty()) statements.push_back(std::move(current));
  return statements;
}

}  // namespace

absl::Status ApplyMigrations(MysqlPool& pool, absl::string_view lock_name,
                             absl::Span<const Migration> migrations) {
  return pool.Run("applying schema migrations", [&](sql::Connection& connection) -> absl::Status {
    std::unique_ptr<sql::Statement> statement(connection.createStatement());
    std::unique_ptr<sql::PreparedStatement> lock(connection.prepareStatement("SELECT GET_LOCK(?, ?)"));
    lock->setString(1, std::string(lock_name));
    lock->setInt(2, kLockWaitSeconds);
    std::unique_ptr<sql::ResultSet> locked(lock->executeQuery());
    if (!locked->next() || locked->getInt(1) != 1) {
      return absl::UnavailableError(
          absl::StrCat("could not take migration lock ", lock_name, " within ", kLockWaitSeconds, "s"));
    }

    statement->execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INT NOT NULL PRIMARY KEY,"
        " name VARCHAR(200) NOT NULL,"
        " applied_time DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
        ") ENGINE=InnoDB");
    std::set<int> applied;
    std::unique_ptr<sql::ResultSet> rows(statement->executeQuery("SELECT version FROM schema_migrations"));
    while (rows->next()) applied.insert(rows->getInt(1));

    for (const Migration& migration : migrations) {
      if (applied.contains(migration.version)) continue;
      spdlog::info("applying schema migration {} ({})", migration.version, migration.name);
      for (const std::string& sql : SplitStatements(migration.sql)) statement->execute(sql);
      std::unique_ptr<sql::PreparedStatement> record(
          connection.prepareStatement("INSERT INTO schema_migrations (version, name) VALUES (?, ?)"));
      record->setInt(1, migration.version);
      record->setString(2, std::string(migration.name));
      record->executeUpdate();
    }

    std::unique_ptr<sql::PreparedStatement> unlock(connection.prepareStatement("SELECT RELEASE_LOCK(?)"));
    unlock->setString(1, std::string(lock_name));
    // The result set must be read and freed: it keeps the statement's
    // native handles alive, and an unread result breaks the next query.
    std::unique_ptr<sql::ResultSet> unlocked(unlock->executeQuery());
    while (unlocked->next()) {
    }
    return absl::OkStatus();
  });
}

}  // namespace crm
