// A bounded pool of MySQL Connector/C++ connections, and the one place that
// turns sql::SQLException into absl::Status.
//
// Connector facts this pool relies on. One thread uses a connection and its
// statements at a time, so a connection is leased to one caller. Automatic
// reconnect stays off, because a silent reconnect drops prepared statements
// and rolls back the open transaction. A connection that reports a lost
// server (errors 2006, 2013) is closed and replaced on the next lease.
// Each connection keeps the statements prepared through PrepareCached, so a
// repeated query costs one round trip instead of three (prepare, execute,
// close).
//
// After a lost connection, the idle connections last used before that loss
// are pinged before their next lease. A connection found lost while its
// session is set up, before the caller's statements run, is replaced at
// once. So after a database restart, transactions and calls with a deadline
// do not fail on stale connections, and other calls fail only until one of
// them has found a connection lost.
//
// A caller can bound the database work of the current thread with
// DatabaseDeadlineScope. The pool then waits for a free connection only
// until the deadline and sets MariaDB's max_statement_time on the session,
// so a statement blocked on a lock ends at the caller's deadline instead of
// keeping a connection and a worker thread busy.
//
// Create() must run in main() before other threads use the driver, because
// the driver's initialisation is not thread-safe.
#ifndef CRM_COMMON_MYSQL_POOL_H_
#define CRM_COMMON_MYSQL_POOL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace sql {
class Connection;
class Driver;
class PreparedStatement;
class SQLException;
class Statement;
}  // namespace sql

namespace crm {

struct MysqlOptions {
  std::string host = "127.0.0.1";
  int port = 3306;
  // When set, connects through this unix socket instead of host and port.
  std::string socket;
  std::string user;
  std::string password;
  std::string database;
  int pool_size = 8;
  absl::Duration connect_timeout = absl::Seconds(5);
  // Bounds one statement's round trip, so a dead server fails calls instead
  // of hanging them.
  absl::Duration io_timeout = absl::Seconds(30);
  // How long a caller waits for a free connection before UNAVAILABLE.
  absl::Duration acquire_timeout = absl::Seconds(5);
  // A connection idle for longer is pinged before it is leased again.
  absl::Duration validate_after_idle = absl::Seconds(30);
};

// Bounds the database work that the current thread runs through any
// MysqlPool while the scope lives. A Run that starts after `deadline`, or
// cannot lease a connection before it, fails with DEADLINE_EXCEEDED. Each
// statement is interrupted by the server (MariaDB error 1969, also
// DEADLINE_EXCEEDED) once the time left at the start of the Run has passed.
// The limit is per statement, so a transaction of several statements may run
// past the deadline by the time its later statements take. Scopes nest; the
// innermost deadline applies.
class DatabaseDeadlineScope {
 public:
  explicit DatabaseDeadlineScope(absl::Time deadline);
  ~DatabaseDeadlineScope();
  DatabaseDeadlineScope(const DatabaseDeadlineScope&) = delete;
  DatabaseDeadlineScope& operator=(const DatabaseDeadlineScope&) = delete;

  // The deadline of the innermost scope on this thread, or
  // absl::InfiniteFuture() outside every scope.
  static absl::Time Current();

 private:
  absl::Time previous_;
};

// Maps a connector exception to a canonical status. `operation` names what
// failed, for the message; the SQL text and bound values are never included.
absl::Status StatusFromSqlException(const sql::SQLException& error, absl::string_view operation);

// Returns the statement for `sql` prepared on `connection`, preparing it on
// first use and keeping it until the connection closes. Call it only inside
// a MysqlPool::Run or RunInTransaction body, with the connection that body
// received. Bind every parameter before each execution, and drop the result
// set of one execution before the next execution of the same statement.
// A connection keeps at most kMaxCachedStatements statements; beyond that a
// statement lives until the body returns.
sql::PreparedStatement& PrepareCached(sql::Connection& connection, const std::string& sql);

inline constexpr size_t kMaxCachedStatements = 128;

class MysqlPool {
 public:
  // Loads the driver and opens one connection to prove the settings work.
  static absl::StatusOr<std::unique_ptr<MysqlPool>> Create(const MysqlOptions& options);

