#include "common/rate_limit.h"

#include <algorithm>

namespace crm {
namespace {

// Floor division, also for times before the epoch.
int64_t FloorToMultiple(int64_t seconds, int64_t unit) {
  int64_t quotient = seconds / unit;
  if (seconds % unit != 0 && seconds < 0) --quotient;
  return quotient * unit;
}

absl::Duration TimeToNext(absl::Time now, int64_t unit) {
  int64_t start = FloorToMultiple(absl::ToUnixSeconds(now), unit);
  return absl::FromUnixSeconds(start + unit) - now;
}

}  // namespace

int64_t BurstWindowStart(absl::Time now) { return FloorToMultiple(absl::ToUnixSeconds(now), kBurstWindowSeconds); }

absl::Duration BurstWindowRemaining(absl::Time now) { return TimeToNext(now, kBurstWindowSeconds); }

int64_t DayStart(absl::Time now) { return FloorToMultiple(absl::ToUnixSeconds(now), kDaySeconds); }

absl::Duration DayRemaining(absl::Time now) { return TimeToNext(now, kDaySeconds); }

int64_t QuotaBlockSize(int64_t burst_limit, int64_t daily_limit) {
  return std::max<int64_t>(1, std::min(burst_limit, daily_limit) / kQuotaBlockDivisor);
}

QuotaGrant ComputeQuotaGrant(int64_t block, int64_t window_used, int64_t burst_limit, int64_t day_used,
                             int64_t daily_limit) {
  int64_t burst_left = std::max<int64_t>(0, burst_limit - window_used);
  int64_t daily_left = std::max<int64_t>(0, daily_limit - day_used);
  QuotaGrant grant;
  grant.granted_calls = std::max<int64_t>(0, std::min({block, burst_left, daily_left}));
  if (grant.granted_calls == block) return grant;
  // The limit with fewer calls left cut the grant. On a tie the daily limit
  // is named, because waiting for the next window would not help.
  grant.limit_reached = daily_left <= burst_left ? QuotaLimitKind::kDaily : QuotaLimitKind::kBurst;
  return grant;
}

}  // namespace crm
