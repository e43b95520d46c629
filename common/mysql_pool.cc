#include "common/mysql_pool.h"

#include <cppconn/connection.h>
#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <mysql_driver.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/error_details.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"

namespace crm {
namespace {

// MySQL client and server error numbers that the mapping below names.
constexpr int kErrorLockWaitTimeout = 1205;
constexpr int kErrorDeadlock = 1213;
constexpr int kErrorDuplicateKey = 1062;
constexpr int kErrorDataTooLong = 1406;
constexpr int kErrorQueryInterrupted = 1317;
constexpr int kErrorStatementTimeout = 1969;  // MariaDB max_statement_time
constexpr int kErrorConnectFailed = 2002;
constexpr int kErrorConnectHostFailed = 2003;
constexpr int kErrorServerGone = 2006;
constexpr int kErrorServerLost = 2013;
constexpr int kErrorServerLostExtended = 2055;

constexpr int kTransactionAttempts = 3;

bool IsConnectionLost(int code) {
  return code == kErrorServerGone || code == kErrorServerLost || code == kErrorServerLostExtended ||
         code == kErrorConnectFailed || code == kErrorConnectHostFailed;
}

// Deadline of the innermost DatabaseDeadlineScope on this thread.
thread_local absl::Time current_deadline = absl::InfiniteFuture();

// Sets the session's max_statement_time to the time left until `deadline`,
// or clears a limit that an earlier lease set when there is no deadline.
void LimitStatementTime(sql::Connection& connection, absl::Time deadline, bool* limited) {
  if (deadline == absl::InfiniteFuture() && !*limited) return;
  std::unique_ptr<sql::Statement> statement(connection.createStatement());
  if (deadline == absl::InfiniteFuture()) {
    statement->execute("SET SESSION max_statement_time = 0");
    *limited = false;
    return;
  }
  // 0 would mean no limit, so the shortest limit is one millisecond.
  double seconds = std::max(0.001, absl::ToDoubleSeconds(deadline - absl::Now()));
  statement->execute(absl::StrFormat("SET SESSION max_statement_time = %.3f", seconds));
  *limited = true;
}

}  // namespace

struct MysqlPool::StatementCache {
  explicit StatementCache(sql::Connection* connection) : connection(connection) {}

  // Runs a statement without parameters through the text protocol, which
  // needs no prepare round trip.
  void Execute(const char* sql) {
    if (text == nullptr) text.reset(connection->createStatement());
    text->execute(sql);
  }

