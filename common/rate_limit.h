// Arithmetic of the rate limits that both servers share: the 10-second
// burst windows, the UTC days and the size of the blocks of calls that the
// auth server grants to CRM servers from the shared counters. No I/O and no
// clock of its own, so unit tests pass any time.
//
// Windows start at multiples of 10 s since the Unix epoch and days at UTC
// midnight, on the auth server's clock. A day is a whole number of windows,
// so a window never spans two days.
#ifndef CRM_COMMON_RATE_LIMIT_H_
#define CRM_COMMON_RATE_LIMIT_H_

#include <cstdint>

#include "absl/time/time.h"

namespace crm {

inline constexpr int64_t kBurstWindowSeconds = 10;
inline constexpr int64_t kDaySeconds = 86400;

// Server defaults and the ranges an organization policy may set.
inline constexpr int32_t kDefaultBurstLimitPer10s = 100;
inline constexpr int32_t kMaxBurstLimitPer10s = 1000000;
inline constexpr int64_t kDefaultDailyLimit = 250000;
inline constexpr int64_t kMaxDailyLimit = 1000000000;

// A block is this fraction (1/20, so 5 %) of the smaller limit, so the
// shared counters see about one database transaction per 20 calls.
inline constexpr int64_t kQuotaBlockDivisor = 20;

// Start of the 10-second window that contains `now`, in seconds since the
// Unix epoch.
int64_t BurstWindowStart(absl::Time now);

// Time from `now` to the end of its 10-second window, above zero.
absl::Duration BurstWindowRemaining(absl::Time now);

// Start of the UTC day that contains `now`, in seconds since the Unix epoch.
int64_t DayStart(absl::Time now);

// Time from `now` to the next UTC midnight, above zero.
absl::Duration DayRemaining(absl::Time now);

// Calls in one grant: the smaller limit divided by kQuotaBlockDivisor,
// rounded down, and at least 1.
int64_t QuotaBlockSize(int64_t burst_limit, int64_t daily_limit);

// The limit that cut a grant below the block size.
enum class QuotaLimitKind { kNone, kBurst, kDaily };

struct QuotaGrant {
  int64_t granted_calls = 0;
  // kNone when the whole block was granted.
  QuotaLimitKind limit_reached = QuotaLimitKind::kNone;
};

// A block of calls that the auth server granted (TokenService.AcquireQuota),
// with the limits in force and the time left in the window and the day.
struct QuotaBlock {
  int64_t granted_calls = 0;
  QuotaLimitKind limit_reached = QuotaLimitKind::kNone;
  absl::Duration window_remaining;
  absl::Duration day_remaining;
  int32_t burst_limit_per_10s = 0;
  int64_t daily_limit = 0;
};

// The grant for a block of `block` calls when the window has `window_used`
// of `burst_limit` calls taken and the day `day_used` of `daily_limit`:
// the block, cut to what both limits have left. A cut grant names the limit
// with fewer calls left (the daily limit on a tie). Never negative, and
// never takes a counter past its limit, also when a lowered limit is
// already exceeded.
QuotaGrant ComputeQuotaGrant(int64_t block, int64_t window_used, int64_t burst_limit, int64_t day_used,
                             int64_t daily_limit);

}  // namespace crm

#endif  // CRM_COMMON_RATE_LIMIT_H_