  ~MysqlPool();
  MysqlPool(const MysqlPool&) = delete;
  MysqlPool& operator=(const MysqlPool&) = delete;

  // Runs `body` on a leased connection in autocommit mode. An exception from
  // the connector becomes a status; a lost connection is replaced.
  absl::Status Run(absl::string_view operation, absl::FunctionRef<absl::Status(sql::Connection&)> body);

  // Like Run, inside one transaction: committed when `body` returns OK,
  // rolled back otherwise. Deadlocks and lock wait timeouts are retried up
  // to three times, so `body` must be safe to run again.
  absl::Status RunInTransaction(absl::string_view operation,
                                absl::FunctionRef<absl::Status(sql::Connection&)> body);

  // Returns whether the database runs a query now, for health checks. Uses a
  // connection of its own, so a pool busy with slow calls does not make the
  // database look unreachable.
  bool IsReachable();

  const MysqlOptions& options() const { return options_; }

  // Returns whether the server is MariaDB, read from VERSION() when the
  // pool opened its first connection. MariaDB extends some statements,
  // such as INSERT ... RETURNING.
  bool is_mariadb() const { return is_mariadb_; }

  // Connections by state, for metrics.
  struct Usage {
    int in_use = 0;
    int open = 0;
    int max = 0;
  };
  Usage GetUsage();

 private:
  struct StatementCache;
  struct Slot {
    Slot();
    Slot(std::unique_ptr<sql::Connection> connection, absl::Time last_used);
    Slot(Slot&&);
    Slot& operator=(Slot&&);
    ~Slot();
    // Closes the statements, then the connection that they belong to.
    void Close();

    std::unique_ptr<sql::Connection> connection;
    absl::Time last_used;
    std::unique_ptr<StatementCache> statements;
    // Whether the session has a max_statement_time set by a deadline.
    bool statement_time_limited = false;
  };

  MysqlPool(const MysqlOptions& options, sql::Driver* driver);

  absl::StatusOr<std::unique_ptr<sql::Connection>> Connect();
  absl::StatusOr<Slot> Acquire(absl::Time deadline);
  // Leases a connection and sets up its session: the statement time limit
  // of `deadline` and, for a transaction, START TRANSACTION. A connection found
  // lost here is replaced and the setup repeated, which is safe because
  // none of the caller's statements has run yet.
  absl::StatusOr<Slot> AcquirePrepared(absl::string_view operation, absl::Time deadline, bool transaction);
  void Release(Slot slot, bool broken);
  // Sets *conflict when the connector reported a deadlock or lock wait
  // timeout, which a new attempt may not meet.
  absl::Status RunOnce(absl::string_view operation, bool transaction,
                       absl::FunctionRef<absl::Status(sql::Connection&)> body, bool* conflict);

  friend sql::PreparedStatement& PrepareCached(sql::Connection& connection, const std::string& sql);

  // The statements of the connection that the calling thread has leased,
  // for PrepareCached; set only while a body runs.
  static thread_local StatementCache* leased_statements_;

  const MysqlOptions options_;
  sql::Driver* const driver_;
  bool is_mariadb_ = false;

  absl::Mutex mu_;
  std::vector<Slot> idle_ ABSL_GUARDED_BY(mu_);
  // Connections leased out or idle; never above options_.pool_size.
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  // When a leased connection last reported a lost server. Idle connections
  // last used before then may be dead too and are pinged before a lease.
  absl::Time last_connection_loss_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();

  absl::Mutex probe_mu_;
  std::unique_ptr<sql::Connection> probe_connection_ ABSL_GUARDED_BY(probe_mu_);
};

}  // namespace crm

#endif  // CRM_COMMON_MYSQL_POOL_H_