  sql::Connection* const connection;
  absl::flat_hash_map<std::string, std::unique_ptr<sql::PreparedStatement>> prepared;
  // Statements prepared while `prepared` was full; closed when the lease ends.
  std::vector<std::unique_ptr<sql::PreparedStatement>> overflow;
  std::unique_ptr<sql::Statement> text;
};

thread_local MysqlPool::StatementCache* MysqlPool::leased_statements_ = nullptr;

MysqlPool::Slot::Slot() = default;
MysqlPool::Slot::Slot(std::unique_ptr<sql::Connection> connection, absl::Time last_used)
    : connection(std::move(connection)),
      last_used(last_used),
      statements(std::make_unique<StatementCache>(this->connection.get())) {}
MysqlPool::Slot::Slot(Slot&&) = default;
MysqlPool::Slot& MysqlPool::Slot::operator=(Slot&&) = default;
MysqlPool::Slot::~Slot() { Close(); }

void MysqlPool::Slot::Close() {
  statements.reset();
  connection.reset();
}

sql::PreparedStatement& PrepareCached(sql::Connection& connection, const std::string& sql) {
  MysqlPool::StatementCache* cache = MysqlPool::leased_statements_;
  if (cache == nullptr || cache->connection != &connection) {
    // A programming error: the statement would outlive its connection or
    // be shared between threads.
    std::fputs("PrepareCached called outside a MysqlPool body or with another connection\n", stderr);
    std::abort();
  }
  if (auto it = cache->prepared.find(sql); it != cache->prepared.end()) return *it->second;
  std::unique_ptr<sql::PreparedStatement> statement(connection.prepareStatement(sql));
  sql::PreparedStatement& prepared = *statement;
  if (cache->prepared.size() < kMaxCachedStatements) {
    cache->prepared.emplace(sql, std::move(statement));
  } else {
    cache->overflow.push_back(std::move(statement));
  }
  return prepared;
}

DatabaseDeadlineScope::DatabaseDeadlineScope(absl::Time deadline) : previous_(current_deadline) {
  current_deadline = deadline;
}

DatabaseDeadlineScope::~DatabaseDeadlineScope() { current_deadline = previous_; }

absl::Time DatabaseDeadlineScope::Current() { return current_deadline; }

absl::Status StatusFromSqlException(const sql::SQLException& error, absl::string_view operation) {
  int code = error.getErrorCode();
  std::string message = absl::StrCat(operation, " failed: MySQL error ", code, " (", error.getSQLState(), ")");
  if (IsConnectionLost(code)) {
    return WithErrorInfo(absl::UnavailableError(absl::StrCat(message, ": database unreachable")),
                         ErrorReason::kDatabaseUnavailable);
  }
  switch (code) {
    case kErrorDuplicateKey:
      return WithErrorInfo(absl::AlreadyExistsError(message), ErrorReason::kResourceAlreadyExists);
    case kErrorDeadlock:
    case kErrorLockWaitTimeout:
      return WithErrorInfo(absl::AbortedError(absl::StrCat(message, ": conflicting concurrent transaction")),
                           ErrorReason::kTransactionConflict);
    case kErrorQueryInterrupted:
    case kErrorStatementTimeout:
      return WithErrorInfo(absl::DeadlineExceededError(message), ErrorReason::kDatabaseTimeout);
    case kErrorDataTooLong:
      return WithErrorInfo(absl::InvalidArgumentError(absl::StrCat(message, ": value too long")),
                           ErrorReason::kValidationFailed);
    default:
      return WithErrorInfo(absl::InternalError(absl::StrCat(message, ": ", error.what())),
                           ErrorReason::kInternalError);
  }
}

absl::StatusOr<std::unique_ptr<MysqlPool>> MysqlPool::Create(const MysqlOptions& options) {
  if (options.pool_size < 1) return absl::InvalidArgumentError("database pool size must be at least 1");
  sql::Driver* driver = nullptr;
  try {
    driver = sql::mysql::get_mysql_driver_instance();
  } catch (const sql::SQLException& error) {
    return StatusFromSqlException(error, "loading the MySQL driver");
  }
  std::unique_ptr<MysqlPool> pool(new MysqlPool(options, driver));
  absl::StatusOr<std::unique_ptr<sql::Connection>> first = pool->Connect();
  if (!first.ok()) return first.status();
  try {
    std::unique_ptr<sql::Statement> statement((*first)->createStatement());
    std::unique_ptr<sql::ResultSet> version(statement->executeQuery("SELECT VERSION()"));
    pool->is_mariadb_ = version->next() && absl::StrContains(version->getString(1).asStdString(), "MariaDB");
  } catch (const sql::SQLException& error) {
    return StatusFromSqlException(error, "reading the database version");
  }
  absl::MutexLock lock(&pool->mu_);
  pool->idle_.push_back(Slot{*std::move(first), absl::Now()});
  pool->open_ = 1;
  return pool;
}

MysqlPool::MysqlPool(const MysqlOptions& options, sql::Driver* driver)
    : options_(options), driver_(driver) {}

MysqlPool::~MysqlPool() = default;

absl::StatusOr<std::unique_ptr<sql::Connection>> MysqlPool::Connect() {
  sql::ConnectOptionsMap properties;
  if (!options_.socket.empty()) {
    properties["socket"] = options_.socket;
    properties["hostName"] = std::string("localhost");
  } else {
    properties["hostName"] = options_.host;
    properties["port"] = options_.port;
  }
  properties["userName"] = options_.user;
  properties["password"] = options_.password;
  properties["schema"] = options_.database;
  properties["OPT_RECONNECT"] = false;
  properties["OPT_CHARSET_NAME"] = std::string("utf8mb4");
  properties["OPT_CONNECT_TIMEOUT"] = static_cast<int>(absl::ToInt64Seconds(options_.connect_timeout));
  properties["OPT_READ_TIMEOUT"] = static_cast<int>(absl::ToInt64Seconds(options_.io_timeout));
  properties["OPT_WRITE_TIMEOUT"] = static_cast<int>(absl::ToInt64Seconds(options_.io_timeout));
  try {
    std::unique_ptr<sql::Connection> connection(driver_->connect(properties));
    std::unique_ptr<sql::Statement> statement(connection->createStatement());
    // Timestamps are stored and compared in UTC; strict mode rejects values
    // that would otherwise be truncated without an error.
    statement->execute("SET time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ENGINE_SUBSTITUTION'");
    return connection;
  } catch (const sql::SQLException& error) {
    spdlog::warn("database connect to {} failed: MySQL error {}",
                 options_.socket.empty() ? absl::StrCat(options_.host, ":", options_.port) : options_.socket,
                 error.getErrorCode());
    absl::Status status = StatusFromSqlException(error, "connecting to the database");
    if (!absl::IsUnavailable(status)) {
      status = WithErrorInfo(absl::UnavailableError(status.message()), ErrorReason::kDatabaseUnavailable);
    }
    return status;
  }
}

absl::StatusOr<MysqlPool::Slot> MysqlPool::Acquire(absl::Time deadline) {
  {
    absl::MutexLock lock(&mu_);
    auto can_proceed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !idle_.empty() || open_ < options_.pool_size;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&can_proceed),
                              std::min(options_.acquire_timeout, deadline - absl::Now()))) {
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError("no free database connection before the call's deadline");
      }
      return WithErrorInfo(absl::UnavailableError(absl::StrCat("no free database connection within ",
                                                               absl::FormatDuration(options_.acquire_timeout))),
                           ErrorReason::kDatabaseUnavailable);
    }
    if (!idle_.empty()) {
      Slot slot = std::move(idle_.back());
      idle_.pop_back();
      bool used_before_loss = slot.last_used <= last_connection_loss_;
      mu_.Unlock();
      bool valid = true;
      if (used_before_loss || absl::Now() - slot.last_used > options_.validate_after_idle) {
        try {
          valid = slot.connection->isValid();
        } catch (const sql::SQLException&) {
          valid = false;
        }
      }
      mu_.Lock();
      if (valid) return slot;
      spdlog::info("replacing idle database connection that failed its health check");
      --open_;
    }
    ++open_;  // Reserve a place for the connection opened below.
  }
  absl::StatusOr<std::unique_ptr<sql::Connection>> connection = Connect();
  if (!connection.ok()) {
    absl::MutexLock lock(&mu_);
    --open_;
    return connection.status();
  }
  return Slot{*std::move(connection), absl::Now()};
}

