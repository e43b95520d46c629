// The auth server's invalidation log against the real database. The tests
// cover which changes append entries and with which sequences, and
// CheckToken's sequence. They also cover TokenService.WatchInvalidations:
// entries in order, heartbeats, resuming, reset after the purge, invalid
// positions, an unreadable log, shutdown and two auth servers on one
// database.
#include <cppconn/connection.h>
#include <cppconn/statement.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "crm/auth/v1/token_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {
namespace {

using crm::auth::AuthServer;
using crm::auth::AuthServerOptions;
using crm::auth::v1::ACTION_CREATE;
using crm::auth::v1::ACTION_READ;
using crm::auth::v1::Invalidation;
using crm::auth::v1::MODULE_CONTACT;
using crm::auth::v1::MODULE_LEAD;
using crm::auth::v1::TokenService;
using crm::auth::v1::WatchInvalidationsResponse;

constexpr absl::Duration kWaitLimit = absl::Seconds(5);

// A clock that tests move forward, for the retention period.
class ShiftableClock {
 public:
  absl::Time Now() const { return absl::Now() + absl::Microseconds(shift_micros_.load()); }
  void Advance(absl::Duration by) { shift_micros_ += absl::ToInt64Microseconds(by); }

 private:
  std::atomic<int64_t> shift_micros_{0};
};

// Reads one WatchInvalidations stream on a thread of its own and records
// every message with its arrival time.
class StreamRecorder {
 public:
  struct Received {
    WatchInvalidationsResponse message;
    absl::Time time;
  };

  StreamRecorder(TokenService::Stub& stub, int64_t from_sequence) {
    crm::auth::v1::WatchInvalidationsRequest request;
    request.set_from_sequence(from_sequence);
    reader_ = stub.WatchInvalidations(&context_, request);
    thread_ = std::thread([this] { Run(); });
  }

  ~StreamRecorder() {
    context_.TryCancel();
    thread_.join();
  }

  // Waits until at least `count` messages have arrived and returns all
  // messages so far; fewer when the stream ends or the wait times out.
  std::vector<Received> AwaitMessages(size_t count, absl::Duration timeout = kWaitLimit) {
    absl::MutexLock lock(&mu_);
    auto arrived = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return finished_ || messages_.size() >= count;
    };
    mu_.AwaitWithTimeout(absl::Condition(&arrived), timeout);
    return messages_;
  }

  // Waits until entries up to `sequence` have arrived and returns every
  // entry received so far, in arrival order.
  std::vector<Invalidation> AwaitEntriesThrough(int64_t sequence, absl::Duration timeout = kWaitLimit) {
    absl::MutexLock lock(&mu_);
    auto arrived = [this, sequence]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return finished_ || last_entry_ >= sequence;
    };
    mu_.AwaitWithTimeout(absl::Condition(&arrived), timeout);
    std::vector<Invalidation> entries;
    for (const Received& received : messages_) {
      for (const Invalidation& entry : received.message.invalidations()) entries.push_back(entry);
    }
    return entries;
  }

  // Waits for the end of the stream; DEADLINE_EXCEEDED after `timeout`.
  grpc::Status AwaitEnd(absl::Duration timeout = kWaitLimit) {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(&finished_), timeout)) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "the stream did not end");
    }
    return status_;
  }

 private:
  void Run() {
    WatchInvalidationsResponse message;
    while (reader_->Read(&message)) {
      absl::MutexLock lock(&mu_);
      messages_.push_back({message, absl::Now()});
      if (message.invalidations_size() > 0) {
        last_entry_ = message.invalidations(message.invalidations_size() - 1).sequence();
      }
    }
    grpc::Status status = reader_->Finish();
    absl::MutexLock lock(&mu_);
    status_ = status;
    finished_ = true;
  }

  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<WatchInvalidationsResponse>> reader_;
  std::thread thread_;

  absl::Mutex mu_;
  std::vector<Received> messages_ ABSL_GUARDED_BY(mu_);
  int64_t last_entry_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// An auth server of the test's own, on the stack's auth database and
// secrets, with stubs for both of its services.
struct ExtraAuthServer {
  std::unique_ptr<AuthServer> server;
  std::unique_ptr<crm::auth::v1::PrivateAppService::Stub> apps;
  std::unique_ptr<TokenService::Stub> tokens;
};

class InvalidationLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StackOptions options;
    options.crm_servers = 0;
    absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    admin_key_ = stack_->NewOrganization("Acme");
  }

  void TearDown() override {
    for (auto& extra : servers_) extra->server->Shutdown(absl::Seconds(1));
    servers_.clear();
  }

  // Starts an auth server with `options`, a loopback address and the
  // test's clock. Returns null, failing the test, when it cannot start.
  ExtraAuthServer* StartAuthServer(AuthServerOptions options = {}) {
    options.listen_address = "127.0.0.1:0";
    options.clock = [clock = &clock_] { return clock->Now(); };
    absl::StatusOr<std::unique_ptr<AuthServer>> server =
        AuthServer::Start(options, &stack_->auth_pool(), stack_->secrets());
    if (!server.ok()) {
      ADD_FAILURE() << "cannot start an auth server: " << server.status();
      return nullptr;
    }
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()), grpc::InsecureChannelCredentials());
    auto internal_channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->internal_port()),
                                                grpc::InsecureChannelCredentials());
    servers_.push_back(std::make_unique<ExtraAuthServer>(ExtraAuthServer{*std::move(server),
                                                                         crm::auth::v1::PrivateAppService::NewStub(channel),
                                                                         TokenService::NewStub(internal_channel)}));
    return servers_.back().get();
  }

  crm::auth::v1::CreatePrivateAppResponse NewApp(ExtraAuthServer& via) {
    crm::auth::v1::CreatePrivateAppRequest request;
    request.mutable_private_app()->set_display_name("Invalidated app");
    *request.mutable_private_app()->add_scopes() = MakeScope(MODULE_LEAD, ACTION_READ);
    crm::auth::v1::CreatePrivateAppResponse response;
    grpc::Status status = via.apps->CreatePrivateApp(WithBearer(admin_key_).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  // Each returns the invalidation_sequence of its response, or -1 on error.
  int64_t Rotate(ExtraAuthServer& via, const std::string& app_id) {
    crm::auth::v1::RotateAccessTokenRequest request;
    request.set_id(app_id);
    crm::auth::v1::RotateAccessTokenResponse response;
    grpc::Status status = via.apps->RotateAccessToken(WithBearer(admin_key_).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return status.ok() ? response.invalidation_sequence() : -1;
  }

  int64_t SetScopes(ExtraAuthServer& via, const std::string& app_id,
                    const std::vector<crm::auth::v1::Scope>& scopes) {
    crm::auth::v1::UpdatePrivateAppRequest request;
    request.mutable_private_app()->set_id(app_id);
    for (const crm::auth::v1::Scope& scope : scopes) *request.mutable_private_app()->add_scopes() = scope;
    request.mutable_update_mask()->add_paths("scopes");
    crm::auth::v1::UpdatePrivateAppResponse response;
    grpc::Status status = via.apps->UpdatePrivateApp(WithBearer(admin_key_).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return status.ok() ? response.invalidation_sequence() : -1;
  }

  int64_t Delete(ExtraAuthServer& via, const std::string& app_id) {
    crm::auth::v1::DeletePrivateAppRequest request;
    request.set_id(app_id);
    crm::auth::v1::DeletePrivateAppResponse response;
    grpc::Status status = via.apps->DeletePrivateApp(WithBearer(admin_key_).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return status.ok() ? response.invalidation_sequence() : -1;
  }

  // Rotates a fresh app's token `count` times and returns the sequences.
  std::vector<int64_t> AppendEntries(ExtraAuthServer& via, int count) {
    std::string app_id = NewApp(via).private_app().id();
    std::vector<int64_t> sequences;
    for (int i = 0; i < count; ++i) sequences.push_back(Rotate(via, app_id));
    return sequences;
  }

  grpc::Status CheckToken(ExtraAuthServer& via, const std::string& token,
                          crm::auth::v1::CheckTokenResponse* response) {
    crm::auth::v1::CheckTokenRequest request;
    request.set_token(token);
    return via.tokens->CheckToken(WithBearer("").get(), request, response);
  }

  void ExecuteSql(const std::string& statement_text) {
    absl::Status status = stack_->auth_pool().Run("test statement", [&](sql::Connection& connection) {
      std::unique_ptr<sql::Statement> statement(connection.createStatement());
      statement->execute(statement_text);
      return absl::OkStatus();
    });
    ASSERT_TRUE(status.ok()) << status;
  }

  std::unique_ptr<TestStack> stack_;
  std::string admin_key_;
  ShiftableClock clock_;
  std::vector<std::unique_ptr<ExtraAuthServer>> servers_;
};

// Opens a stream from `from_sequence`, reads it to the end and returns its
// status; DEADLINE_EXCEEDED when it is still open after 5 seconds.
grpc::Status FinishStatus(TokenService::Stub& stub, int64_t from_sequence) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  crm::auth::v1::WatchInvalidationsRequest request;
  request.set_from_sequence(from_sequence);
  std::unique_ptr<grpc::ClientReader<WatchInvalidationsResponse>> reader = stub.WatchInvalidations(&context, request);
  WatchInvalidationsResponse message;
  while (reader->Read(&message)) {
  }
  return reader->Finish();
}

TEST_F(InvalidationLogTest, ChangesReturnConsecutiveSequences) {
  ExtraAuthServer* auth_server = StartAuthServer();
  ASSERT_NE(nullptr, auth_server);
  ExtraAuthServer& auth = *auth_server;
  // A fresh log starts at 1. The first entry also gives the stream below a
  // position before the changes, because from_sequence 0 means the end.
  int64_t first = AppendEntries(auth, 1).back();
  EXPECT_EQ(1, first);
  auto app = NewApp(auth);
  const std::string& app_id = app.private_app().id();

  int64_t rotated = Rotate(auth, app_id);
  int64_t scoped = SetScopes(auth, app_id, {MakeScope(MODULE_CONTACT, ACTION_READ)});
  int64_t deleted = Delete(auth, app_id);

  EXPECT_EQ(first + 1, rotated);
  EXPECT_EQ(first + 2, scoped);
  EXPECT_EQ(first + 3, deleted);

  StreamRecorder stream(*auth.tokens, first);
  std::vector<Invalidation> entries = stream.AwaitEntriesThrough(deleted);
  ASSERT_EQ(3u, entries.size());
  EXPECT_EQ(crm::auth::v1::INVALIDATION_REASON_TOKEN_ROTATED, entries[0].reason());
  EXPECT_EQ(crm::auth::v1::INVALIDATION_REASON_SCOPES_CHANGED, entries[1].reason());
  EXPECT_EQ(crm::auth::v1::INVALIDATION_REASON_APP_DELETED, entries[2].reason());
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(rotated + static_cast<int64_t>(i), entries[i].sequence());
    EXPECT_EQ(app_id, entries[i].app_id());
    EXPECT_EQ(app.private_app().organization_id(), entries[i].organization_id());
  }
}

TEST_F(InvalidationLogTest, UpdatesWithoutScopeChangeAppendNothing) {
  ExtraAuthServer* auth_server = StartAuthServer();
  ASSERT_NE(nullptr, auth_server);
  ExtraAuthServer& auth = *auth_server;
  auto app = NewApp(auth);
  const std::string& app_id = app.private_app().id();
  int64_t before = Rotate(auth, app_id);

  crm::auth::v1::UpdatePrivateAppRequest rename;
  rename.mutable_private_app()->set_id(app_id);
  rename.mutable_private_app()->set_display_name("Renamed");
  rename.mutable_private_app()->set_description("Only the name and description change");
  rename.mutable_update_mask()->add_paths("display_name");
  rename.mutable_update_mask()->add_paths("description");
  crm::auth::v1::UpdatePrivateAppResponse renamed;
  ASSERT_TRUE(auth.apps->UpdatePrivateApp(WithBearer(admin_key_).get(), rename, &renamed).ok());
  EXPECT_EQ(0, renamed.invalidation_sequence());

  // The same scope set again is no change either.
  EXPECT_EQ(0, SetScopes(auth, app_id, {MakeScope(MODULE_LEAD, ACTION_READ)}));

  EXPECT_EQ(before + 1, Rotate(auth, app_id));
}

TEST_F(InvalidationLogTest, CheckTokenReturnsLatestSequence) {
  ExtraAuthServer* auth_server = StartAuthServer();
  ASSERT_NE(nullptr, auth_server);
  ExtraAuthServer& auth = *auth_server;
  auto checked = NewApp(auth);
  auto other = NewApp(auth);

  crm::auth::v1::CheckTokenResponse response;
  ASSERT_TRUE(CheckToken(auth, checked.access_token(), &response).ok());
  EXPECT_EQ(0, response.invalidation_sequence());

  // Entries of other apps count too, because the claims reflect the whole
  // log.
  int64_t first = Rotate(auth, other.private_app().id());
  int64_t second = SetScopes(auth, other.private_app().id(), {MakeScope(MODULE_LEAD, ACTION_CREATE)});
  ASSERT_TRUE(CheckToken(auth, checked.access_token(), &response).ok());
  EXPECT_EQ(second, response.invalidation_sequence());
  EXPECT_EQ(first + 1, second);

  int64_t own = SetScopes(auth, checked.private_app().id(), {MakeScope(MODULE_CONTACT, ACTION_READ)});
  ASSERT_TRUE(CheckToken(auth, checked.access_token(), &response).ok());
  EXPECT_EQ(own, response.invalidation_sequence());
  ASSERT_EQ(1, response.scopes_size());
  EXPECT_EQ(MODULE_CONTACT, response.scopes(0).module());
}

TEST_F(InvalidationLogTest, StreamSendsNewEntriesInOrder) {
  ExtraAuthServer* auth_server = StartAuthServer();
  ASSERT_NE(nullptr, auth_server);
  ExtraAuthServer& auth = *auth_server;
  std::vector<int64_t> earlier = AppendEntries(auth, 2);

  StreamRecorder stream(*auth.tokens, 0);
  std::vector<StreamRecorder::Received> first = stream.AwaitMessages(1);
  ASSERT_GE(first.size(), 1u);
  EXPECT_EQ(0, first[0].message.invalidations_size());
  EXPECT_EQ(earlier.back(), first[0].message.latest_sequence());
  EXPECT_FALSE(first[0].message.reset());

  std::vector<int64_t> later = AppendEntries(auth, 5);
  std::vector<Invalidation> entries = stream.AwaitEntriesThrough(later.back());
  ASSERT_EQ(later.size(), entries.size());
  for (size_t i = 0; i < later.size(); ++i) EXPECT_EQ(later[i], entries[i].sequence());

  for (const StreamRecorder::Received& received : stream.AwaitMessages(0)) {
    const WatchInvalidationsResponse& message = received.message;
    if (message.invalidations_size() == 0) continue;
    EXPECT_GE(message.latest_sequence(), message.invalidations(message.invalidations_size() - 1).sequence());
  }
}

TEST_F(InvalidationLogTest, StreamSendsHeartbeats) {
  AuthServerOptions options;
  options.invalidation_heartbeat_interval = absl::Milliseconds(200);
  ExtraAuthServer* auth_server = StartAuthServer(options);
  ASSERT_NE(nullptr, auth_server);
  ExtraAuthServer& auth = *auth_server;
  int64_t latest = AppendEntries(auth, 1).back();

  StreamRecorder stream(*auth.tokens, 0);
  std::vector<StreamRecorder::Received> messages = stream.AwaitMessages(6);
  ASSERT_EQ(6u, messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    EXPECT_EQ(0, messages[i].message.invalidations_size()) << "message " << i;
    EXPECT_EQ(latest, messages[i].message.latest_sequence()) << "message " << i;
    if (i == 0) continue;
    // Each heartbeat comes within the interval; the margin absorbs
    // scheduling delays on a loaded machine.
    absl::Duration gap = messages[i].time - messages[i - 1].time;
    EXPECT_LT(gap, absl::Milliseconds(200 + 100)) << "message " << i;
  }
}

TEST_F(InvalidationLogTest, StreamResumesFromMiddle) {
  ExtraAuthServer* auth_server = StartAuthServer();
  ASSERT_NE(nullptr, auth_server);
  ExtraAuthServer& auth = *auth_server;
  std::vector<int64_t> sequences = AppendEntries(auth, 5);

  StreamRecorder stream(*auth.tokens, sequences[1]);
  std::vector<StreamRecorder::Received> first = stream.AwaitMessages(1);
  ASSERT_GE(first.size(), 1u);
  const WatchInvalidationsResponse& message = first[0].message;
  EXPECT_FALSE(message.reset());
  EXPECT_EQ(sequences.back(), message.latest_sequence());
  ASSERT_EQ(3, message.invalidations_size());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(sequences[i + 2], message.invalidations(i).sequence());
}

TEST_F(InvalidationLogTest, StreamBehindWindowReadsDatabase) {
  AuthServerOptions options;
  options.invalidation_window_entries = 2;
  ExtraAuthServer* auth_server = StartAuthServer(options);
  ASSERT_NE(nullptr, auth_server);
  ExtraAuthServer& auth = *auth_server;
  std::vector<int64_t> sequences = AppendEntries(auth, 6);

  StreamRecorder stream(*auth.tokens, sequences[0]);
  std::vector<Invalidation> entries = stream.AwaitEntriesThrough(sequences.back());
  ASSERT_EQ(5u, entries.size());
  for (size_t i = 0; i < entries.size(); ++i) EXPECT_EQ(sequences[i + 1], entries[i].sequence());

  // Entries committed after the catch-up arrive through the window.
  int64_t next = AppendEntries(auth, 1).back();
  entries = stream.AwaitEntriesThrough(next);
  ASSERT_EQ(6u, entries.size());
  EXPECT_EQ(next, entries.back().sequence());
}

TEST_F(InvalidationLogTest, PurgedPositionGetsReset) {
  AuthServerOptions options;
  options.invalidation_retention = absl::Hours(1);
  options.invalidation_purge_interval = absl::Hours(1);  // The test purges.
  ExtraAuthServer* auth_server = StartAuthServer(options);
  ASSERT_NE(nullptr, auth_server);
  ExtraAuthServer& auth = *auth_server;
  std::vector<int64_t> old_entries = AppendEntries(auth, 3);
  clock_.Advance(absl::Hours(2));
  std::vector<int64_t> new_entries = AppendEntries(auth, 2);

  absl::StatusOr<int> purged = auth.server->PurgeInvalidationLog();
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(3, *purged);

  // Position 1 needs entries 2 and 3, which are gone.
  StreamRecorder reset(*auth.tokens, old_entries[0]);
  std::vector<StreamRecorder::Received> messages = reset.AwaitMessages(1);
  ASSERT_GE(messages.size(), 1u);
  EXPECT_TRUE(messages[0].message.reset());
  EXPECT_EQ(new_entries.back(), messages[0].message.latest_sequence());
  EXPECT_EQ(0, messages[0].message.invalidations_size());

  // Position 3 needs only retained entries.
  StreamRecorder kept(*auth.tokens, old_entries.back());
  messages = kept.AwaitMessages(1);
  ASSERT_GE(messages.size(), 1u);
  EXPECT_FALSE(messages[0].message.reset());
  ASSERT_EQ(2, messages[0].message.invalidations_size());
  EXPECT_EQ(new_entries[0], messages[0].message.invalidations(0).sequence());
}

TEST_F(InvalidationLogTest, InvalidPositionsAreRejected) {
  ExtraAuthServer* auth_server = StartAuthServer();
  ASSERT_NE(nullptr, auth_server);
  ExtraAuthServer& auth = *auth_server;
  int64_t latest = AppendEntries(auth, 2).back();

  grpc::Status negative = FinishStatus(*auth.tokens, -1);
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, negative.error_code()) << negative.error_message();
  grpc::Status ahead = FinishStatus(*auth.tokens, latest + 1);
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, ahead.error_code()) << ahead.error_message();
}

