// Tests of our concurrent code with many threads at once: the worker pool,
// the token cache and caching checker, and the invalidation watcher fed by
// a fake TokenService over a loopback gRPC connection. They check results
// that must hold whatever the interleaving, never timing, and are the
// tests the tsan preset runs under ThreadSanitizer.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/periodic_task.h"
#include "common/token.h"
#include "common/worker_pool.h"
#include "gtest/gtest.h"
#include "services/crm/api_call_log.h"
#include "services/crm/caching_token_checker.h"
#include "services/crm/invalidation_watcher.h"
#include "services/crm/token_cache.h"

namespace crm {
namespace {

// A gate that test threads wait on until the test opens it. It uses the
// standard library, not abseil, so that ThreadSanitizer tracks its
// synchronization even without the abseil annotations.
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

// Polls `condition` until it is true or `timeout` passes. The timeout only
// keeps a broken build from hanging.
template <typename Condition>
bool Eventually(Condition condition, absl::Duration timeout = absl::Seconds(60)) {
  absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

TEST(WorkerPoolConcurrency, RunsEveryAcceptedTaskOnce) {
  constexpr int kSubmitters = 4;
  constexpr int kTasksEach = 500;
  std::atomic<int> accepted{0};
  std::atomic<int> ran{0};
  std::vector<int> runs_per_task(kSubmitters * kTasksEach, 0);
  {
    WorkerPool pool(3, 64);
    std::vector<std::thread> submitters;
    for (int s = 0; s < kSubmitters; ++s) {
      submitters.emplace_back([&, s] {
        for (int i = 0; i < kTasksEach; ++i) {
          int task = s * kTasksEach + i;
          // Each task writes its own slot, so only the pool's hand-over
          // orders these writes with the reads below.
          if (pool.TrySubmit([&, task] {
                ++runs_per_task[task];
                ran.fetch_add(1);
              })) {
            accepted.fetch_add(1);
          }
        }
      });
    }
    for (std::thread& submitter : submitters) submitter.join();
  }  // The destructor runs what is queued, then joins the workers.

  EXPECT_EQ(accepted.load(), ran.load());
  int ran_once = 0;
  for (int runs : runs_per_task) {
    EXPECT_LE(runs, 1);
    ran_once += runs;
  }
  EXPECT_EQ(accepted.load(), ran_once);
}

TEST(WorkerPoolConcurrency, FullQueueRejectsAndDrainsOnDestruction) {
  Gate started;
  Gate release;
  std::atomic<int> ran{0};
  {
    WorkerPool pool(1, 2);
    ASSERT_TRUE(pool.TrySubmit([&] {
      started.Open();
      release.Wait();
      ran.fetch_add(1);
    }));
    started.Wait();  // The only worker is busy and the queue is empty.
    EXPECT_TRUE(pool.TrySubmit([&] { ran.fetch_add(1); }));
    EXPECT_TRUE(pool.TrySubmit([&] { ran.fetch_add(1); }));
    EXPECT_FALSE(pool.TrySubmit([&] { ran.fetch_add(1); })) << "the queue holds two tasks";
    EXPECT_EQ(2u, pool.QueueDepth());
    release.Open();
  }
  EXPECT_EQ(3, ran.load());
}

}  // namespace

namespace data {
namespace {

Claims ClaimsFor(uint64_t app_id, int64_t sequence) {
  Claims claims;
  claims.organization_id = 1;
  claims.app_id = app_id;
  claims.scopes = 0xF;
  claims.invalidation_sequence = sequence;
  return claims;
}

constexpr int kApps = 8;
constexpr int kDigestsPerApp = 16;

// Digest number d belongs to app d % kApps + 1.
std::string DigestNumber(int d) { return Sha256(absl::StrCat("token ", d)); }
uint64_t AppOfDigest(int d) { return d % kApps + 1; }

// Writers insert answers read at the last applied sequence while one thread
// applies invalidations. Afterwards no answer read before an app's last
// invalidation may remain, whatever the interleaving.
TEST(TokenCacheConcurrency, NoAnswerOutlivesItsInvalidation) {
  constexpr int kInvalidations = 400;
  TokenCache cache(TokenCacheOptions{.max_entries = 64, .remembered_invalidations = 1024});
  std::atomic<int64_t> applied{0};
  std::atomic<bool> done{false};
  std::vector<int64_t> last_invalidation(kApps + 1, 0);

  std::vector<std::thread> threads;
  for (int w = 0; w < 3; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; !done.load(); ++i) {
        int d = (i * 7 + w) % (kApps * kDigestsPerApp);
        cache.Insert(DigestNumber(d), ClaimsFor(AppOfDigest(d), applied.load()));
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; !done.load(); ++i) {
      int d = i % (kApps * kDigestsPerApp);
      if (std::optional<Claims> claims = cache.Lookup(DigestNumber(d))) {
        EXPECT_EQ(AppOfDigest(d), claims->app_id);
      }
      EXPECT_LE(cache.Size(), 64u);
    }
  });
  for (int sequence = 1; sequence <= kInvalidations; ++sequence) {
    uint64_t app = sequence % kApps + 1;
    cache.Invalidate(app, sequence);
    last_invalidation[app] = sequence;
    applied.store(sequence);
  }
  done.store(true);
  for (std::thread& thread : threads) thread.join();

