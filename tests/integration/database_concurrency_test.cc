// Tests of our concurrent code that needs the database: the MySQL pool
// leased from many threads, and the invalidation tailer read by many
// threads while entries are appended and purged. They run against the
// ctest fixture's MariaDB (CRM_TEST_DB_SOCKET), check results that must
// hold whatever the interleaving, and are the database tests the tsan
// preset runs under ThreadSanitizer.
#include <cppconn/connection.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/migrations.h"
#include "common/mysql_pool.h"
#include "gtest/gtest.h"
#include "services/auth/auth_store.h"
#include "services/auth/invalidation_tailer.h"
#include "services/auth/migrations.h"

namespace crm {
namespace {

MysqlOptions DatabaseOptions(const std::string& database, int pool_size) {
  MysqlOptions options;
  const char* socket = std::getenv("CRM_TEST_DB_SOCKET");
  options.socket = socket == nullptr ? "" : socket;
  options.user = "root";
  options.database = database;
  options.pool_size = pool_size;
  return options;
}

absl::Status Execute(MysqlPool& pool, const std::string& sql) {
  return pool.Run("test setup", [&](sql::Connection& connection) {
    std::unique_ptr<sql::Statement> statement(connection.createStatement());
    statement->execute(sql);
    return absl::OkStatus();
  });
}

// A database of its own for one test, dropped at the end.
class ScratchDatabase {
 public:
  ScratchDatabase() {
    static std::atomic<int> counter{0};
    name_ = absl::StrCat("test_concurrency_", getpid(), "_", counter++);
    absl::StatusOr<std::unique_ptr<MysqlPool>> root = MysqlPool::Create(DatabaseOptions("", 1));
    if (!root.ok()) {
      ADD_FAILURE() << "cannot reach the test MariaDB (run through ctest): " << root.status();
      return;
    }
    root_ = *std::move(root);
    absl::Status created = Execute(*root_, absl::StrCat("CREATE DATABASE ", name_));
    if (!created.ok()) ADD_FAILURE() << created;
  }
  ~ScratchDatabase() {
    if (root_ != nullptr) Execute(*root_, absl::StrCat("DROP DATABASE IF EXISTS ", name_)).IgnoreError();
  }

  std::unique_ptr<MysqlPool> Pool(int pool_size) {
    absl::StatusOr<std::unique_ptr<MysqlPool>> pool = MysqlPool::Create(DatabaseOptions(name_, pool_size));
    EXPECT_TRUE(pool.ok()) << pool.status();
    return pool.ok() ? *std::move(pool) : nullptr;
  }