TEST_F(InvalidationLogTest, ChangeThroughOneServerReachesAnother) {
  ExtraAuthServer* first_server = StartAuthServer();
  ASSERT_NE(nullptr, first_server);
  ExtraAuthServer& first = *first_server;
  auto app = NewApp(first);
  std::vector<int64_t> before_start = {Rotate(first, app.private_app().id()), Rotate(first, app.private_app().id())};
  ExtraAuthServer* second_server = StartAuthServer();
  ASSERT_NE(nullptr, second_server);
  ExtraAuthServer& second = *second_server;

  // The second server's window starts empty at its start-up, so this
  // position is served from the database.
  StreamRecorder resumed(*second.tokens, before_start[0]);
  std::vector<Invalidation> entries = resumed.AwaitEntriesThrough(before_start[1]);
  ASSERT_EQ(1u, entries.size());
  EXPECT_EQ(before_start[1], entries[0].sequence());

  StreamRecorder stream(*second.tokens, 0);
  ASSERT_GE(stream.AwaitMessages(1).size(), 1u);
  absl::Time start = absl::Now();
  int64_t sequence = Rotate(first, app.private_app().id());
  entries = stream.AwaitEntriesThrough(sequence);
  absl::Duration latency = absl::Now() - start;

  ASSERT_EQ(1u, entries.size());
  EXPECT_EQ(sequence, entries[0].sequence());
  EXPECT_EQ(app.private_app().id(), entries[0].app_id());
  // Within a few 20 ms poll intervals; the bound leaves room for a loaded
  // machine.
  EXPECT_LT(latency, absl::Seconds(1));

  entries = resumed.AwaitEntriesThrough(sequence);
  ASSERT_EQ(2u, entries.size());
  EXPECT_EQ(sequence, entries[1].sequence());
}

