// Faults injected under load: the database stopped and restarted, the auth
// server stopped and restarted, SIGTERM to the real server binaries, and a
// database that holds a table lock. Each test records every call's result
// and checks that no write that returned OK is lost, that calls fail with
// the documented code and within bounded time while the fault lasts, and
// that the servers recover without a restart.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "tests/integration/table_lock.h"
#include "tests/integration/test_stack.h"

extern char** environ;

namespace crm::testing {
namespace {

using crm::auth::v1::ACTION_READ;
using crm::auth::v1::MODULE_LEAD;

// One finished call of a load thread.
struct CallResult {
  absl::Time start;
  absl::Time end;
  grpc::StatusCode code;
};

// Results of all load threads, and the ids of every write that returned OK.
class LoadLog {
 public:
  void Record(absl::Time start, grpc::StatusCode code, const std::string& written_id = "") {
    absl::MutexLock lock(&mu_);
    calls_.push_back({start, absl::Now(), code});
    if (code == grpc::StatusCode::OK && !written_id.empty()) acknowledged_.push_back(written_id);
  }

  std::vector<CallResult> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

  std::vector<std::string> acknowledged() {
    absl::MutexLock lock(&mu_);
    return acknowledged_;
  }

 private:
  absl::Mutex mu_;
  std::vector<CallResult> calls_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> acknowledged_ ABSL_GUARDED_BY(mu_);
};

// Runs `body` on `threads` threads until Stop().
class LoadThreads {
 public:
  LoadThreads(int threads, std::function<void(int thread)> body) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this, i, body] {
        while (!stop_.load()) body(i);
      });
    }
  }
  ~LoadThreads() { Stop(); }

  void Stop() {
    stop_ = true;
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

std::unique_ptr<grpc::ClientContext> WithBearerAndDeadline(const std::string& credential, absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata("authorization", absl::StrCat("Bearer ", credential));
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

// Creates a lead and records the result; returns the new id or "".
std::string CreateLead(crm::data::v1::CrmService::Stub& stub, const std::string& token, LoadLog& log,
                       absl::Duration timeout = absl::Seconds(5)) {
  crm::data::v1::CreateLeadRequest request;
  request.mutable_lead()->set_last_name("Load");
  crm::data::v1::CreateLeadResponse response;
  absl::Time start = absl::Now();
  grpc::Status status = stub.CreateLead(WithBearerAndDeadline(token, timeout).get(), request, &response);
  log.Record(start, status.error_code(), response.lead().id());
  return status.ok() ? response.lead().id() : "";
}

// Returns the ids of every row of `table`, or fails the test.
std::set<std::string> StoredIds(MysqlPool& pool, const std::string& table) {
  std::set<std::string> ids;
  absl::Status status = pool.Run("reading stored ids", [&](sql::Connection& connection) {
    ids.clear();
    std::unique_ptr<sql::Statement> statement(connection.createStatement());
    std::unique_ptr<sql::ResultSet> result(statement->executeQuery(absl::StrCat("SELECT id FROM ", table)));
    while (result->next()) ids.insert(absl::StrCat(result->getUInt64(1)));
    return absl::OkStatus();
  });
  EXPECT_TRUE(status.ok()) << status;
  return ids;
}

void ExpectAllStored(const std::vector<std::string>& acknowledged, const std::set<std::string>& stored) {
  int missing = 0;
  for (const std::string& id : acknowledged) {
    if (stored.count(id) == 0) ++missing;
  }
  EXPECT_EQ(0, missing) << missing << " of " << acknowledged.size() << " acknowledged writes are missing";
}

// Waits until `predicate` holds, checking every 10 ms; returns how long it
// took, or nullopt after `timeout`.
std::optional<absl::Duration> WaitFor(const std::function<bool()>& predicate, absl::Duration timeout) {
  absl::Time start = absl::Now();
  while (absl::Now() - start < timeout) {
    if (predicate()) return absl::Now() - start;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return std::nullopt;
}

bool RunScript(const std::vector<std::string>& arguments) {
  std::string command;
  for (const std::string& argument : arguments) absl::StrAppend(&command, "'", argument, "' ");
  return std::system(command.c_str()) == 0;
}

// ---- The database stopped and restarted under load ----

// Starts a MariaDB server of its own in the build folder's fault-mariadb
// (CRM_FAULT_DB_DIR, set by CMake), because stopping
// the fixture's server would break the tests that run beside this one.
class DatabaseFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    script_ = CRM_MARIADB_SCRIPT;
    directory_ = CRM_FAULT_DB_DIR;
    ASSERT_TRUE(RunScript({script_, "start", directory_})) << "cannot start MariaDB in " << directory_;
    StackOptions options;
    options.db_socket = directory_ + "/mysqld.sock";
    absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
  }

  void TearDown() override {
    StartDatabase();  // So that the stack can drop its databases.
    stack_.reset();
    RunScript({script_, "stop", directory_});
  }

  bool StopDatabase() { return RunScript({script_, "stop", directory_}); }
  bool StartDatabase() { return RunScript({script_, "start", directory_}); }

  std::string script_;
  std::string directory_;
  std::unique_ptr<TestStack> stack_;
};

TEST_F(DatabaseFaultTest, DatabaseRestartUnderLoad) {
  std::string admin_key = stack_->NewOrganization();
  std::string token = stack_->NewApp(admin_key, AllScopes()).access_token();
  LoadLog log;
  LoadThreads load(4, [&](int) {
    std::string id = CreateLead(stack_->crm(), token, log);
    if (id.empty()) {
      absl::SleepFor(absl::Milliseconds(10));  // Back off as a client would.
      return;
    }
    crm::data::v1::GetLeadRequest get;
    get.set_id(id);
    crm::data::v1::GetLeadResponse response;
    absl::Time start = absl::Now();
    grpc::Status status = stack_->crm().GetLead(WithBearerAndDeadline(token, absl::Seconds(5)).get(), get, &response);
    log.Record(start, status.error_code());
  });
  absl::SleepFor(absl::Seconds(1));

  ASSERT_TRUE(StopDatabase());
  absl::Time stopped = absl::Now();
  absl::SleepFor(absl::Seconds(3));
  absl::Time restarting = absl::Now();
  ASSERT_TRUE(StartDatabase());
  absl::Time restarted = absl::Now();

  // The same servers serve again once the database is back.
  LoadLog probe;
  std::optional<absl::Duration> recovery =
      WaitFor([&] { return !CreateLead(stack_->crm(), token, probe, absl::Seconds(2)).empty(); }, absl::Seconds(20));
  ASSERT_TRUE(recovery.has_value()) << "no call succeeded within 20 s of the database restart";
  absl::Time recovered = absl::Now();
  absl::SleepFor(absl::Seconds(1));
  load.Stop();

  int during_outage = 0;
  int after_recovery = 0;
  for (const CallResult& call : log.calls()) {
    if (call.start >= stopped && call.end <= restarting) {
      ++during_outage;
      EXPECT_EQ(grpc::StatusCode::UNAVAILABLE, call.code) << "a call during the outage";
      EXPECT_LT(call.end - call.start, absl::Seconds(1)) << "a call during the outage did not fail fast";
    }
    if (call.start >= recovered) {
      ++after_recovery;
      EXPECT_EQ(grpc::StatusCode::OK, call.code) << "a call after recovery failed";
    }
  }
  EXPECT_GT(during_outage, 10);
  EXPECT_GT(after_recovery, 10);
  ExpectAllStored(log.acknowledged(), StoredIds(stack_->data_pool(), "leads"));
  EXPECT_GT(log.acknowledged().size(), 10u);
  std::cout << "database restart: " << during_outage << " calls failed during the outage, first success "
            << absl::FormatDuration(recovered - restarted) << " after the restart, " << log.acknowledged().size()
            << " acknowledged writes all stored\n";
}

TEST_F(DatabaseFaultTest, DatabaseRestartWhileIdle) {
  std::string admin_key = stack_->NewOrganization();
  std::string token = stack_->NewApp(admin_key, AllScopes()).access_token();
  // Concurrent calls leave several open connections in each server's pool.
  {
    LoadLog warm_up;
    LoadThreads load(8, [&](int) { CreateLead(stack_->crm(), token, warm_up); });
    absl::SleepFor(absl::Milliseconds(500));
  }

  // Restarted with no call in between: every pooled connection is now dead,
  // and no call has found that out yet.
  ASSERT_TRUE(StopDatabase());
  ASSERT_TRUE(StartDatabase());
  LoadLog log;
  for (int i = 0; i < 20; ++i) CreateLead(stack_->crm(), token, log);
  int failed = 0;
  for (const CallResult& call : log.calls()) {
    if (call.code != grpc::StatusCode::OK) ++failed;
  }
  EXPECT_EQ(0, failed) << "calls failed on connections that died in the restart";
  ExpectAllStored(log.acknowledged(), StoredIds(stack_->data_pool(), "leads"));
}

// ---- A connection lost at COMMIT ----

// The connection dies after the transaction's insert and before its COMMIT
// (another session kills it), and the pool must report the failure. The
// connector's commit() ignores that error, so the pool sends COMMIT as a
// statement; with commit() the rolled-back insert was reported as stored.
TEST(PoolFaultTest, CommitOnKilledConnectionFails) {
  absl::StatusOr<std::unique_ptr<TestStack>> started = TestStack::Start({});
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<TestStack> stack = *std::move(started);
  MysqlOptions options = stack->data_database_options();
  options.pool_size = 2;
  absl::StatusOr<std::unique_ptr<MysqlPool>> pool = MysqlPool::Create(options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  absl::StatusOr<std::unique_ptr<MysqlPool>> killer = MysqlPool::Create(options);
  ASSERT_TRUE(killer.ok()) << killer.status();
  int64_t before = CountRows(stack->data_pool(), "leads");

  absl::Status status = (*pool)->RunInTransaction("insert then lose the connection", [&](sql::Connection& connection) {
    std::unique_ptr<sql::Statement> statement(connection.createStatement());
    statement->execute(
        "INSERT INTO leads (organization_id, last_name, create_time, update_time) "
        "VALUES (1, 'Lost', UTC_TIMESTAMP(), UTC_TIMESTAMP())");
    std::unique_ptr<sql::ResultSet> result(statement->executeQuery("SELECT CONNECTION_ID()"));
    result->next();
    int64_t id = result->getInt64(1);
    result.reset();
    return (*killer)->Run("killing the connection", [&](sql::Connection& other) {
      std::unique_ptr<sql::Statement> kill(other.createStatement());
      kill->execute(absl::StrCat("KILL CONNECTION ", id));
      return absl::OkStatus();
    });
  });
  EXPECT_TRUE(absl::IsUnavailable(status)) << status;
  EXPECT_EQ(before, CountRows(stack->data_pool(), "leads"));

  // The pool replaces the lost connection.
  EXPECT_TRUE((*pool)->Run("after the loss", [](sql::Connection& connection) {
                        std::unique_ptr<sql::Statement> statement(connection.createStatement());
                        std::unique_ptr<sql::ResultSet> result(statement->executeQuery("SELECT 1"));
                        return result->next() ? absl::OkStatus() : absl::InternalError("no row");
                      }).ok());
}

// ---- The auth server stopped and restarted under load ----

TEST(AuthFaultTest, AuthServerStopUnderLoad) {
  absl::StatusOr<std::unique_ptr<TestStack>> started = TestStack::Start({});
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<TestStack> stack = *std::move(started);
  std::string admin_key = stack->NewOrganization();
  std::string token = stack->NewApp(admin_key, {MakeScope(MODULE_LEAD, ACTION_READ)}).access_token();
  auto list_leads = [&](LoadLog& log, absl::Duration timeout) {
    crm::data::v1::ListLeadsResponse response;
    absl::Time start = absl::Now();
    grpc::Status status = stack->crm().ListLeads(WithBearerAndDeadline(token, timeout).get(), {}, &response);
    log.Record(start, status.error_code());
    return status.ok();
  };

  // The token check is cached and the invalidation stream current.
  LoadLog warm_up;
  ASSERT_TRUE(list_leads(warm_up, absl::Seconds(5)));
  ASSERT_TRUE(WaitFor(
      [&] {
        grpc::ClientContext context;
        crm::data::v1::GetServerStatusResponse status;
        return stack->crm_status().GetServerStatus(&context, {}, &status).ok() &&
               status.watch_state() == crm::data::v1::WATCH_STATE_CURRENT && status.cached_tokens() > 0;
      },
      absl::Seconds(10)));

  LoadLog log;
  LoadThreads load(4, [&](int) {
    if (!list_leads(log, absl::Seconds(5))) absl::SleepFor(absl::Milliseconds(10));
  });
  absl::SleepFor(absl::Milliseconds(500));
  stack->StopAuthServer(0);
  absl::Time stopped = absl::Now();
  absl::SleepFor(absl::Seconds(2));
  absl::Time restarting = absl::Now();
  stack->RestartAuthServer(0);

  LoadLog probe;
  std::optional<absl::Duration> recovery =
      WaitFor([&] { return list_leads(probe, absl::Seconds(2)); }, absl::Seconds(20));
  ASSERT_TRUE(recovery.has_value()) << "no CRM call succeeded within 20 s of the auth server's restart";
  absl::SleepFor(absl::Milliseconds(500));
  load.Stop();

  int before_stop = 0;
  int during_outage = 0;
  for (const CallResult& call : log.calls()) {
    if (call.end < stopped && call.code == grpc::StatusCode::OK) ++before_stop;
    if (call.start >= stopped && call.end <= restarting) {
      ++during_outage;
      EXPECT_EQ(grpc::StatusCode::UNAVAILABLE, call.code) << "a CRM call succeeded or failed otherwise without "
                                                             "the auth server, "
                                                          << absl::FormatDuration(call.start - stopped)
                                                          << " after it stopped";
      EXPECT_LT(call.end - call.start, absl::Seconds(1)) << "a call during the outage did not fail fast";
    }
  }
  EXPECT_GT(before_stop, 10);
  EXPECT_GT(during_outage, 10);
  std::cout << "auth restart: " << during_outage << " calls failed closed, first success "
            << absl::FormatDuration(*recovery) << " after the restart\n";
}

// ---- A database that holds a table lock ----

TEST(SlowDatabaseTest, LockedTableTimesOutAtDeadline) {
  constexpr int kWorkers = 2;
  constexpr int kQueue = 4;
  StackOptions options;
  options.adjust_crm_options = [](crm::data::CrmServerOptions& crm) {
    crm.worker_threads = kWorkers;
    crm.max_queued_requests = kQueue;
  };
  absl::StatusOr<std::unique_ptr<TestStack>> started = TestStack::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<TestStack> stack = *std::move(started);
  std::string admin_key = stack->NewOrganization();
  std::string token = stack->NewApp(admin_key, AllScopes()).access_token();
  LoadLog warm_up;
  ASSERT_FALSE(CreateLead(stack->crm(), token, warm_up).empty());  // Caches the token check.
  int64_t leads_before = CountRows(stack->data_pool(), "leads");

  TableLock lock(stack->data_database_options(), "leads");
  constexpr int kCalls = 20;
  const absl::Duration deadline = absl::Milliseconds(300);
  LoadLog log;
  std::vector<std::thread> callers;
  absl::Time burst = absl::Now();
  for (int i = 0; i < kCalls; ++i) {
    callers.emplace_back([&] { CreateLead(stack->crm(), token, log, deadline); });
  }
  for (std::thread& caller : callers) caller.join();

  int deadline_exceeded = 0;
  int rejected = 0;
  for (const CallResult& call : log.calls()) {
    if (call.code == grpc::StatusCode::DEADLINE_EXCEEDED) {
      ++deadline_exceeded;
      EXPECT_LT(call.end - call.start, deadline + absl::Milliseconds(200)) << "a call outlived its deadline";
    } else {
      EXPECT_EQ(grpc::StatusCode::RESOURCE_EXHAUSTED, call.code);
      ++rejected;
      EXPECT_LT(call.end - call.start, deadline) << "an excess call waited instead of being rejected";
    }
  }
  // Only the calls on a worker or in the queue wait; the rest are rejected.
  EXPECT_LE(deadline_exceeded, kWorkers + kQueue);
  EXPECT_GE(rejected, kCalls - kWorkers - kQueue);

  // The workers gave up the blocked statements at the callers' deadline, so
  // another table is served at once while the lock is still held.
  absl::SleepFor(absl::Milliseconds(200));
  crm::data::v1::ListContactsResponse contacts;
  absl::Time start = absl::Now();
  grpc::Status status =
      stack->crm().ListContacts(WithBearerAndDeadline(token, absl::Seconds(2)).get(), {}, &contacts);
  EXPECT_TRUE(status.ok()) << "workers are still blocked on the lock: " << status.error_message();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));

  lock.Release();
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(leads_before, CountRows(stack->data_pool(), "leads")) << "a timed-out insert was committed later";
  LoadLog after;
  EXPECT_FALSE(CreateLead(stack->crm(), token, after).empty()) << "the server did not recover after the lock";
  std::cout << "locked table: " << deadline_exceeded << " calls ended at their deadline, " << rejected
            << " were rejected at once, burst took " << absl::FormatDuration(absl::Now() - burst) << "\n";
}

