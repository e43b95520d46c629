// MysqlPool against the fixture's MariaDB: cached prepared statements,
// transactions and the replacement of a lost connection.
#include "common/mysql_pool.h"

#include <cppconn/connection.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace crm {
namespace {

MysqlOptions FixtureOptions(const std::string& database, int pool_size) {
  MysqlOptions options;
  const char* socket = std::getenv("CRM_TEST_DB_SOCKET");
  options.socket = socket == nullptr ? "" : socket;
  options.user = "root";
  options.database = database;
  options.pool_size = pool_size;
  return options;
}

int64_t QueryInt(sql::Connection& connection, const std::string& sql) {
  std::unique_ptr<sql::Statement> statement(connection.createStatement());
  std::unique_ptr<sql::ResultSet> row(statement->executeQuery(sql));
  if (!row->next()) return -1;
  return row->getInt64(row->getMetaData()->getColumnCount());
}

// Statements this session prepared and closed since it connected.
struct StatementCounts {
  int64_t prepared = 0;
  int64_t closed = 0;
};

StatementCounts SessionCounts(sql::Connection& connection) {
  return {QueryInt(connection, "SHOW SESSION STATUS LIKE 'Com_stmt_prepare'"),
          QueryInt(connection, "SHOW SESSION STATUS LIKE 'Com_stmt_close'")};
}

class MysqlPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(std::getenv("CRM_TEST_DB_SOCKET"), nullptr) << "run through ctest, which starts MariaDB";
    static std::atomic<int> counter{0};
    database_ = absl::StrCat("test_pool_", getpid(), "_", counter++);
    absl::StatusOr<std::unique_ptr<MysqlPool>> admin = MysqlPool::Create(FixtureOptions("", 2));
    ASSERT_TRUE(admin.ok()) << admin.status();
    admin_ = *std::move(admin);
    ASSERT_TRUE(Execute(*admin_, absl::StrCat("CREATE DATABASE ", database_)).ok());
    ASSERT_TRUE(Execute(*admin_, absl::StrCat("CREATE TABLE ", database_,
                                              ".items (id INT PRIMARY KEY, label VARCHAR(50) NOT NULL)"))
                    .ok());
    // One connection, so every Run below leases the same one.
    absl::StatusOr<std::unique_ptr<MysqlPool>> pool = MysqlPool::Create(FixtureOptions(database_, 1));
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = *std::move(pool);
  }

  void TearDown() override {
    pool_.reset();
    if (admin_ != nullptr) {
      EXPECT_TRUE(Execute(*admin_, absl::StrCat("DROP DATABASE ", database_)).ok());
    }
  }

  static absl::Status Execute(MysqlPool& pool, const std::string& sql) {
    return pool.Run("test", [&](sql::Connection& connection) {
      std::unique_ptr<sql::Statement> statement(connection.createStatement());
      statement->execute(sql);
      return absl::OkStatus();
    });
  }

  int64_t CountItems() {
    int64_t count = -1;
    EXPECT_TRUE(pool_
                    ->Run("count",
                          [&](sql::Connection& connection) {
                            count = QueryInt(connection, "SELECT COUNT(*) FROM items");
                            return absl::OkStatus();
                          })
                    .ok());
    return count;
  }

  std::string database_;
  std::unique_ptr<MysqlPool> admin_;
  std::unique_ptr<MysqlPool> pool_;
};

TEST_F(MysqlPoolTest, PreparesAStatementOncePerConnection) {
  const std::string sql = "SELECT ? + 1";
  sql::PreparedStatement* first = nullptr;
  StatementCounts before;
  for (int value : {1, 2, 3}) {
    ASSERT_TRUE(pool_
                    ->Run("select",
                          [&](sql::Connection& connection) {
                            if (first == nullptr) before = SessionCounts(connection);
                            sql::PreparedStatement& statement = PrepareCached(connection, sql);
                            if (first == nullptr) first = &statement;
                            EXPECT_EQ(&statement, first);
                            statement.setInt(1, value);
                            std::unique_ptr<sql::ResultSet> row(statement.executeQuery());
                            EXPECT_TRUE(row->next());
                            EXPECT_EQ(row->getInt(1), value + 1);
                            return absl::OkStatus();
                          })
                    .ok());
  }
  ASSERT_TRUE(pool_
                  ->Run("counts",
                        [&](sql::Connection& connection) {
                          StatementCounts after = SessionCounts(connection);
                          EXPECT_EQ(after.prepared - before.prepared, 1);
                          EXPECT_EQ(after.closed - before.closed, 0);
                          return absl::OkStatus();
                        })
                  .ok());
}

