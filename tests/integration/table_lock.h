// Helpers for tests that need a database that is up but does not respond:
// TableLock holds `LOCK TABLES <table> WRITE` on a session of its own, so
// every other session's statement on that table waits until it is released.
#ifndef CRM_TESTS_INTEGRATION_TABLE_LOCK_H_
#define CRM_TESTS_INTEGRATION_TABLE_LOCK_H_

#include <cppconn/connection.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/mysql_pool.h"
#include "gtest/gtest.h"

namespace crm::testing {

class TableLock {
 public:
  // Locks `table` of the database that `options` names. Fails the test when
  // the lock cannot be taken.
  TableLock(MysqlOptions options, const std::string& table) {
    options.pool_size = 1;  // So that Release() runs on the locking session.
    absl::StatusOr<std::unique_ptr<MysqlPool>> pool = MysqlPool::Create(options);
    EXPECT_TRUE(pool.ok()) << pool.status();
    if (!pool.ok()) return;
    pool_ = *std::move(pool);
    EXPECT_TRUE(Execute(absl::StrCat("LOCK TABLES ", table, " WRITE")).ok());
  }
  ~TableLock() { Release(); }

  void Release() {
    if (pool_ == nullptr) return;
    EXPECT_TRUE(Execute("UNLOCK TABLES").ok());
    pool_.reset();
  }

 private:
  absl::Status Execute(const std::string& sql) {
    return pool_->Run("test table lock", [&](sql::Connection& connection) {
      std::unique_ptr<sql::Statement> statement(connection.createStatement());
      statement->execute(sql);
      return absl::OkStatus();
    });
  }

  std::unique_ptr<MysqlPool> pool_;
};

// Returns how many sessions of `database` wait for a table lock, or -1 when
// the process list cannot be read.
inline int SessionsWaitingForTableLock(MysqlPool& pool, const std::string& database) {
  int count = -1;
  absl::Status status = pool.Run("counting waiting sessions", [&](sql::Connection& connection) {
    std::unique_ptr<sql::Statement> statement(connection.createStatement());
    std::unique_ptr<sql::ResultSet> result(statement->executeQuery(
        absl::StrCat("SELECT COUNT(*) FROM information_schema.processlist WHERE db = '", database,
                     "' AND state = 'Waiting for table metadata lock'")));
    if (result->next()) count = result->getInt(1);
    return absl::OkStatus();
  });
  return status.ok() ? count : -1;
}

// Returns the number of rows in `table`, or -1 when it cannot be read.
inline int64_t CountRows(MysqlPool& pool, const std::string& table) {
  int64_t count = -1;
  absl::Status status = pool.Run("counting rows", [&](sql::Connection& connection) {
    std::unique_ptr<sql::Statement> statement(connection.createStatement());
    std::unique_ptr<sql::ResultSet> result(statement->executeQuery(absl::StrCat("SELECT COUNT(*) FROM ", table)));
    if (result->next()) count = result->getInt64(1);
    return absl::OkStatus();
  });
  return status.ok() ? count : -1;
}

}  // namespace crm::testing

#endif  // CRM_TESTS_INTEGRATION_TABLE_LOCK_H_