// ---- SIGTERM to the real server binaries ----

// A server binary run as a child process with its log in a file.
class ServerProcess {
 public:
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // Starts `binary` and waits until its log shows the listening port.
  bool Start(const std::string& binary, const std::vector<std::string>& flags, const std::string& log_path) {
    log_path_ = log_path;
    std::vector<std::string> arguments = {binary};
    arguments.insert(arguments.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (std::string& argument : arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int error = posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (error != 0) {
      ADD_FAILURE() << "cannot start " << binary << ": error " << error;
      pid_ = 0;
      return false;
    }
    std::optional<absl::Duration> listening = WaitFor([this] { return ReadPort() > 0 || Exited(); }, absl::Seconds(30));
    if (!listening.has_value() || port_ == 0) {
      ADD_FAILURE() << binary << " did not start listening; its log:\n" << Log();
      return false;
    }
    return true;
  }

  int port() const { return port_; }

  void Terminate() { kill(pid_, SIGTERM); }

  // Waits up to `timeout` for the process to exit; returns its wait status.
  std::optional<int> WaitForExit(absl::Duration timeout) {
    std::optional<absl::Duration> exited = WaitFor([this] { return Exited(); }, timeout);
    if (!exited.has_value()) return std::nullopt;
    return status_;
  }

  std::string Log() const {
    std::ifstream file(log_path_);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
  }

 private:
  int ReadPort() {
    std::string log = Log();
    const std::string marker = "listening on 127.0.0.1:";
    size_t at = log.find(marker);
    if (at == std::string::npos) return 0;
    size_t begin = at + marker.size();
    size_t end = log.find_first_not_of("0123456789", begin);
    int port = 0;
    if (absl::SimpleAtoi(log.substr(begin, end - begin), &port)) port_ = port;
    return port_;
  }

  bool Exited() {
    if (pid_ <= 0) return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
    status_ = status;
    pid_ = 0;
    return true;
  }

  pid_t pid_ = 0;
  int port_ = 0;
  int status_ = -1;
  std::string log_path_;
};

// Starts a stack for the server binaries to share: its auth server checks
// the CRM binary's tokens, its databases hold their tables, and a key file
// carries its keys.
class SigtermTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestStack>> started = TestStack::Start({});
    ASSERT_TRUE(started.ok()) << started.status();
    stack_ = *std::move(started);
    key_file_ = absl::StrCat(::testing::TempDir(), "/sigterm_keys_", getpid(), "_",
                             ::testing::UnitTest::GetInstance()->current_test_info()->name(), ".txt");
    std::ofstream keys(key_file_);
    keys << "token_encryption_key=" << absl::Base64Escape(stack_->secrets().token_encryption_key) << "\n"
         << "token_hmac_key=" << absl::Base64Escape(stack_->secrets().token_hmac_key) << "\n"
         << "page_token_key=" << absl::Base64Escape(stack_->secrets().page_token_key) << "\n";
  }