TEST_F(MysqlPoolTest, ClosesOverflowStatementsAfterBody) {
  const int extra = 3;
  StatementCounts before;
  ASSERT_TRUE(pool_
                  ->Run("many statements",
                        [&](sql::Connection& connection) {
                          before = SessionCounts(connection);
                          std::vector<sql::PreparedStatement*> statements;
                          for (size_t i = 0; i < kMaxCachedStatements + extra; ++i) {
                            statements.push_back(&PrepareCached(connection, absl::StrCat("SELECT ? + ", i)));
                          }
                          // Every statement stays usable until the body returns.
                          for (size_t i = 0; i < statements.size(); ++i) {
                            statements[i]->setInt(1, 1);
                            std::unique_ptr<sql::ResultSet> row(statements[i]->executeQuery());
                            EXPECT_TRUE(row->next());
                            EXPECT_EQ(row->getInt64(1), static_cast<int64_t>(i) + 1);
                          }
                          return absl::OkStatus();
                        })
                  .ok());
  ASSERT_TRUE(pool_
                  ->Run("counts",
                        [&](sql::Connection& connection) {
                          StatementCounts after = SessionCounts(connection);
                          EXPECT_EQ(after.prepared - before.prepared, static_cast<int64_t>(kMaxCachedStatements) + extra);
                          EXPECT_EQ(after.closed - before.closed, extra);
                          return absl::OkStatus();
                        })
                  .ok());
}

TEST_F(MysqlPoolTest, TransactionsCommitOrRollBack) {
  auto insert = [&](int id, bool fail) {
    return pool_->RunInTransaction("insert", [&](sql::Connection& connection) {
      sql::PreparedStatement& statement = PrepareCached(connection, "INSERT INTO items (id, label) VALUES (?, ?)");
      statement.setInt(1, id);
      statement.setString(2, "item");
      statement.executeUpdate();
      return fail ? absl::FailedPreconditionError("the body failed") : absl::OkStatus();
    });
  };
  EXPECT_TRUE(absl::IsFailedPrecondition(insert(1, true)));
  EXPECT_EQ(CountItems(), 0);
  EXPECT_TRUE(insert(1, false).ok());
  EXPECT_EQ(CountItems(), 1);
  // A duplicate key raised inside the transaction rolls it back too.
  EXPECT_TRUE(absl::IsAlreadyExists(pool_->RunInTransaction("two inserts", [&](sql::Connection& connection) {
    sql::PreparedStatement& statement = PrepareCached(connection, "INSERT INTO items (id, label) VALUES (?, ?)");
    statement.setInt(1, 2);
    statement.setString(2, "item");
    statement.executeUpdate();
    statement.setInt(1, 1);
    statement.executeUpdate();
    return absl::OkStatus();
  })));
  EXPECT_EQ(CountItems(), 1);
  // The connection is back in autocommit mode.
  ASSERT_TRUE(pool_
                  ->Run("autocommit",
                        [&](sql::Connection& connection) {
                          EXPECT_EQ(QueryInt(connection, "SELECT @@autocommit"), 1);
                          EXPECT_EQ(QueryInt(connection, "SELECT @@in_transaction"), 0);
                          return absl::OkStatus();
                        })
                  .ok());
}

TEST_F(MysqlPoolTest, ReplacesKilledConnection) {
  int64_t first_id = -1;
  auto select = [&](int64_t* connection_id) {
    return pool_->Run("select", [&](sql::Connection& connection) {
      sql::PreparedStatement& statement = PrepareCached(connection, "SELECT CONNECTION_ID()");
      std::unique_ptr<sql::ResultSet> row(statement.executeQuery());
      if (!row->next()) return absl::InternalError("no row");
      *connection_id = row->getInt64(1);
      return absl::OkStatus();
    });
  };
  ASSERT_TRUE(select(&first_id).ok());
  ASSERT_TRUE(Execute(*admin_, absl::StrCat("KILL CONNECTION ", first_id)).ok());

  int64_t id = -1;
  absl::Status lost = select(&id);
  EXPECT_TRUE(absl::IsUnavailable(lost)) << lost;
  absl::Status status = select(&id);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_NE(id, first_id);
}

TEST(MysqlPoolDeathTest, PrepareCachedOutsideABodyAborts) {
  MysqlOptions options = FixtureOptions("", 1);
  absl::StatusOr<std::unique_ptr<MysqlPool>> pool = MysqlPool::Create(options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  sql::Connection* leaked = nullptr;
  ASSERT_TRUE((*pool)
                  ->Run("lease",
                        [&](sql::Connection& connection) {
                          leaked = &connection;
                          return absl::OkStatus();
                        })
                  .ok());
  EXPECT_DEATH(PrepareCached(*leaked, "SELECT 1"), "outside a MysqlPool body");
}

}  // namespace
}  // namespace crm