 private:
  std::string name_;
  std::unique_ptr<MysqlPool> root_;
};

class Gate {
 public:
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    opened_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    opened_.wait(lock, [this] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable opened_;
  bool open_ = false;
};

TEST(MysqlPoolConcurrency, TransactionsFromManyThreadsAllCommit) {
  constexpr int kPoolSize = 3;
  constexpr int kThreads = 6;
  constexpr int kIncrementsEach = 25;
  ScratchDatabase database;
  std::unique_ptr<MysqlPool> pool = database.Pool(kPoolSize);
  ASSERT_NE(nullptr, pool);
  ASSERT_TRUE(Execute(*pool, "CREATE TABLE counter (id INT PRIMARY KEY, value INT NOT NULL)").ok());
  ASSERT_TRUE(Execute(*pool, "INSERT INTO counter VALUES (1, 0)").ok());

  std::atomic<int> leased{0};
  std::atomic<int> max_leased{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrementsEach; ++i) {
        absl::Status status = pool->RunInTransaction("increment", [&](sql::Connection& connection) {
          int now = leased.fetch_add(1) + 1;
          int seen = max_leased.load();
          while (now > seen && !max_leased.compare_exchange_weak(seen, now)) {
          }
          std::unique_ptr<sql::Statement> statement(connection.createStatement());
          std::unique_ptr<sql::ResultSet> row(statement->executeQuery("SELECT value FROM counter WHERE id = 1 FOR UPDATE"));
          row->next();
          int value = row->getInt(1);
          row.reset();
          std::unique_ptr<sql::PreparedStatement> update(
              connection.prepareStatement("UPDATE counter SET value = ? WHERE id = 1"));
          update->setInt(1, value + 1);
          update->executeUpdate();
          leased.fetch_sub(1);
          return absl::OkStatus();
        });
        if (!status.ok()) failures.fetch_add(1);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(0, failures.load());
  EXPECT_LE(max_leased.load(), kPoolSize) << "more connections leased than the pool holds";
  int value = -1;
  ASSERT_TRUE(pool->Run("read", [&](sql::Connection& connection) {
                    std::unique_ptr<sql::Statement> statement(connection.createStatement());
                    std::unique_ptr<sql::ResultSet> row(statement->executeQuery("SELECT value FROM counter"));
                    if (row->next()) value = row->getInt(1);
                    return absl::OkStatus();
                  }).ok());
  EXPECT_EQ(kThreads * kIncrementsEach, value);
}

TEST(MysqlPoolConcurrency, BusyPoolFailsUnavailableThenRecovers) {
  absl::StatusOr<std::unique_ptr<MysqlPool>> created = [&] {
    MysqlOptions options = DatabaseOptions("", 1);
    options.acquire_timeout = absl::Milliseconds(100);
    return MysqlPool::Create(options);
  }();
  ASSERT_TRUE(created.ok()) << created.status();
  MysqlPool& pool = **created;

  Gate holding;
  Gate release;
  std::thread holder([&] {
    EXPECT_TRUE(pool.Run("hold", [&](sql::Connection&) {
                      holding.Open();
                      release.Wait();
                      return absl::OkStatus();
                    }).ok());
  });
  holding.Wait();
  absl::Status busy = pool.Run("second caller", [](sql::Connection&) { return absl::OkStatus(); });
  EXPECT_EQ(absl::StatusCode::kUnavailable, busy.code()) << busy;
  release.Open();
  holder.join();
  EXPECT_TRUE(pool.Run("after release", [](sql::Connection&) { return absl::OkStatus(); }).ok());
}

// Appends entry `sequence` (for app sequence % 5 + 1) to the log the way
// AuthStore does: the sequence row and the entry in one transaction.
absl::Status AppendEntry(MysqlPool& pool, int64_t sequence) {
  return pool.RunInTransaction("append invalidation", [&](sql::Connection& connection) {
    std::unique_ptr<sql::PreparedStatement> bump(
        connection.prepareStatement("UPDATE invalidation_sequence SET last_sequence = ? WHERE id = 1"));
    bump->setInt64(1, sequence);
    bump->executeUpdate();
    std::unique_ptr<sql::PreparedStatement> insert(connection.prepareStatement(
        "INSERT INTO invalidation_log (sequence, app_id, organization_id, reason, create_time) "
        "VALUES (?, ?, 1, 1, UTC_TIMESTAMP(6))"));
    insert->setInt64(1, sequence);
    insert->setUInt64(2, static_cast<uint64_t>(sequence % 5 + 1));
    insert->executeUpdate();
    return absl::OkStatus();
  });
}

// The tail thread reads the log while a writer appends to it, readers read
// the window and a purge pass runs. Readers must only get consecutive
// entries and a latest sequence that never goes back.
TEST(InvalidationTailerConcurrency, ReadersSeeConsecutiveEntries) {
  constexpr int64_t kEntries = 150;
  ScratchDatabase database;
  std::unique_ptr<MysqlPool> pool = database.Pool(8);
  ASSERT_NE(nullptr, pool);
  ASSERT_TRUE(ApplyMigrations(*pool, auth::kMigrationLockName, auth::Migrations()).ok());
  Secrets secrets;
  secrets.token_encryption_key = RandomBytes(kAes256KeyBytes);
  secrets.token_encryption_key_id = "test";
  secrets.token_hmac_key = RandomBytes(kAes256KeyBytes);
  secrets.page_token_key = RandomBytes(kAes256KeyBytes);
  auth::AuthStore store(pool.get(), secrets);

  auth::InvalidationTailer tailer(&store, auth::InvalidationTailerOptions{.poll_interval = absl::Milliseconds(5),
                                                                           .window_entries = 100,
                                                                           .purge_interval = absl::Milliseconds(20)});
  std::atomic<int64_t> callback_reads{0};
  std::atomic<int> errors{0};
  // Like the invalidation streams, the callback reads the tailer from the
  // tail thread.
  tailer.Start([&] {
    tailer.Read(0, 10);
    callback_reads.fetch_add(1);
  });

  std::atomic<bool> done{false};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      int64_t position = 0;
      int64_t latest = 0;
      while (!done.load()) {
        auth::InvalidationTailer::View view = tailer.Read(position, 7);
        if (view.latest_sequence < latest) errors.fetch_add(1);
        latest = view.latest_sequence;
        if (!view.in_window) {
          position = view.latest_sequence;  // Behind the window: skip ahead, as a reset does.
          continue;
        }
        for (const auth::InvalidationEntry& entry : view.entries) {
          if (entry.sequence != position + 1 || entry.app_id != static_cast<uint64_t>(entry.sequence % 5 + 1)) {
            errors.fetch_add(1);
          }
          position = entry.sequence;
        }
      }
    });
  }
  for (int64_t sequence = 1; sequence <= kEntries; ++sequence) {
    ASSERT_TRUE(AppendEntry(*pool, sequence).ok());
    if (sequence % 3 == 0) tailer.Wake();
  }
  EXPECT_TRUE(tailer.WakeAndAwait(kEntries, absl::Seconds(60)));
  absl::StatusOr<int> purged = tailer.PurgeNow();
  EXPECT_TRUE(purged.ok()) << purged.status();
  done.store(true);
  for (std::thread& reader : readers) reader.join();
  tailer.Stop();

  EXPECT_EQ(0, errors.load());
  EXPECT_GT(callback_reads.load(), 0);
  auth::InvalidationTailer::View view = tailer.Read(kEntries - 100, 1000);
  EXPECT_TRUE(view.in_window);
  EXPECT_EQ(kEntries, view.latest_sequence);
  ASSERT_EQ(100u, view.entries.size()) << "the window keeps the newest 100 entries";
  EXPECT_EQ(kEntries - 99, view.entries.front().sequence);
}

}  // namespace
}  // namespace crm