  void TearDown() override { std::remove(key_file_.c_str()); }

  std::vector<std::string> CommonFlags(const MysqlOptions& database) {
    return {"--port=0",      absl::StrCat("--db_socket=", database.socket), "--db_user=root",
            absl::StrCat("--db_name=", database.database), absl::StrCat("--key_file=", key_file_),
            "--log_level=info"};
  }

  std::string LogPath(const std::string& name) {
    return absl::StrCat(::testing::TempDir(), "/", name, "_", getpid(), ".log");
  }

  std::unique_ptr<TestStack> stack_;
  std::string key_file_;
};

// Checks the calls of a SIGTERM scenario: those in flight at the signal
// completed OK, those that started after it were refused, and every write
// that returned OK is stored.
void CheckDrain(LoadLog& log, absl::Time signalled, const std::set<std::string>& stored, int* in_flight,
                int* refused) {
  *in_flight = 0;
  *refused = 0;
  for (const CallResult& call : log.calls()) {
    if (call.start < signalled && call.end > signalled) {
      ++*in_flight;
      EXPECT_EQ(grpc::StatusCode::OK, call.code) << "a call in flight at SIGTERM did not complete";
    }
    if (call.start > signalled + absl::Milliseconds(100)) {
      ++*refused;
      EXPECT_EQ(grpc::StatusCode::UNAVAILABLE, call.code) << "a call after SIGTERM was not refused";
    }
  }
  ExpectAllStored(log.acknowledged(), stored);
}