  for (int d = 0; d < kApps * kDigestsPerApp; ++d) {
    if (std::optional<Claims> claims = cache.Lookup(DigestNumber(d))) {
      EXPECT_GE(claims->invalidation_sequence, last_invalidation[claims->app_id])
          << "an answer for app " << claims->app_id << " survived a later invalidation";
    }
  }
  EXPECT_LE(cache.Size(), 64u);
}

// A remote checker that answers each call on a thread of its own, as the
// gRPC client does, with the app of the token and the current sequence.
class ThreadedRemote : public TokenChecker {
 public:
  explicit ThreadedRemote(std::atomic<int64_t>* sequence) : sequence_(sequence) {}
  ~ThreadedRemote() override { JoinAnswers(); }

  // Waits until every answer has been delivered. The caching checker that
  // receives them must outlive this call.
  void JoinAnswers() {
    std::lock_guard<std::mutex> lock(mu_);
    for (std::thread& thread : threads_) thread.join();
    threads_.clear();
  }

  void Check(const std::string& token, absl::Time deadline, Callback done) override {
    calls_.fetch_add(1);
    uint64_t app = static_cast<unsigned char>(token.back()) % kApps + 1;
    int64_t sequence = sequence_->load();
    std::lock_guard<std::mutex> lock(mu_);
    threads_.emplace_back([done = std::move(done), app, sequence] { done(ClaimsFor(app, sequence)); });
  }

  int calls() const { return calls_.load(); }

 private:
  std::atomic<int64_t>* const sequence_;
  std::atomic<int> calls_{0};
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

TEST(CachingTokenCheckerConcurrency, EveryCheckAnsweredOnce) {
  constexpr int kCallers = 4;
  constexpr int kChecksEach = 200;
  std::vector<std::string> tokens;
  for (int i = 0; i < 16; ++i) tokens.push_back(GenerateToken(TokenKind::kAppToken, RandomBytes));

  std::atomic<int64_t> sequence{0};
  TokenCache cache(TokenCacheOptions{});
  std::atomic<int> answers{0};
  std::atomic<int> wrong_app{0};
  {
    ThreadedRemote remote(&sequence);
    CachingTokenChecker checker(&remote, &cache, [] { return true; });
    std::vector<std::thread> callers;
    for (int c = 0; c < kCallers; ++c) {
      callers.emplace_back([&, c] {
        for (int i = 0; i < kChecksEach; ++i) {
          const std::string& token = tokens[(i + c) % tokens.size()];
          uint64_t app = static_cast<unsigned char>(token.back()) % kApps + 1;
          checker.Check(token, absl::InfiniteFuture(), [&, app](absl::StatusOr<Claims> claims) {
            answers.fetch_add(1);
            if (claims.ok() && claims->app_id != app) wrong_app.fetch_add(1);
          });
        }
      });
    }
    std::thread invalidator([&] {
      for (int s = 1; s <= 200; ++s) {
        cache.Invalidate(s % kApps + 1, s);
        sequence.store(s);
      }
    });
    for (std::thread& caller : callers) caller.join();
    invalidator.join();
    remote.JoinAnswers();
  }
  EXPECT_EQ(kCallers * kChecksEach, answers.load());
  EXPECT_EQ(0, wrong_app.load());
}

// A TokenService that streams a scripted invalidation log in batches, with
// one entry per sequence for app sequence % kApps + 1. It ends every stream
// after `entries_per_stream` entries, so the watcher must reconnect and
// resume.
class FakeTokenService final : public crm::auth::v1::TokenService::Service {
 public:
  FakeTokenService(int64_t last_sequence, int64_t entries_per_stream)
      : last_sequence_(last_sequence), entries_per_stream_(entries_per_stream) {}

  grpc::Status WatchInvalidations(grpc::ServerContext* context,
                                  const crm::auth::v1::WatchInvalidationsRequest* request,
                                  grpc::ServerWriter<crm::auth::v1::WatchInvalidationsResponse>* writer) override {
    streams_.fetch_add(1);
    int64_t position = request->from_sequence();
    crm::auth::v1::WatchInvalidationsResponse response;
    response.set_latest_sequence(position);
    if (!writer->Write(response)) return grpc::Status::CANCELLED;

    int64_t sent = 0;
    while (!context->IsCancelled()) {
      response.Clear();
      for (int i = 0; i < 5 && position < last_sequence_ && sent < entries_per_stream_; ++i, ++sent) {
        ++position;
        crm::auth::v1::Invalidation* entry = response.add_invalidations();
        entry->set_sequence(position);
        entry->set_app_id(absl::StrCat(position % kApps + 1));
        entry->set_organization_id("1");
      }
      // The log grows as the stream goes, so the watcher stays current.
      response.set_latest_sequence(position);
      if (!writer->Write(response)) return grpc::Status::CANCELLED;
      if (sent == entries_per_stream_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "scripted disconnect");
      absl::SleepFor(absl::Milliseconds(2));
    }
    return grpc::Status::CANCELLED;
  }

