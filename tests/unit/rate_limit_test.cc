// The rate limit arithmetic (common/rate_limit.h) and the CRM server's
// RateLimiter against a fake quota source and a fake clock.
#include "common/rate_limit.h"

#include <optional>
#include <vector>

#include "common/error_details.h"
#include "gtest/gtest.h"
#include "services/crm/rate_limiter.h"

namespace crm {
namespace {

using crm::QuotaBlock;
using crm::data::QuotaSource;
using crm::data::RateLimiter;

const absl::Time kMidday = absl::FromUnixSeconds(1767225600 + 12 * 3600);  // 2026-01-01 12:00:00 UTC

TEST(BurstWindow, StartsAtMultiplesOfTenSeconds) {
  EXPECT_EQ(BurstWindowStart(absl::FromUnixSeconds(1000)), 1000);
  EXPECT_EQ(BurstWindowStart(absl::FromUnixSeconds(1009) + absl::Milliseconds(999)), 1000);
  EXPECT_EQ(BurstWindowStart(absl::FromUnixSeconds(1010)), 1010);
  EXPECT_EQ(BurstWindowStart(absl::FromUnixSeconds(-1)), -10);
}

TEST(BurstWindow, RemainingEndsAtNextBoundary) {
  EXPECT_EQ(BurstWindowRemaining(absl::FromUnixSeconds(1000)), absl::Seconds(10));
  EXPECT_EQ(BurstWindowRemaining(absl::FromUnixSeconds(1003) + absl::Milliseconds(250)),
            absl::Seconds(6) + absl::Milliseconds(750));
  EXPECT_EQ(BurstWindowRemaining(absl::FromUnixSeconds(1010) - absl::Nanoseconds(1)), absl::Nanoseconds(1));
}

TEST(Day, StartsAtUtcMidnight) {
  EXPECT_EQ(DayStart(kMidday), 1767225600);
  EXPECT_EQ(DayRemaining(kMidday), absl::Hours(12));
  EXPECT_EQ(DayStart(absl::FromUnixSeconds(1767225600)), 1767225600);
  EXPECT_EQ(DayRemaining(absl::FromUnixSeconds(1767225600)), absl::Hours(24));
}

TEST(QuotaBlockSize, TwentiethOfSmallerLimitAtLeastOne) {
  EXPECT_EQ(QuotaBlockSize(100, 250000), 5);
  EXPECT_EQ(QuotaBlockSize(100000, 1000), 50);
  EXPECT_EQ(QuotaBlockSize(39, 250000), 1);
  EXPECT_EQ(QuotaBlockSize(1, 1), 1);
}

TEST(ComputeQuotaGrant, GrantsWhatBothLimitsLeave) {
  struct Case {
    const char* name;
    int64_t block;
    int64_t window_used;
    int64_t burst_limit;
    int64_t day_used;
    int64_t daily_limit;
    int64_t expected_calls;
    QuotaLimitKind expected_limit;
  };
  const Case cases[] = {
      {"whole block when room is left", 5, 10, 100, 1000, 250000, 5, QuotaLimitKind::kNone},
      {"partial block near the burst limit", 5, 97, 100, 1000, 250000, 3, QuotaLimitKind::kBurst},
      {"partial block near the daily limit", 5, 0, 100, 249998, 250000, 2, QuotaLimitKind::kDaily},
      {"nothing at the burst limit names burst", 5, 100, 100, 1000, 250000, 0, QuotaLimitKind::kBurst},
      {"lowered limit below usage grants nothing", 1, 50, 10, 500, 100, 0, QuotaLimitKind::kDaily},
  };
  for (const Case& c : cases) {
    QuotaGrant grant = ComputeQuotaGrant(c.block, c.window_used, c.burst_limit, c.day_used, c.daily_limit);
    EXPECT_EQ(grant.granted_calls, c.expected_calls) << c.name;
    EXPECT_EQ(grant.limit_reached, c.expected_limit) << c.name;
  }
}

// A quota source whose requests the test completes by hand.
class FakeQuotaSource : public QuotaSource {
 public:
  void Acquire(uint64_t organization_id, uint64_t app_id, int64_t max_calls, Callback done) override {
    requests.push_back(Pending{organization_id, app_id, max_calls, std::move(done)});
  }