TEST_F(SigtermTest, CrmServerDrainsOnSigterm) {
  std::string admin_key = stack_->NewOrganization();
  std::string token = stack_->NewApp(admin_key, AllScopes()).access_token();
  MysqlOptions database = stack_->data_database_options();
  std::vector<std::string> flags = CommonFlags(database);
  flags.push_back(absl::StrCat("--auth_target=127.0.0.1:", stack_->auth_internal_port()));
  flags.push_back("--shutdown_grace_seconds=3");
  ServerProcess server;
  ASSERT_TRUE(server.Start(CRM_SERVER_BINARY, flags, LogPath("crm_sigterm")));
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server.port()), grpc::InsecureChannelCredentials());
  auto stub = crm::data::v1::CrmService::NewStub(channel);

  constexpr int kThreads = 3;
  LoadLog log;
  LoadThreads load(kThreads, [&](int) { CreateLead(*stub, token, log, absl::Seconds(10)); });
  absl::SleepFor(absl::Seconds(1));

  // Hold every load thread's insert in flight, then signal.
  TableLock lock(database, "leads");
  ASSERT_TRUE(WaitFor([&] { return SessionsWaitingForTableLock(stack_->data_pool(), database.database) == kThreads; },
                      absl::Seconds(5)))
      << "the load threads' inserts did not reach the lock";
  server.Terminate();
  absl::Time signalled = absl::Now();

  // A new client is refused while the calls in flight wait.
  absl::SleepFor(absl::Milliseconds(300));
  auto fresh_channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", server.port()), grpc::InsecureChannelCredentials());
  LoadLog fresh;
  CreateLead(*crm::data::v1::CrmService::NewStub(fresh_channel), token, fresh, absl::Seconds(2));
  ASSERT_EQ(1u, fresh.calls().size());
  EXPECT_EQ(grpc::StatusCode::UNAVAILABLE, fresh.calls()[0].code);

  absl::SleepFor(absl::Milliseconds(700));
  lock.Release();
  std::optional<int> status = server.WaitForExit(absl::Seconds(3 + 2));
  absl::Duration exit_time = absl::Now() - signalled;
  load.Stop();
  ASSERT_TRUE(status.has_value()) << "crm_server did not exit within the grace period; its log:\n" << server.Log();
  ASSERT_TRUE(WIFEXITED(*status)) << server.Log();
  EXPECT_EQ(0, WEXITSTATUS(*status)) << server.Log();

  int in_flight = 0;
  int refused = 0;
  CheckDrain(log, signalled, StoredIds(stack_->data_pool(), "leads"), &in_flight, &refused);
  EXPECT_EQ(kThreads, in_flight);
  EXPECT_GT(refused, 0);
  std::cout << "crm SIGTERM: " << in_flight << " calls in flight completed, " << refused
            << " later calls refused, exit " << absl::FormatDuration(exit_time) << " after the signal, "
            << log.acknowledged().size() << " acknowledged writes all stored\n";
}