  int streams() const { return streams_.load(); }

 private:
  const int64_t last_sequence_;
  const int64_t entries_per_stream_;
  std::atomic<int> streams_{0};
};

// The watcher applies the log while checks read and fill the cache on
// other threads. It reconnects after each scripted disconnect, and in the
// end the whole log is applied and no cached result predates its app's last
// invalidation.
TEST(InvalidationWatcherConcurrency, AppliesWholeLogWhileCacheInUse) {
  constexpr int64_t kLastSequence = 300;
  FakeTokenService service(kLastSequence, 120);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(nullptr, server);

  TokenCache cache(TokenCacheOptions{.max_entries = 64, .remembered_invalidations = 1024});
  std::atomic<bool> done{false};
  {
    InvalidationWatcher watcher(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()), &cache,
        InvalidationWatcherOptions{.initial_backoff = absl::Milliseconds(10), .max_backoff = absl::Milliseconds(50)});
    watcher.Start();

    std::vector<std::thread> users;
    for (int u = 0; u < 2; ++u) {
      users.emplace_back([&, u] {
        for (int i = 0; !done.load(); ++i) {
          int d = (i * 5 + u) % (kApps * kDigestsPerApp);
          if (watcher.IsCurrent()) cache.Insert(DigestNumber(d), ClaimsFor(AppOfDigest(d), watcher.AppliedSequence()));
          cache.Lookup(DigestNumber(d));
          watcher.State();
        }
      });
    }
    bool applied = Eventually([&] { return watcher.AppliedSequence() == kLastSequence; });
    done.store(true);
    for (std::thread& user : users) user.join();
    ASSERT_TRUE(applied) << "applied only up to " << watcher.AppliedSequence();
    EXPECT_GE(service.streams(), 3) << "the log needs three streams at 120 entries each";
    EXPECT_EQ(kLastSequence, watcher.LatestSequence());
  }  // The watcher cancels its stream and joins its threads.
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));

  for (int d = 0; d < kApps * kDigestsPerApp; ++d) {
    if (std::optional<Claims> claims = cache.Lookup(DigestNumber(d))) {
      // App a was last invalidated at the largest sequence s with s % kApps == a - 1.
      int64_t last = kLastSequence - (kLastSequence - static_cast<int64_t>(claims->app_id - 1)) % kApps;
      EXPECT_GE(claims->invalidation_sequence, last) << "an answer for app " << claims->app_id
                                                     << " survived a later invalidation";
    }
  }
}

TEST(PeriodicTaskConcurrency, WakeRunsTaskAndStopEndsIt) {
  std::atomic<int> runs{0};
  // The interval never ends during the test, so only Wake() runs the task.
  PeriodicTask task(absl::Hours(1), [&runs] { runs.fetch_add(1); });
  task.Start();
  task.Wake();
  ASSERT_TRUE(Eventually([&] { return runs.load() == 1; })) << "Wake() did not run the task";
  task.Stop();
  task.Wake();
  task.Stop();
  EXPECT_EQ(1, runs.load());
}

// Calls recorded from many threads while reports to an unreachable auth
// service fail and put their calls back: none is lost or counted twice.
TEST(ApiCallRecorderConcurrency, FailedFlushesLoseNoCall) {
  auto channel = grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  ApiCallRecorder recorder(channel, absl::ZeroDuration());
  constexpr int kThreads = 8;
  constexpr int kCallsPerThread = 2000;

  std::atomic<bool> recording{true};
  std::thread flusher([&] {
    while (recording.load()) {
      // An empty buffer flushes OK without a request.
      absl::Status status = recorder.Flush(absl::Milliseconds(50));
      if (!status.ok()) {
        EXPECT_EQ(absl::StatusCode::kUnavailable, status.code()) << status;
      }
    }
  });

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&recorder] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        recorder.Record({.organization_id = 1,
                         .app_id = 2,
                         .method = "/crm.data.v1.CrmService/GetLead",
                         .code = 0,
                         .call_time = absl::Now(),
                         .latency = absl::Microseconds(i),
                         .peer_address = "127.0.0.1"});
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  recording.store(false);
  flusher.join();

  EXPECT_EQ(absl::StatusCode::kUnavailable, recorder.Flush(absl::Milliseconds(50)).code());
  EXPECT_EQ(static_cast<size_t>(kThreads * kCallsPerThread), recorder.buffered());
  EXPECT_EQ(0, recorder.dropped());
  EXPECT_EQ(0, recorder.reported());
}

}  // namespace
}  // namespace data
}  // namespace crm