  // Completes the oldest open request with `block`.
  void Complete(absl::StatusOr<QuotaBlock> block) {
    ASSERT_FALSE(requests.empty());
    Pending pending = std::move(requests.front());
    requests.erase(requests.begin());
    pending.done(std::move(block));
  }

  struct Pending {
    uint64_t organization_id;
    uint64_t app_id;
    int64_t max_calls;
    Callback done;
  };
  std::vector<Pending> requests;
};

QuotaBlock Block(int64_t granted, QuotaLimitKind limit_reached = QuotaLimitKind::kNone) {
  QuotaBlock block;
  block.granted_calls = granted;
  block.limit_reached = limit_reached;
  block.window_remaining = absl::Seconds(4);
  block.day_remaining = absl::Hours(3);
  block.burst_limit_per_10s = 20;
  block.daily_limit = 1000;
  return block;
}

// Collects the outcome of Admit calls.
struct Outcomes {
  std::vector<absl::Status> statuses;
  RateLimiter::Callback Add() {
    statuses.emplace_back(absl::UnknownError("not completed"));
    size_t index = statuses.size() - 1;
    return [this, index](absl::Status status) { statuses[index] = std::move(status); };
  }
};

class RateLimiterTest : public ::testing::Test {
 protected:
  absl::Time now_ = kMidday;
  FakeQuotaSource source_;
  RateLimiter limiter_{&source_, [this] { return now_; }};
  Outcomes outcomes_;
};

TEST_F(RateLimiterTest, ConcurrentCallsShareOneRequest) {
  for (int i = 0; i < 3; ++i) limiter_.Admit(7, 42, outcomes_.Add());
  ASSERT_EQ(source_.requests.size(), 1u);
  EXPECT_EQ(source_.requests[0].organization_id, 7u);
  EXPECT_EQ(source_.requests[0].app_id, 42u);

  source_.Complete(Block(5));
  for (const absl::Status& status : outcomes_.statuses) EXPECT_TRUE(status.ok()) << status;

  // Two calls of the block are left: no request for them.
  limiter_.Admit(7, 42, outcomes_.Add());
  limiter_.Admit(7, 42, outcomes_.Add());
  EXPECT_TRUE(source_.requests.empty());
  EXPECT_TRUE(outcomes_.statuses[3].ok());
  EXPECT_TRUE(outcomes_.statuses[4].ok());
  EXPECT_EQ(limiter_.acquire_requests(), 1);

  // The block is used up: the next call sends a request.
  limiter_.Admit(7, 42, outcomes_.Add());
  EXPECT_EQ(source_.requests.size(), 1u);
}

TEST_F(RateLimiterTest, BlockSizeGrowsAndResets) {
  limiter_.Admit(7, 42, outcomes_.Add());
  ASSERT_EQ(source_.requests.size(), 1u);
  EXPECT_EQ(source_.requests[0].max_calls, 1);
  source_.Complete(Block(1));

  // Used up within its window: the next request is for twice as many.
  limiter_.Admit(7, 42, outcomes_.Add());
  ASSERT_EQ(source_.requests.size(), 1u);
  EXPECT_EQ(source_.requests[0].max_calls, 2);
  source_.Complete(Block(2));
  limiter_.Admit(7, 42, outcomes_.Add());
  limiter_.Admit(7, 42, outcomes_.Add());
  ASSERT_EQ(source_.requests.size(), 1u);
  EXPECT_EQ(source_.requests[0].max_calls, 4);
  source_.Complete(Block(4));

  // The block of 4 expires with 3 calls unused: back to 1.
  now_ += absl::Seconds(5);
  limiter_.Admit(7, 42, outcomes_.Add());
  ASSERT_EQ(source_.requests.size(), 1u);
  EXPECT_EQ(source_.requests[0].max_calls, 1);
  source_.Complete(Block(1));
  for (const absl::Status& status : outcomes_.statuses) EXPECT_TRUE(status.ok()) << status;
}

TEST_F(RateLimiterTest, BlockExpiresWithItsWindow) {
  limiter_.Admit(7, 42, outcomes_.Add());
  source_.Complete(Block(5));
  now_ += absl::Seconds(4);  // window_remaining of the block
  limiter_.Admit(7, 42, outcomes_.Add());
  EXPECT_EQ(source_.requests.size(), 1u) << "a block must not be used after its window";
  EXPECT_EQ(outcomes_.statuses[1].code(), absl::StatusCode::kUnknown) << "the call waits for the new block";
}

TEST_F(RateLimiterTest, MoreWaitingCallsThanBlockAskAgain) {
  for (int i = 0; i < 4; ++i) limiter_.Admit(7, 42, outcomes_.Add());
  source_.Complete(Block(3));
  EXPECT_TRUE(outcomes_.statuses[2].ok());
  EXPECT_EQ(outcomes_.statuses[3].code(), absl::StatusCode::kUnknown);
  ASSERT_EQ(source_.requests.size(), 1u);
  source_.Complete(Block(3));
  EXPECT_TRUE(outcomes_.statuses[3].ok());
}

TEST_F(RateLimiterTest, CallsBeyondBurstLimitRejectedWithRetryInfo) {
  for (int i = 0; i < 3; ++i) limiter_.Admit(7, 42, outcomes_.Add());
  source_.Complete(Block(1, QuotaLimitKind::kBurst));
  EXPECT_TRUE(outcomes_.statuses[0].ok());
  for (int i = 1; i < 3; ++i) {
    const absl::Status& status = outcomes_.statuses[i];
    EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(GetErrorReason(status), "RATE_LIMITED");
    std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->metadata().at("limit"), "20");
    EXPECT_EQ(info->metadata().at("window"), "10s");
    EXPECT_EQ(info->metadata().at("app_id"), "42");
    std::optional<google::rpc::RetryInfo> retry = GetRetryInfo(status);
    ASSERT_TRUE(retry.has_value());
    EXPECT_EQ(retry->retry_delay().seconds(), 4);
  }
  EXPECT_TRUE(source_.requests.empty()) << "a cut block must not be followed by another request";
}

TEST_F(RateLimiterTest, DailyLimitRetriesAtMidnight) {
  limiter_.Admit(7, 42, outcomes_.Add());
  source_.Complete(Block(0, QuotaLimitKind::kDaily));
  const absl::Status& status = outcomes_.statuses[0];
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(GetErrorReason(status), "DAILY_LIMIT_EXCEEDED");
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->metadata().at("limit"), "1000");
  EXPECT_EQ(info->metadata().at("window"), "1d");
  EXPECT_EQ(info->metadata().at("organization_id"), "7");
  std::optional<google::rpc::RetryInfo> retry = GetRetryInfo(status);
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->retry_delay().seconds(), 3 * 3600);
}