TEST_F(SigtermTest, CrmServerStuckCallExitsAfterGrace) {
  std::string admin_key = stack_->NewOrganization();
  std::string token = stack_->NewApp(admin_key, AllScopes()).access_token();
  MysqlOptions database = stack_->data_database_options();
  std::vector<std::string> flags = CommonFlags(database);
  flags.push_back(absl::StrCat("--auth_target=127.0.0.1:", stack_->auth_internal_port()));
  flags.push_back("--shutdown_grace_seconds=1");
  ServerProcess server;
  ASSERT_TRUE(server.Start(CRM_SERVER_BINARY, flags, LogPath("crm_stuck")));
  auto stub = crm::data::v1::CrmService::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", server.port()), grpc::InsecureChannelCredentials()));
  LoadLog warm_up;
  ASSERT_FALSE(CreateLead(*stub, token, warm_up).empty());
  int64_t before = CountRows(stack_->data_pool(), "leads");

  // A call whose insert waits on a lock that outlives the grace period.
  TableLock lock(database, "leads");
  LoadLog log;
  std::thread caller([&] { CreateLead(*stub, token, log, absl::Seconds(60)); });
  ASSERT_TRUE(WaitFor([&] { return SessionsWaitingForTableLock(stack_->data_pool(), database.database) == 1; },
                      absl::Seconds(5)));
  server.Terminate();
  absl::Time signalled = absl::Now();
  std::optional<int> status = server.WaitForExit(absl::Seconds(1 + 5 + 2));
  absl::Duration exit_time = absl::Now() - signalled;
  caller.join();
  ASSERT_TRUE(status.has_value()) << "crm_server did not exit after its grace period; its log:\n" << server.Log();
  ASSERT_EQ(1u, log.calls().size());
  EXPECT_NE(grpc::StatusCode::OK, log.calls()[0].code);

  // NOTE: the insert was sent before the process exited, and MariaDB runs it
  // once the lock is released: an autocommit INSERT waiting on a lock does
  // not notice that its client is gone. The caller saw a failure, so such a
  // write is not acknowledged; a retry with the same request_id does not
  // create a second lead.
  lock.Release();
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_LE(CountRows(stack_->data_pool(), "leads"), before + 1);
  std::cout << "crm SIGTERM with a stuck call: exit " << absl::FormatDuration(exit_time) << " after the signal\n";
}