void MysqlPool::Release(Slot slot, bool broken) {
  if (broken) slot.Close();  // Outside the lock.
  absl::MutexLock lock(&mu_);
  if (broken) {
    --open_;
    last_connection_loss_ = absl::Now();
    return;
  }
  slot.last_used = absl::Now();
  idle_.push_back(std::move(slot));
}

absl::StatusOr<MysqlPool::Slot> MysqlPool::AcquirePrepared(absl::string_view operation, absl::Time deadline,
                                                          bool transaction) {
  absl::Status status;
  // After a database restart every idle connection may be dead, so the
  // attempts cover the whole pool and one new connection.
  for (int attempt = 0; attempt <= options_.pool_size; ++attempt) {
    absl::StatusOr<Slot> slot = Acquire(deadline);
    if (!slot.ok()) return slot.status();
    try {
      LimitStatementTime(*slot->connection, deadline, &slot->statement_time_limited);
      if (transaction) slot->statements->Execute("START TRANSACTION");
      return slot;
    } catch (const sql::SQLException& error) {
      status = StatusFromSqlException(error, operation);
      // The session's state is unknown, so the connection is closed.
      Release(*std::move(slot), /*broken=*/true);
      if (!IsConnectionLost(error.getErrorCode())) return status;
      spdlog::info("{}: replacing a database connection that was lost while idle", operation);
    }
  }
  return status;
}