TEST_F(RateLimiterTest, RejectionIsNotCached) {
  limiter_.Admit(7, 42, outcomes_.Add());
  source_.Complete(Block(0, QuotaLimitKind::kBurst));
  // A raised limit must apply to the next call, so it sends a request.
  limiter_.Admit(7, 42, outcomes_.Add());
  ASSERT_EQ(source_.requests.size(), 1u);
  source_.Complete(Block(5));
  EXPECT_TRUE(outcomes_.statuses[1].ok());
}

TEST_F(RateLimiterTest, UnreachableSourceFailsClosed) {
  limiter_.Admit(7, 42, outcomes_.Add());
  limiter_.Admit(7, 42, outcomes_.Add());
  source_.Complete(WithErrorInfo(absl::UnavailableError("down"), ErrorReason::kAuthUnavailable));
  for (const absl::Status& status : outcomes_.statuses) {
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(GetErrorReason(status), "AUTH_UNAVAILABLE");
  }
}

TEST_F(RateLimiterTest, AppsHaveSeparateBlocks) {
  limiter_.Admit(7, 42, outcomes_.Add());
  limiter_.Admit(7, 43, outcomes_.Add());
  ASSERT_EQ(source_.requests.size(), 2u);
  EXPECT_EQ(source_.requests[1].app_id, 43u);
  source_.Complete(Block(0, QuotaLimitKind::kBurst));
  source_.Complete(Block(5));
  EXPECT_EQ(outcomes_.statuses[0].code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(outcomes_.statuses[1].ok());
}

}  // namespace
}  // namespace crm