TEST_F(SigtermTest, CrmServerReportsBufferedApiCallsOnSigterm) {
  std::string admin_key = stack_->NewOrganization();
  crm::auth::v1::CreatePrivateAppResponse app = stack_->NewApp(admin_key, AllScopes());
  std::vector<std::string> flags = CommonFlags(stack_->data_database_options());
  flags.push_back(absl::StrCat("--auth_target=127.0.0.1:", stack_->auth_internal_port()));
  flags.push_back("--shutdown_grace_seconds=2");
  ServerProcess server;
  ASSERT_TRUE(server.Start(CRM_SERVER_BINARY, flags, LogPath("crm_call_log_sigterm")));
  auto stub = crm::data::v1::CrmService::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", server.port()), grpc::InsecureChannelCredentials()));

  // The server reports once a second, so most of these calls are still
  // buffered when the signal arrives.
  constexpr int kCalls = 30;
  for (int i = 0; i < kCalls; ++i) {
    crm::data::v1::GetTokenInfoResponse info;
    ASSERT_TRUE(stub->GetTokenInfo(WithBearerAndDeadline(app.access_token(), absl::Seconds(5)).get(), {}, &info).ok());
  }
  server.Terminate();
  std::optional<int> status = server.WaitForExit(absl::Seconds(2 + 5 + 2));
  ASSERT_TRUE(status.has_value()) << "crm_server did not exit; its log:\n" << server.Log();
  ASSERT_TRUE(WIFEXITED(*status)) << server.Log();
  EXPECT_EQ(0, WEXITSTATUS(*status)) << server.Log();

  crm::auth::v1::ListApiCallsRequest request;
  request.set_app_id(app.private_app().id());
  request.set_page_size(1000);
  crm::auth::v1::ListApiCallsResponse response;
  grpc::Status listed = stack_->apps().ListApiCalls(WithBearer(admin_key).get(), request, &response);
  ASSERT_TRUE(listed.ok()) << listed.error_message();
  EXPECT_EQ(kCalls, response.api_calls_size()) << server.Log();
  for (const crm::auth::v1::ApiCall& call : response.api_calls()) {
    EXPECT_EQ("/crm.data.v1.CrmService/GetTokenInfo", call.method());
    EXPECT_EQ("OK", call.code());
  }
}