absl::Status MysqlPool::RunOnce(absl::string_view operation, bool transaction,
                                absl::FunctionRef<absl::Status(sql::Connection&)> body,
                                bool* conflict) {
  *conflict = false;
  absl::Time deadline = DatabaseDeadlineScope::Current();
  if (absl::Now() >= deadline) {
    return absl::DeadlineExceededError(absl::StrCat(operation, " not started: the call's deadline has passed"));
  }
  absl::StatusOr<Slot> slot = AcquirePrepared(operation, deadline, transaction);
  if (!slot.ok()) return slot.status();
  sql::Connection& connection = *slot->connection;
  StatementCache& statements = *slot->statements;
  StatementCache* const outer = leased_statements_;
  leased_statements_ = &statements;
  absl::Cleanup end_lease = [&statements, outer] {
    leased_statements_ = outer;
    statements.overflow.clear();
  };
  bool broken = false;
  absl::Status status;
  // The connection stays in autocommit mode. An explicit transaction costs
  // two round trips (START TRANSACTION, COMMIT) instead of three. The
  // statements also raise errors, which the connector's commit(),
  // rollback() and setAutoCommit() ignore (Connector/C++ 1.1.12): a COMMIT
  // lost with its connection must fail the call, not report a stored write.
  try {
    status = body(connection);
    if (transaction) statements.Execute(status.ok() ? "COMMIT" : "ROLLBACK");
  } catch (const sql::SQLException& error) {
    status = StatusFromSqlException(error, operation);
    broken = IsConnectionLost(error.getErrorCode());
    *conflict = error.getErrorCode() == kErrorDeadlock || error.getErrorCode() == kErrorLockWaitTimeout;
    if (transaction && !broken) {
      try {
        statements.Execute("ROLLBACK");
      } catch (const sql::SQLException&) {
        broken = true;
      }
    }
    if (broken) spdlog::warn("{}: database connection lost; it will be replaced", operation);
  }
  std::move(end_lease).Invoke();
  Release(*std::move(slot), broken);
  return status;
}

absl::Status MysqlPool::Run(absl::string_view operation,
                            absl::FunctionRef<absl::Status(sql::Connection&)> body) {
  bool conflict = false;
  return RunOnce(operation, /*transaction=*/false, body, &conflict);
}

absl::Status MysqlPool::RunInTransaction(absl::string_view operation,
                                         absl::FunctionRef<absl::Status(sql::Connection&)> body) {
  absl::Status status;
  for (int attempt = 1; attempt <= kTransactionAttempts; ++attempt) {
    bool conflict = false;
    status = RunOnce(operation, /*transaction=*/true, body, &conflict);
    if (!conflict) return status;
    spdlog::info("{}: retrying after transaction conflict (attempt {} of {})", operation, attempt,
                 kTransactionAttempts);
  }
  return status;
}

bool MysqlPool::IsReachable() {
  absl::MutexLock lock(&probe_mu_);
  if (probe_connection_ == nullptr) {
    absl::StatusOr<std::unique_ptr<sql::Connection>> connection = Connect();
    if (!connection.ok()) return false;
    probe_connection_ = *std::move(connection);
  }
  try {
    std::unique_ptr<sql::Statement> statement(probe_connection_->createStatement());
    // The result must be read and freed, or the next query on this
    // connection fails with "commands out of sync" (error 2014).
    std::unique_ptr<sql::ResultSet> result(statement->executeQuery("SELECT 1"));
    return result->next();
  } catch (const sql::SQLException&) {
    // Reconnect on the next probe, which succeeds once the server is back.
    probe_connection_.reset();
    return false;
  }
}

MysqlPool::Usage MysqlPool::GetUsage() {
  absl::MutexLock lock(&mu_);
  return Usage{.in_use = open_ - static_cast<int>(idle_.size()), .open = open_, .max = options_.pool_size};
}

}  // namespace crm