TEST_F(InvalidationLogTest, PositionNotYetReadLocallyIsValid) {
  ExtraAuthServer* writer_server = StartAuthServer();
  ASSERT_NE(nullptr, writer_server);
  ExtraAuthServer& writer = *writer_server;
  // This server reads the log only every 900 ms, so it has not read the
  // writer's change when the stream opens.
  AuthServerOptions slow;
  slow.invalidation_poll_interval = absl::Milliseconds(900);
  ExtraAuthServer* reader_server = StartAuthServer(slow);
  ASSERT_NE(nullptr, reader_server);
  ExtraAuthServer& reader = *reader_server;

  int64_t sequence = AppendEntries(writer, 1).back();
  StreamRecorder stream(*reader.tokens, sequence);
  std::vector<StreamRecorder::Received> messages = stream.AwaitMessages(1);
  ASSERT_GE(messages.size(), 1u);
  EXPECT_EQ(sequence, messages[0].message.latest_sequence());
  EXPECT_FALSE(messages[0].message.reset());
  EXPECT_EQ(grpc::StatusCode::DEADLINE_EXCEEDED, stream.AwaitEnd(absl::Milliseconds(200)).error_code());
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, FinishStatus(*reader.tokens, sequence + 1).error_code());
}

TEST_F(InvalidationLogTest, UnreadableLogStopsHeartbeats) {
  AuthServerOptions options;
  options.invalidation_heartbeat_interval = absl::Milliseconds(200);
  ExtraAuthServer* auth_server = StartAuthServer(options);
  ASSERT_NE(nullptr, auth_server);
  ExtraAuthServer& auth = *auth_server;
  int64_t latest = AppendEntries(auth, 1).back();
  StreamRecorder stream(*auth.tokens, 0);
  ASSERT_GE(stream.AwaitMessages(2).size(), 2u);

  // Hiding the table makes every read of the log fail, as an unreachable
  // database would.
  ExecuteSql("RENAME TABLE invalidation_log TO invalidation_log_hidden");
  absl::SleepFor(absl::Milliseconds(300));  // Lets a message already in flight arrive.
  size_t before = stream.AwaitMessages(0).size();
  absl::SleepFor(absl::Seconds(1));
  EXPECT_EQ(before, stream.AwaitMessages(0).size()) << "heartbeats continued while the log was unreadable";
  grpc::Status refused = FinishStatus(*auth.tokens, 0);
  EXPECT_EQ(grpc::StatusCode::UNAVAILABLE, refused.error_code()) << refused.error_message();

  ExecuteSql("RENAME TABLE invalidation_log_hidden TO invalidation_log");
  std::vector<StreamRecorder::Received> messages = stream.AwaitMessages(before + 1);
  ASSERT_GT(messages.size(), before) << "heartbeats did not resume";
  EXPECT_EQ(latest, messages[before].message.latest_sequence());
}

TEST_F(InvalidationLogTest, ShutdownEndsStreamsPromptly) {
  ExtraAuthServer* auth_server = StartAuthServer();
  ASSERT_NE(nullptr, auth_server);
  ExtraAuthServer& auth = *auth_server;
  StreamRecorder first(*auth.tokens, 0);
  StreamRecorder second(*auth.tokens, 0);
  ASSERT_GE(first.AwaitMessages(1).size(), 1u);
  ASSERT_GE(second.AwaitMessages(1).size(), 1u);

  absl::Time start = absl::Now();
  auth.server->Shutdown(absl::Seconds(10));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(grpc::StatusCode::UNAVAILABLE, first.AwaitEnd().error_code());
  EXPECT_EQ(grpc::StatusCode::UNAVAILABLE, second.AwaitEnd().error_code());
}

}  // namespace
}  // namespace crm::testing