TEST_F(SigtermTest, AuthServerDrainsOnSigterm) {
  constexpr int kThreads = 3;
  // Each thread fills organizations of its own, 20 apps each.
  std::vector<std::vector<std::string>> admin_keys(kThreads);
  for (int thread = 0; thread < kThreads; ++thread) {
    // Room for 1,200 apps per thread, far more than 500 ms of load creates.
    for (int i = 0; i < 60; ++i) admin_keys[thread].push_back(stack_->NewOrganization());
  }
  MysqlOptions database = stack_->auth_database_options();
  ServerProcess server;
  std::vector<std::string> flags = CommonFlags(database);
  // The internal port's default, 50053, may be taken by another server.
  flags.push_back("--internal_port=0");
  ASSERT_TRUE(server.Start(AUTH_SERVER_BINARY, flags, LogPath("auth_sigterm")));
  auto stub = crm::auth::v1::PrivateAppService::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", server.port()), grpc::InsecureChannelCredentials()));

  LoadLog log;
  std::vector<int> created(kThreads, 0);
  LoadThreads load(kThreads, [&](int thread) {
    crm::auth::v1::CreatePrivateAppRequest request;
    request.mutable_private_app()->set_display_name(absl::StrCat("App ", created[thread]));
    *request.mutable_private_app()->add_scopes() = MakeScope(MODULE_LEAD, ACTION_READ);
    crm::auth::v1::CreatePrivateAppResponse response;
    const std::string& admin_key = admin_keys[thread][(created[thread] / 20) % admin_keys[thread].size()];
    absl::Time start = absl::Now();
    grpc::Status status =
        stub->CreatePrivateApp(WithBearerAndDeadline(admin_key, absl::Seconds(10)).get(), request, &response);
    log.Record(start, status.error_code(), response.private_app().id());
    if (status.ok()) ++created[thread];
  });
  absl::SleepFor(absl::Milliseconds(500));

  TableLock lock(database, "private_apps");
  ASSERT_TRUE(WaitFor([&] { return SessionsWaitingForTableLock(stack_->auth_pool(), database.database) == kThreads; },
                      absl::Seconds(5)))
      << "the load threads' inserts did not reach the lock";
  server.Terminate();
  absl::Time signalled = absl::Now();
  absl::SleepFor(absl::Seconds(1));
  lock.Release();
  // The auth server's grace period is 10 seconds; draining needs far less.
  std::optional<int> status = server.WaitForExit(absl::Seconds(10 + 2));
  absl::Duration exit_time = absl::Now() - signalled;
  load.Stop();
  ASSERT_TRUE(status.has_value()) << "auth_server did not exit within the grace period; its log:\n" << server.Log();
  ASSERT_TRUE(WIFEXITED(*status)) << server.Log();
  EXPECT_EQ(0, WEXITSTATUS(*status)) << server.Log();

  int in_flight = 0;
  int refused = 0;
  CheckDrain(log, signalled, StoredIds(stack_->auth_pool(), "private_apps"), &in_flight, &refused);
  EXPECT_EQ(kThreads, in_flight);
  EXPECT_GT(refused, 0);
  std::cout << "auth SIGTERM: " << in_flight << " calls in flight completed, " << refused
            << " later calls refused, exit " << absl::FormatDuration(exit_time) << " after the signal, "
            << log.acknowledged().size() << " acknowledged writes all stored\n";
}

}  // namespace
}  // namespace crm::testing
