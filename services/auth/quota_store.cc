// AuthStore's rate limit counters: AcquireQuota grants blocks of calls to
// CRM servers, GetApiUsage reads the counters back, and PurgeQuotaCounters
// deletes old ones. The policy fields live with the rest of the policy in
// auth_store.cc.
#include <cppconn/connection.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/error_details.h"
#include "common/mysql_pool.h"
#include "common/rate_limit.h"
#include "services/auth/auth_store.h"

namespace crm::auth {
namespace {

using Statement = sql::PreparedStatement*;
using Rows = std::unique_ptr<sql::ResultSet>;

// Counter rows are kept this long after their window or day began, so
// GetApiUsage can sum today's windows per app.
constexpr int64_t kQuotaRetentionSeconds = 2 * kDaySeconds;

Statement Prepare(sql::Connection& connection, const std::string& sql) { return &PrepareCached(connection, sql); }

struct EffectiveLimits {
  int32_t burst_limit_per_10s = 0;
  int64_t daily_limit = 0;
};

EffectiveLimits Effective(int32_t stored_burst, int64_t stored_daily, const RateLimitDefaults& defaults) {
  return EffectiveLimits{stored_burst > 0 ? stored_burst : defaults.burst_limit_per_10s,
                         stored_daily > 0 ? stored_daily : defaults.daily_limit};
}

google::protobuf::Timestamp TimestampFromSeconds(int64_t seconds) {
  return google::protobuf::util::TimeUtil::SecondsToTimestamp(seconds);
}

// Reads the counter that `select` finds after `insert` made sure the row
// exists. The insert already locks the row, and the locking read returns
// the latest committed count rather than the transaction's snapshot.
int64_t LockCounter(Statement insert, Statement select) {
  insert->executeUpdate();
  Rows rows(select->executeQuery());
  int64_t used = rows->next() ? rows->getInt64(1) : 0;
  while (rows->next()) {
  }
  return used;
}

}  // namespace

absl::StatusOr<QuotaBlock> AuthStore::AcquireQuota(uint64_t organization_id, uint64_t app_id,
                                                        int64_t max_calls) {
  absl::Time now = clock_();
  int64_t window_start = BurstWindowStart(now);
  int64_t day_start = DayStart(now);
  QuotaBlock grant;
  grant.window_remaining = BurstWindowRemaining(now);
  grant.day_remaining = DayRemaining(now);

  absl::Status status = pool_->RunInTransaction("granting a quota block", [&](sql::Connection& connection) {
    Statement limits = Prepare(connection,
                               "SELECT o.burst_limit_per_10s, o.daily_limit FROM private_apps a"
                               " JOIN organizations o ON o.id = a.organization_id"
                               " WHERE a.id = ? AND a.organization_id = ?");
    limits->setUInt64(1, app_id);
    limits->setUInt64(2, organization_id);
    EffectiveLimits effective;
    {
      Rows rows(limits->executeQuery());
      if (!rows->next()) {
        return WithErrorInfo(absl::NotFoundError(absl::StrCat("private app ", app_id, " not found in organization ",
                                                              organization_id)),
                             ErrorReason::kResourceNotFound,
                             {{"resource_type", "private_app"}, {"resource_id", absl::StrCat(app_id)}});
      }
      effective = Effective(rows->getInt(1), rows->getInt64(2), rate_limit_defaults_);
      while (rows->next()) {
      }
    }

    // Every grant locks the day row before the window row, so grants do not
    // wait on each other's row locks in a cycle. Gap locks of rows that two
    // grants insert at once can still deadlock, and RunInTransaction
    // retries those.
    Statement insert_day = Prepare(connection,
                                   "INSERT INTO quota_days (organization_id, day_start, used_calls) VALUES (?, ?, 0)"
                                   " ON DUPLICATE KEY UPDATE used_calls = used_calls");
    insert_day->setUInt64(1, organization_id);
    insert_day->setInt64(2, day_start);
    Statement select_day = Prepare(connection,
                                   "SELECT used_calls FROM quota_days WHERE organization_id = ? AND day_start = ?"
                                   " FOR UPDATE");
    select_day->setUInt64(1, organization_id);
    select_day->setInt64(2, day_start);
    int64_t day_used = LockCounter(insert_day, select_day);

    Statement insert_window = Prepare(connection,
                                      "INSERT INTO quota_windows (app_id, window_start, organization_id, used_calls)"
                                      " VALUES (?, ?, ?, 0) ON DUPLICATE KEY UPDATE used_calls = used_calls");
    insert_window->setUInt64(1, app_id);
    insert_window->setInt64(2, window_start);
    insert_window->setUInt64(3, organization_id);
    Statement select_window = Prepare(connection,
                                      "SELECT used_calls FROM quota_windows WHERE app_id = ? AND window_start = ?"
                                      " FOR UPDATE");
    select_window->setUInt64(1, app_id);
    select_window->setInt64(2, window_start);
    int64_t window_used = LockCounter(insert_window, select_window);

    int64_t block = QuotaBlockSize(effective.burst_limit_per_10s, effective.daily_limit);
    if (max_calls > 0) block = std::min(block, max_calls);
    QuotaGrant computed =
        ComputeQuotaGrant(block, window_used, effective.burst_limit_per_10s, day_used, effective.daily_limit);
    grant.granted_calls = computed.granted_calls;
    grant.limit_reached = computed.limit_reached;
    grant.burst_limit_per_10s = effective.burst_limit_per_10s;
    grant.daily_limit = effective.daily_limit;
    if (computed.granted_calls == 0) return absl::OkStatus();

    Statement add_day = Prepare(connection,
                                "UPDATE quota_days SET used_calls = used_calls + ?"
                                " WHERE organization_id = ? AND day_start = ?");
    add_day->setInt64(1, computed.granted_calls);
    add_day->setUInt64(2, organization_id);
    add_day->setInt64(3, day_start);
    add_day->executeUpdate();
    Statement add_window = Prepare(connection,
                                   "UPDATE quota_windows SET used_calls = used_calls + ?"
                                   " WHERE app_id = ? AND window_start = ?");
    add_window->setInt64(1, computed.granted_calls);
    add_window->setUInt64(2, app_id);
    add_window->setInt64(3, window_start);
    add_window->executeUpdate();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return grant;
}

absl::StatusOr<v1::GetApiUsageResponse> AuthStore::GetApiUsage(const AdminCaller& caller,
                                                               const v1::GetApiUsageRequest& request) {
  absl::Time now = clock_();
  int64_t window_start = BurstWindowStart(now);
  int64_t day_start = DayStart(now);
  v1::GetApiUsageResponse response;

  // One transaction, so every count comes from the same snapshot.
  absl::Status status = pool_->RunInTransaction("reading API usage", [&](sql::Connection& connection) {
    response.Clear();
    *response.mutable_day_start_time() = TimestampFromSeconds(day_start);
    *response.mutable_window_start_time() = TimestampFromSeconds(window_start);

    Statement organization = Prepare(connection,
                                     "SELECT o.burst_limit_per_10s, o.daily_limit, COALESCE(d.used_calls, 0)"
                                     " FROM organizations o LEFT JOIN quota_days d"
                                     " ON d.organization_id = o.id AND d.day_start = ? WHERE o.id = ?");
    organization->setInt64(1, day_start);
    organization->setUInt64(2, caller.organization_id);
    EffectiveLimits effective;
    {
      Rows rows(organization->executeQuery());
      if (!rows->next()) {
        return absl::NotFoundError(absl::StrCat("organization ", caller.organization_id, " not found"));
      }
      effective = Effective(rows->getInt(1), rows->getInt64(2), rate_limit_defaults_);
      response.set_daily_calls(rows->getInt64(3));
      while (rows->next()) {
      }
    }
    response.set_daily_limit(effective.daily_limit);

    Statement apps = Prepare(connection,
                             "SELECT a.id, COALESCE(w.used_calls, 0),"
                             " (SELECT COALESCE(SUM(t.used_calls), 0) FROM quota_windows t"
                             "  WHERE t.app_id = a.id AND t.window_start >= ?)"
                             " FROM private_apps a LEFT JOIN quota_windows w"
                             " ON w.app_id = a.id AND w.window_start = ?"
                             " WHERE a.organization_id = ? ORDER BY a.id");
    apps->setInt64(1, day_start);
    apps->setInt64(2, window_start);
    apps->setUInt64(3, caller.organization_id);
    Rows rows(apps->executeQuery());
    while (rows->next()) {
      v1::AppApiUsage* app = response.add_apps();
      app->set_app_id(absl::StrCat(rows->getUInt64(1)));
      app->set_window_calls(rows->getInt64(2));
      app->set_burst_limit_per_10s(effective.burst_limit_per_10s);
      app->set_daily_calls(rows->getInt64(3));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<int> AuthStore::PurgeQuotaCounters(int max_rows) {
  int64_t cutoff = absl::ToUnixSeconds(clock_()) - kQuotaRetentionSeconds;
  int deleted = 0;
  absl::Status status = pool_->Run("purging rate limit counters", [&](sql::Connection& connection) {
    Statement windows = Prepare(connection, "DELETE FROM quota_windows WHERE window_start < ? LIMIT ?");
    windows->setInt64(1, cutoff);
    windows->setInt(2, max_rows);
    deleted = windows->executeUpdate();
    Statement days = Prepare(connection, "DELETE FROM quota_days WHERE day_start < ? LIMIT ?");
    days->setInt64(1, DayStart(absl::FromUnixSeconds(cutoff)));
    days->setInt(2, max_rows);
    deleted += days->executeUpdate();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return deleted;
}

}  // namespace crm::auth
