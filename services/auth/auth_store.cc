#include "services/auth/auth_store.h"

#include <cppconn/connection.h>
#include <cppconn/datatype.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/crypto.h"
#include "common/error_details.h"
#include "common/ip_allowlist.h"
#include "common/logging.h"
#include "common/mysql_pool.h"
#include "common/rate_limit.h"
#include "common/text.h"
#include "services/auth/logo.h"

namespace crm::auth {
namespace {

// Owned by the connection's statement cache (see PrepareCached).
using Statement = sql::PreparedStatement*;
using Rows = std::unique_ptr<sql::ResultSet>;

constexpr size_t kMaxOrganizationNameChars = 200;
constexpr size_t kMaxAppNameChars = 100;
constexpr size_t kMaxDescriptionChars = 1000;
constexpr size_t kMaxIdDigits = 20;  // Digits of the largest uint64.
// ListPrivateApps stops adding apps before a page grows past this, leaving
// room under gRPC's default client receive limit of 4 MiB.
constexpr size_t kListResponseBudgetBytes = 3 * 1024 * 1024;

constexpr absl::string_view kDisplayNamePath = "display_name";
constexpr absl::string_view kDescriptionPath = "description";
constexpr absl::string_view kLogoPath = "logo";
constexpr absl::string_view kScopesPath = "scopes";
constexpr absl::string_view kTokenExpireTimePath = "token_expire_time";
constexpr absl::string_view kIpAllowlistPath = "ip_allowlist";
constexpr absl::string_view kOutputOnlyPaths[] = {"id",
                                                  "organization_id",
                                                  "logo_mime_type",
                                                  "token_hint",
                                                  "create_time",
                                                  "update_time",
                                                  "previous_token_hint",
                                                  "previous_token_expire_time",
                                                  "last_used_time",
                                                  "last_used_peer",
                                                  "previous_token_last_used_time"};
constexpr absl::string_view kTokenRevealEnabledPath = "token_reveal_enabled";
constexpr absl::string_view kBurstLimitPath = "burst_limit_per_10s";
constexpr absl::string_view kDailyLimitPath = "daily_limit";
constexpr absl::string_view kPolicyPaths[] = {kTokenRevealEnabledPath, kBurstLimitPath, kDailyLimitPath};
// Maximum length of a stored last_used_peer; an IPv6 address with a zone
// fits.
constexpr size_t kMaxPeerChars = 64;

// Columns and joins that ReadApp expects, in this order. Times are read as
// microseconds since the Unix epoch, because the connector's DATETIME strings
// may drop the fraction; the pool's session time zone is UTC. `t` is the
// current token and `p` the previous one, which exists only after a
// rotation with an overlap and until the next rotation.
constexpr absl::string_view kSelectApp =
    "SELECT a.id, a.organization_id, a.display_name, a.description, a.logo, a.logo_mime_type, a.scope_bits,"
    " TIMESTAMPDIFF(MICROSECOND, '1970-01-01', a.create_time),"
    " TIMESTAMPDIFF(MICROSECOND, '1970-01-01', a.update_time),"
    " COALESCE(t.token_hint, ''),"
    " TIMESTAMPDIFF(MICROSECOND, '1970-01-01', t.expire_time),"
    " TIMESTAMPDIFF(MICROSECOND, '1970-01-01', t.last_used_time),"
    " COALESCE(t.last_used_peer, ''),"
    " COALESCE(p.token_hint, ''),"
    " TIMESTAMPDIFF(MICROSECOND, '1970-01-01', p.expire_time),"
    " TIMESTAMPDIFF(MICROSECOND, '1970-01-01', p.overlap_end_time),"
    " TIMESTAMPDIFF(MICROSECOND, '1970-01-01', p.last_used_time),"
    " a.ip_allowlist"
    " FROM private_apps a"
    " LEFT JOIN access_tokens t ON t.app_id = a.id AND t.revoke_time IS NULL AND t.overlap_end_time IS NULL"
    " LEFT JOIN access_tokens p ON p.app_id = a.id AND p.revoke_time IS NULL AND p.overlap_end_time IS NOT NULL";

// One private_apps row with its current and previous token.
struct AppRow {
  uint64_t id = 0;
  uint64_t organization_id = 0;
  std::string display_name;
  std::string description;
  std::string logo;
  std::string logo_mime_type;
  ScopeMask scopes = 0;
  int64_t create_micros = 0;
  int64_t update_micros = 0;
  std::string token_hint;
  std::optional<int64_t> token_expire_micros;
  std::optional<int64_t> last_used_micros;
  std::string last_used_peer;
  // Empty when there is no previous token.
  std::string previous_hint;
  // The earlier of the previous token's own expiry and its overlap end.
  std::optional<int64_t> previous_expire_micros;
  std::optional<int64_t> previous_last_used_micros;
  // Canonical CIDR ranges; empty allows every address.
  std::vector<std::string> ip_allowlist;

  // Whether a rotation overlap runs at `now_micros`.
  bool OverlapRunning(int64_t now_micros) const {
    return !previous_hint.empty() && previous_expire_micros.has_value() && *previous_expire_micros > now_micros;
  }
};

Statement Prepare(sql::Connection& connection, absl::string_view sql) {
  return &PrepareCached(connection, std::string(sql));
}

std::optional<int64_t> OptionalInt64(sql::ResultSet& rows, int column) {
  if (rows.isNull(column)) return std::nullopt;
  return rows.getInt64(column);
}

std::optional<int64_t> EarlierOf(std::optional<int64_t> a, std::optional<int64_t> b) {
  if (!a.has_value()) return b;
  if (!b.has_value()) return a;
  return std::min(*a, *b);
}

// The stored form of an IP allowlist: canonical ranges joined by commas,
// "" for an empty list.
std::string JoinIpAllowlist(const std::vector<std::string>& ranges) { return absl::StrJoin(ranges, ","); }

std::vector<std::string> SplitIpAllowlist(absl::string_view stored) {
  return absl::StrSplit(stored, ',', absl::SkipEmpty());
}

AppRow ReadApp(sql::ResultSet& rows) {
  AppRow app;
  app.id = rows.getUInt64(1);
  app.organization_id = rows.getUInt64(2);
  app.display_name = rows.getString(3).asStdString();
  app.description = rows.getString(4).asStdString();
  if (!rows.isNull(5)) app.logo = rows.getString(5).asStdString();
  app.logo_mime_type = rows.getString(6).asStdString();
  app.scopes = rows.getUInt(7);
  app.create_micros = rows.getInt64(8);
  app.update_micros = rows.getInt64(9);
  app.token_hint = rows.getString(10).asStdString();
  app.token_expire_micros = OptionalInt64(rows, 11);
  app.last_used_micros = OptionalInt64(rows, 12);
  app.last_used_peer = rows.getString(13).asStdString();
  app.previous_hint = rows.getString(14).asStdString();
  app.previous_expire_micros = EarlierOf(OptionalInt64(rows, 15), OptionalInt64(rows, 16));
  app.previous_last_used_micros = OptionalInt64(rows, 17);
  app.ip_allowlist = SplitIpAllowlist(rows.getString(18).asStdString());
  return app;
}

// Writes `row` as the API shows it at `now_micros`: a previous token whose
// overlap has ended is left out.
void ToProto(const AppRow& row, int64_t now_micros, v1::PrivateApp* app) {
  using google::protobuf::util::TimeUtil;
  app->set_id(absl::StrCat(row.id));
  app->set_organization_id(absl::StrCat(row.organization_id));
  app->set_display_name(row.display_name);
  app->set_description(row.description);
  app->set_logo(row.logo);
  app->set_logo_mime_type(row.logo_mime_type);
  ScopeMaskToProto(row.scopes, app->mutable_scopes());
  app->set_token_hint(row.token_hint);
  *app->mutable_create_time() = TimeUtil::MicrosecondsToTimestamp(row.create_micros);
  *app->mutable_update_time() = TimeUtil::MicrosecondsToTimestamp(row.update_micros);
  if (row.token_expire_micros.has_value()) {
    *app->mutable_token_expire_time() = TimeUtil::MicrosecondsToTimestamp(*row.token_expire_micros);
  }
  if (row.last_used_micros.has_value()) {
    *app->mutable_last_used_time() = TimeUtil::MicrosecondsToTimestamp(*row.last_used_micros);
    app->set_last_used_peer(row.last_used_peer);
  }
  for (const std::string& range : row.ip_allowlist) app->add_ip_allowlist(range);
  if (row.OverlapRunning(now_micros)) {
    app->set_previous_token_hint(row.previous_hint);
    *app->mutable_previous_token_expire_time() = TimeUtil::MicrosecondsToTimestamp(*row.previous_expire_micros);
    if (row.previous_last_used_micros.has_value()) {
      *app->mutable_previous_token_last_used_time() =
          TimeUtil::MicrosecondsToTimestamp(*row.previous_last_used_micros);
    }
  }
}


// Puts "private_app." before the message and the field paths of a check
// that names fields relative to the app, such as "logo" or "scopes[0]".
absl::Status InPrivateApp(const absl::Status& status) {
  absl::Status prefixed(status.code(), absl::StrCat("private_app.", status.message()));
  status.ForEachPayload(
      [&](absl::string_view type_url, const absl::Cord& payload) { prefixed.SetPayload(type_url, payload); });
  return PrefixFieldViolations(std::move(prefixed), "private_app");
}

// Loads one app of `organization_id`; NOT_FOUND when there is none. With
// `for_update`, locks the app row until the transaction ends.
absl::StatusOr<AppRow> LoadApp(sql::Connection& connection, uint64_t organization_id, uint64_t app_id,
                               bool for_update) {
  Statement select = Prepare(connection, absl::StrCat(kSelectApp, " WHERE a.organization_id = ? AND a.id = ?",
                                                      for_update ? " FOR UPDATE" : ""));
  select->setUInt64(1, organization_id);
  select->setUInt64(2, app_id);
  Rows rows(select->executeQuery());
  if (!rows->next()) return AppNotFound(app_id);
  return ReadApp(*rows);
}

uint64_t LastInsertId(sql::Connection& connection) {
  Statement select = Prepare(connection, "SELECT LAST_INSERT_ID()");
  Rows rows(select->executeQuery());
  rows->next();
  return rows->getUInt64(1);
}

void BindLogo(sql::PreparedStatement& statement, int index, const std::string& logo) {
  if (logo.empty()) {
    statement.setNull(index, sql::DataType::LONGVARBINARY);
  } else {
    statement.setString(index, logo);
  }
}

// Binds a token's ciphertext to its app and key, so a ciphertext copied to
// another row or read under another key fails to decrypt.
std::string TokenAssociatedData(uint64_t app_id, absl::string_view key_id) {
  return absl::StrCat("crm.auth.v1.access_token app_id=", app_id, " key_id=", key_id);
}

// A new access token with the values stored for it.
struct IssuedToken {
  std::string token;
  std::string digest;
  std::string digest_key_id;
  std::string ciphertext;
  std::string hint;
};

// Issues a token for `app_id`. Without `revealable` the ciphertext stays
// empty, so the token can never be revealed.
absl::StatusOr<IssuedToken> IssueAccessToken(const Secrets& secrets, const RandomSource& random, uint64_t app_id,
                                             bool revealable) {
  IssuedToken issued;
  issued.token = GenerateToken(TokenKind::kAppToken, random);
  issued.digest = HmacSha256(secrets.token_hmac_key, issued.token);
  issued.digest_key_id = KeyId(secrets.token_hmac_key);
  if (revealable) {
    absl::StatusOr<std::string> ciphertext =
        SealAes256Gcm(secrets.token_encryption_key, issued.token,
                      TokenAssociatedData(app_id, secrets.token_encryption_key_id));
    if (!ciphertext.ok()) return ciphertext.status();
    issued.ciphertext = *std::move(ciphertext);
  }
  issued.hint = TokenHint(issued.token);
  return issued;
}

void BindOptionalTime(sql::PreparedStatement& statement, int index, std::optional<int64_t> unix_micros) {
  if (unix_micros.has_value()) {
    statement.setString(index, ToDatetime(*unix_micros));
  } else {
    statement.setNull(index, sql::DataType::TIMESTAMP);
  }
}

void InsertAccessToken(sql::Connection& connection, uint64_t app_id, const IssuedToken& issued,
                       const std::string& key_id, const std::string& now, std::optional<int64_t> expire_micros) {
  Statement insert = Prepare(connection,
                             "INSERT INTO access_tokens (app_id, token_digest, digest_key_id, token_ciphertext,"
                             " encryption_key_id, token_hint, create_time, expire_time)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  insert->setUInt64(1, app_id);
  insert->setString(2, issued.digest);
  insert->setString(3, issued.digest_key_id);
  insert->setString(4, issued.ciphertext);
  insert->setString(5, key_id);
  insert->setString(6, issued.hint);
  insert->setString(7, now);
  BindOptionalTime(*insert, 8, expire_micros);
  insert->executeUpdate();
}

// Returns whether the organization's policy lets GetAccessToken reveal
// tokens. With `for_update`, locks the organization row.
absl::StatusOr<bool> ReadRevealEnabled(sql::Connection& connection, uint64_t organization_id, bool for_update) {
  Statement select = Prepare(connection, absl::StrCat("SELECT token_reveal_enabled FROM organizations WHERE id = ?",
                                                      for_update ? " FOR UPDATE" : ""));
  select->setUInt64(1, organization_id);
  Rows rows(select->executeQuery());
  if (!rows->next()) return absl::NotFoundError(absl::StrCat("organization ", organization_id, " not found"));
  return rows->getBoolean(1);
}

// Returns the organization's policy as stored: a rate limit of 0 means the
// server default. With `for_update`, locks the organization row.
absl::StatusOr<v1::OrganizationPolicy> ReadPolicy(sql::Connection& connection, uint64_t organization_id,
                                                  bool for_update) {
  Statement select = Prepare(connection, absl::StrCat("SELECT token_reveal_enabled, burst_limit_per_10s, daily_limit"
                                                      " FROM organizations WHERE id = ?",
                                                      for_update ? " FOR UPDATE" : ""));
  select->setUInt64(1, organization_id);
  Rows rows(select->executeQuery());
  if (!rows->next()) return absl::NotFoundError(absl::StrCat("organization ", organization_id, " not found"));
  v1::OrganizationPolicy policy;
  policy.set_token_reveal_enabled(rows->getBoolean(1));
  policy.set_burst_limit_per_10s(rows->getInt(2));
  policy.set_daily_limit(rows->getInt64(3));
  return policy;
}

// The fields of one audit event besides its caller and time.
struct AuditRecord {
  uint64_t app_id = 0;  // 0 for organization-wide actions.
  v1::AuditAction action = v1::AUDIT_ACTION_UNSPECIFIED;
  std::optional<ScopeMask> scopes_before = std::nullopt;
  std::optional<ScopeMask> scopes_after = std::nullopt;
  std::vector<std::string> changed_fields = {};
  std::string token_hint = {};
  std::optional<std::vector<std::string>> ip_allowlist_before = std::nullopt;
  std::optional<std::vector<std::string>> ip_allowlist_after = std::nullopt;
};

void BindOptionalIpAllowlist(sql::PreparedStatement& statement, int index,
                             const std::optional<std::vector<std::string>>& ranges) {
  if (ranges.has_value()) {
    statement.setString(index, JoinIpAllowlist(*ranges));
  } else {
    statement.setNull(index, sql::DataType::VARCHAR);
  }
}

// Inserts an audit event inside the caller's transaction, so the event
// commits if and only if the action does.
void InsertAuditEvent(sql::Connection& connection, const AdminCaller& caller, const AuditRecord& record,
                      const std::string& now) {
  Statement insert = Prepare(connection,
                             "INSERT INTO audit_events (organization_id, app_id, action, admin_key_id, create_time,"
                             " scopes_before, scopes_after, changed_fields, token_hint, ip_allowlist_before,"
                             " ip_allowlist_after)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  insert->setUInt64(1, caller.organization_id);
  if (record.app_id == 0) {
    insert->setNull(2, sql::DataType::BIGINT);
  } else {
    insert->setUInt64(2, record.app_id);
  }
  insert->setInt(3, record.action);
  insert->setUInt64(4, caller.admin_key_id);
  insert->setString(5, now);
  if (record.scopes_before.has_value()) {
    insert->setUInt(6, *record.scopes_before);
  } else {
    insert->setNull(6, sql::DataType::INTEGER);
  }
  if (record.scopes_after.has_value()) {
    insert->setUInt(7, *record.scopes_after);
  } else {
    insert->setNull(7, sql::DataType::INTEGER);
  }
  insert->setString(8, absl::StrJoin(record.changed_fields, ","));
  insert->setString(9, record.token_hint);
  BindOptionalIpAllowlist(*insert, 10, record.ip_allowlist_before);
  BindOptionalIpAllowlist(*insert, 11, record.ip_allowlist_after);
  insert->executeUpdate();
}

// Sets the update time of an app whose token changed.
void TouchApp(sql::Connection& connection, uint64_t app_id, const std::string& now) {
  Statement touch = Prepare(connection, "UPDATE private_apps SET update_time = ? WHERE id = ?");
  touch->setString(1, now);
  touch->setUInt64(2, app_id);
  touch->executeUpdate();
}

// Returns the token expiry set in `time`, which must be after `now_micros`;
// nullopt for an unset time.
absl::StatusOr<std::optional<int64_t>> ValidateExpireTime(absl::string_view field,
                                                          const google::protobuf::Timestamp* time,
                                                          int64_t now_micros) {
  if (time == nullptr) return std::optional<int64_t>();
  using google::protobuf::util::TimeUtil;
  if (time->seconds() < TimeUtil::kTimestampMinSeconds || time->seconds() > TimeUtil::kTimestampMaxSeconds ||
      time->nanos() < 0 || time->nanos() > 999999999) {
    return InvalidFieldError(field, absl::StrCat(field, " is not a valid timestamp"));
  }
  int64_t micros = google::protobuf::util::TimeUtil::TimestampToMicroseconds(*time);
  if (micros <= now_micros) {
    return InvalidFieldError(
        field, absl::StrCat(field, " must be in the future, got ", google::protobuf::util::TimeUtil::ToString(*time)));
  }
  return std::optional<int64_t>(micros);
}

// Appends an invalidation log entry inside the caller's transaction and
// returns its sequence.
//
// Call it after the change's other statements, so that the counter row is
// the transaction's last lock. Its lock is held until commit, so entries
// commit in sequence order: a reader that has seen sequence N has seen
// every entry up to N, and `sequence > N` never misses one that commits
// later. Taking it last gives every transaction the same lock order (app
// rows, then the counter), so the counter adds no deadlock. The INSERT after
// it waits at most for a purge batch, which holds no other lock.
absl::StatusOr<int64_t> AppendInvalidation(sql::Connection& connection, uint64_t organization_id,
                                           uint64_t app_id, v1::InvalidationReason reason,
                                           const std::string& now) {
  Statement increment =
      Prepare(connection, "UPDATE invalidation_sequence SET last_sequence = last_sequence + 1 WHERE id = 1");
  if (increment->executeUpdate() != 1) {
    return WithErrorInfo(
        absl::InternalError(
            "the invalidation_sequence row with id 1 is missing; migration 0002 creates it, so restore it with "
            "last_sequence set to the highest sequence in invalidation_log"),
        ErrorReason::kInternalError);
  }
  // A transaction reads its own update, whatever its snapshot.
  Statement select = Prepare(connection, "SELECT last_sequence FROM invalidation_sequence WHERE id = 1");
  Rows rows(select->executeQuery());
  rows->next();
  int64_t sequence = rows->getInt64(1);

  Statement insert = Prepare(connection,
                             "INSERT INTO invalidation_log (sequence, app_id, organization_id, reason, create_time)"
                             " VALUES (?, ?, ?, ?, ?)");
  insert->setInt64(1, sequence);
  insert->setUInt64(2, app_id);
  insert->setUInt64(3, organization_id);
  insert->setInt(4, reason);
  insert->setString(5, now);
  insert->executeUpdate();
  return sequence;
}

absl::Status ValidateDisplayName(absl::string_view value) {
  if (value.empty()) return InvalidFieldError("private_app.display_name", "private_app.display_name is required");
  return ValidateText("private_app.display_name", value,
                      TextRules{.max_code_points = kMaxAppNameChars, .allow_surrounding_space = false});
}

absl::Status ValidateDescription(absl::string_view value) {
  return ValidateText("private_app.description", value,
                      TextRules{.max_code_points = kMaxDescriptionChars, .allow_line_breaks = true});
}

// Returns the MIME type of the logo, or "" for no logo.
absl::StatusOr<std::string> ValidateLogoField(absl::string_view logo) {
  if (logo.empty()) return std::string();
  absl::StatusOr<std::string> mime_type = ValidateLogo(logo);
  if (!mime_type.ok()) {
    std::string message = absl::StrCat("private_app.", mime_type.status().message());
    return InvalidFieldError("private_app.logo", message, ErrorReason::kLogoInvalid);
  }
  return mime_type;
}

// Compares `stored` with every candidate digest in constant time each.
bool MatchesAny(const std::string& stored, const std::vector<std::string>& digests) {
  bool matched = false;
  for (const std::string& digest : digests) matched |= ConstantTimeEquals(stored, digest);
  return matched;
}

// "?, ?, ..." with `count` placeholders.
std::string Placeholders(size_t count) {
  std::string text;
  for (size_t i = 0; i < count; ++i) absl::StrAppend(&text, i == 0 ? "?" : ", ?");
  return text;
}

// Returns the ranges in canonical form, in the order given. Each error names
// the offending element, such as "private_app.ip_allowlist[2]".
absl::StatusOr<std::vector<std::string>> ValidateIpAllowlist(
    const google::protobuf::RepeatedPtrField<std::string>& ranges) {
  if (ranges.size() > kMaxIpAllowlistRanges) {
    return InvalidFieldError("private_app.ip_allowlist",
                             absl::StrCat("private_app.ip_allowlist has ", ranges.size(), " ranges; at most ",
                                          kMaxIpAllowlistRanges, " are allowed"));
  }
  std::vector<std::string> canonical;
  canonical.reserve(ranges.size());
  for (int i = 0; i < ranges.size(); ++i) {
    std::string field = absl::StrCat("private_app.ip_allowlist[", i, "]");
    absl::StatusOr<CidrRange> range = ParseCidrRange(ranges[i]);
    if (!range.ok()) return InvalidFieldError(field, absl::StrCat(field, ": ", range.status().message()));
    std::string text = range->ToString();
    auto earlier = std::find(canonical.begin(), canonical.end(), text);
    if (earlier != canonical.end()) {
      return InvalidFieldError(field, absl::StrCat(field, ": \"", text, "\" repeats private_app.ip_allowlist[",
                                                   earlier - canonical.begin(), "]"));
    }
    canonical.push_back(std::move(text));
  }
  return canonical;
}

absl::StatusOr<ScopeMask> ValidateScopes(const google::protobuf::RepeatedPtrField<v1::Scope>& scopes) {
  absl::StatusOr<ScopeMask> mask = ScopeMaskFromProto(scopes);
  if (!mask.ok()) return InPrivateApp(mask.status());
  if (*mask == 0) {
    return InvalidFieldError("private_app.scopes", "private_app.scopes must grant at least one scope");
  }
  return mask;
}

}  // namespace

std::string ToDatetime(int64_t unix_micros) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%E6S", absl::FromUnixMicros(unix_micros), absl::UTCTimeZone());
}

absl::Status AppNotFound(uint64_t app_id) {
  return WithErrorInfo(absl::NotFoundError(absl::StrCat("private app ", app_id, " not found")),
                       ErrorReason::kResourceNotFound,
                       {{"resource_type", "private_app"}, {"resource_id", absl::StrCat(app_id)}});
}

absl::StatusOr<uint64_t> ParseId(absl::string_view field, absl::string_view value) {
  if (value.empty()) return InvalidFieldError(field, absl::StrCat(field, " is required"));
  uint64_t id = 0;
  bool digits_only = std::all_of(value.begin(), value.end(), [](char c) { return absl::ascii_isdigit(c); });
  if (!digits_only || value.size() > kMaxIdDigits || value.front() == '0' || !absl::SimpleAtoi(value, &id)) {
    return InvalidFieldError(
        field, absl::StrCat(field, " must be a positive decimal integer without leading zeros, such as \"42\""));
  }
  return id;
}

AuthStore::AuthStore(MysqlPool* pool, Secrets secrets, RandomSource random, Clock clock,
                     InvalidationCommitted on_invalidation, RateLimitDefaults rate_limit_defaults)
    : pool_(pool),
      secrets_(std::move(secrets)),
      random_(std::move(random)),
      clock_(std::move(clock)),
      on_invalidation_(std::move(on_invalidation)),
      page_tokens_(secrets_.page_token_key),
      rate_limit_defaults_(rate_limit_defaults) {}

std::vector<std::string> AuthStore::DigestsUnderEveryKey(absl::string_view credential) const {
  std::vector<std::string> digests = {HmacSha256(secrets_.token_hmac_key, credential)};
  for (const std::string& key : secrets_.older_token_hmac_keys) digests.push_back(HmacSha256(key, credential));
  return digests;
}

const std::string* AuthStore::FindEncryptionKey(absl::string_view key_id) const {
  if (key_id == secrets_.token_encryption_key_id) return &secrets_.token_encryption_key;
  for (const std::string& key : secrets_.older_token_encryption_keys) {
    if (KeyId(key) == key_id) return &key;
  }
  return nullptr;
}

void AuthStore::NotifyInvalidation(int64_t sequence) const {
  if (on_invalidation_) on_invalidation_(sequence);
}

std::string AuthStore::ListRequestScope(uint64_t organization_id) const {
  return absl::StrCat("crm.auth.v1.PrivateAppService/ListPrivateApps organization_id=", organization_id);
}

absl::StatusOr<NewOrganization> AuthStore::CreateOrganization(absl::string_view display_name) {
  if (display_name.empty()) return InvalidFieldError("display_name", "organization display_name is required");
  absl::Status valid =
      ValidateText("organization display_name", display_name,
                   TextRules{.max_code_points = kMaxOrganizationNameChars, .allow_surrounding_space = false});
  if (!valid.ok()) return valid;

  std::string admin_key = GenerateToken(TokenKind::kAdminKey, random_);
  std::string digest = HmacSha256(secrets_.token_hmac_key, admin_key);
  std::string now = ToDatetime(absl::ToUnixMicros(clock_()));
  NewOrganization created;
  absl::Status status = pool_->RunInTransaction("creating an organization", [&](sql::Connection& connection) {
    Statement insert_organization =
        Prepare(connection, "INSERT INTO organizations (display_name, create_time) VALUES (?, ?)");
    insert_organization->setString(1, std::string(display_name));
    insert_organization->setString(2, now);
    insert_organization->executeUpdate();
    uint64_t organization_id = LastInsertId(connection);

    Statement insert_key =
        Prepare(connection,
                "INSERT INTO admin_keys (organization_id, key_digest, digest_key_id, key_hint, create_time)"
                " VALUES (?, ?, ?, ?, ?)");
    insert_key->setUInt64(1, organization_id);
    insert_key->setString(2, digest);
    insert_key->setString(3, KeyId(secrets_.token_hmac_key));
    insert_key->setString(4, TokenHint(admin_key));
    insert_key->setString(5, now);
    insert_key->executeUpdate();
    created.organization_id = organization_id;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  created.admin_key = std::move(admin_key);
  spdlog::info("created organization {} with admin key {}", created.organization_id,
               TokenHint(created.admin_key));
  return created;
}

absl::StatusOr<AdminCaller> AuthStore::AuthenticateAdmin(absl::string_view admin_key) {
  absl::Status format = ValidateTokenFormat(TokenKind::kAdminKey, admin_key);
  if (!format.ok()) return format;

  // One digest per loaded HMAC key, newest first: the key may have been
  // stored under any of them.
  std::vector<std::string> digests = DigestsUnderEveryKey(admin_key);
  const std::string newest_key_id = KeyId(secrets_.token_hmac_key);
  AdminCaller caller;
  std::string stored_digest;
  bool stored_under_newest = false;
  credential_lookups_.fetch_add(1, std::memory_order_relaxed);
  absl::Status status = pool_->Run("authenticating an admin key", [&](sql::Connection& connection) {
    Statement select = Prepare(connection, absl::StrCat("SELECT id, organization_id, key_digest, digest_key_id"
                                                        " FROM admin_keys WHERE key_digest IN (",
                                                        Placeholders(digests.size()), ") AND revoke_time IS NULL LIMIT 1"));
    for (size_t i = 0; i < digests.size(); ++i) select->setString(static_cast<int>(i + 1), digests[i]);
    Rows rows(select->executeQuery());
    if (!rows->next()) return WithErrorInfo(absl::UnauthenticatedError("unknown or revoked admin key"), ErrorReason::kAdminKeyInvalid);
    stored_digest = rows->getString(3).asStdString();
    if (!MatchesAny(stored_digest, digests)) return WithErrorInfo(absl::UnauthenticatedError("unknown or revoked admin key"), ErrorReason::kAdminKeyInvalid);
    caller.admin_key_id = rows->getUInt64(1);
    caller.organization_id = rows->getUInt64(2);
    stored_under_newest = !rows->isNull(4) && rows->getString(4).asStdString() == newest_key_id;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;

  // The admin key's plaintext exists only here, so this is where its digest
  // moves to the newest HMAC key. A failure leaves the old digest, which
  // still works while its key is loaded.
  if (!stored_under_newest) {
    absl::Status upgraded = pool_->Run("moving an admin key digest to the newest key", [&](sql::Connection& connection) {
      Statement update = Prepare(connection,
                                 "UPDATE admin_keys SET key_digest = ?, digest_key_id = ?"
                                 " WHERE id = ? AND key_digest = ?");
      update->setString(1, digests[0]);
      update->setString(2, newest_key_id);
      update->setUInt64(3, caller.admin_key_id);
      update->setString(4, stored_digest);
      update->executeUpdate();
      return absl::OkStatus();
    });
    if (!upgraded.ok()) {
      spdlog::warn("cannot move the digest of admin key {} of organization {} to HMAC key {}: {}",
                   caller.admin_key_id, caller.organization_id, newest_key_id, upgraded.message());
    }
  }
  return caller;
}

absl::StatusOr<uint64_t> AuthStore::AuthenticateAdminKey(absl::string_view admin_key) {
  absl::StatusOr<AdminCaller> caller = AuthenticateAdmin(admin_key);
  if (!caller.ok()) return caller.status();
  return caller->organization_id;
}

absl::StatusOr<TokenClaims> AuthStore::CheckToken(absl::string_view token) {
  if (token.empty()) {
    return WithErrorInfo(InvalidFieldError("token", "token is required"), ErrorReason::kTokenMissing);
  }
  absl::Status format = ValidateTokenFormat(TokenKind::kAppToken, token);
  if (!format.ok()) return format;

  // One digest per loaded HMAC key; each costs one HMAC and one unique
  // index probe.
  std::vector<std::string> digests = DigestsUnderEveryKey(token);
  TokenClaims claims;
  std::optional<int64_t> expire_micros;
  credential_lookups_.fetch_add(1, std::memory_order_relaxed);
  absl::Status status = pool_->Run("checking an access token", [&](sql::Connection& connection) {
    // One statement reads the token, the app and the log's latest sequence
    // from one InnoDB read view, under REPEATABLE READ and READ COMMITTED
    // alike, and takes no locks. So the claims reflect every invalidation
    // up to last_sequence and none after it.
    //
    // Rotated tokens keep their row with revoke_time set, so the statement
    // finds them too. The message below is for the server's log only,
    // because TokenServiceImpl returns the same error for every failed check.
    Statement select = Prepare(connection,
                               "SELECT s.last_sequence, t.token_digest, a.organization_id, a.id, a.scope_bits, t.id,"
                               " TIMESTAMPDIFF(MICROSECOND, '1970-01-01', t.expire_time),"
                               " TIMESTAMPDIFF(MICROSECOND, '1970-01-01', t.overlap_end_time),"
                               " t.revoke_time IS NULL, a.ip_allowlist"
                               " FROM invalidation_sequence s"
                               " LEFT JOIN (access_tokens t JOIN private_apps a ON a.id = t.app_id)"
                               " ON t.token_digest IN (" + Placeholders(digests.size()) + ")"
                               " WHERE s.id = 1 LIMIT 1");
    for (size_t i = 0; i < digests.size(); ++i) select->setString(static_cast<int>(i + 1), digests[i]);
    Rows rows(select->executeQuery());
    if (!rows->next()) {
      return WithErrorInfo(absl::InternalError("the invalidation_sequence row with id 1 is missing"),
                           ErrorReason::kInternalError);
    }
    if (rows->isNull(2) || !MatchesAny(rows->getString(2).asStdString(), digests)) {
      return WithErrorInfo(absl::UnauthenticatedError("unknown access token, or its app was deleted"),
                           ErrorReason::kTokenInvalid);
    }
    if (!rows->getBoolean(9)) {
      return WithErrorInfo(
          absl::UnauthenticatedError("the access token was rotated; use the app's current token"),
          ErrorReason::kTokenInvalid);
    }
    claims.invalidation_sequence = rows->getInt64(1);
    claims.organization_id = rows->getUInt64(3);
    claims.app_id = rows->getUInt64(4);
    claims.scopes = rows->getUInt(5);
    claims.token_id = rows->getUInt64(6);
    expire_micros = EarlierOf(OptionalInt64(*rows, 7), OptionalInt64(*rows, 8));
    claims.ip_allowlist = SplitIpAllowlist(rows->getString(10).asStdString());
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (expire_micros.has_value()) {
    claims.expire_time = absl::FromUnixMicros(*expire_micros);
    if (claims.expire_time <= clock_()) {
      return WithErrorInfo(absl::UnauthenticatedError("the access token has expired"), ErrorReason::kTokenInvalid);
    }
  }
  return claims;
}

absl::Status AuthStore::ReportTokenUsage(const v1::ReportTokenUsageRequest& request) {
  if (request.usages_size() > kMaxUsagesPerReport) {
    return absl::InvalidArgumentError(absl::StrCat("a report carries at most ", kMaxUsagesPerReport,
                                                   " usages, got ", request.usages_size()));
  }
  struct Use {
    uint64_t token_id;
    std::string minute;
    std::string peer;
  };
  std::vector<Use> uses;
  uses.reserve(request.usages_size());
  for (const v1::TokenUsage& usage : request.usages()) {
    absl::StatusOr<uint64_t> token_id = ParseId("usages.token_id", usage.token_id());
    if (!token_id.ok()) return token_id.status();
    if (!usage.has_last_used_time()) return absl::InvalidArgumentError("usages.last_used_time is required");
    int64_t micros = google::protobuf::util::TimeUtil::TimestampToMicroseconds(usage.last_used_time());
    // Stored to the minute: finer times would only suggest a precision
    // that the once-a-minute reports do not have.
    absl::Time minute = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::FromUnixMicros(micros)) / 60 * 60);
    std::string peer = usage.peer_address().substr(0, kMaxPeerChars);
    if (!ValidateText("usages.peer_address", peer, TextRules{.max_code_points = kMaxPeerChars}).ok()) peer.clear();
    uses.push_back(Use{*token_id, ToDatetime(absl::ToUnixMicros(minute)), std::move(peer)});
  }
  return pool_->Run("recording token usage", [&](sql::Connection& connection) {
    // Autocommit per row: each update locks one token row briefly, and a
    // use older than the stored one changes nothing.
    Statement update = Prepare(connection,
                               "UPDATE access_tokens SET last_used_time = ?, last_used_peer = ?"
                               " WHERE id = ? AND (last_used_time IS NULL OR last_used_time <= ?)");
    for (const Use& use : uses) {
      update->setString(1, use.minute);
      update->setString(2, use.peer);
      update->setUInt64(3, use.token_id);
      update->setString(4, use.minute);
      update->executeUpdate();
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::CreatePrivateAppResponse> AuthStore::CreatePrivateApp(const AdminCaller& caller,
                                                                         const v1::CreatePrivateAppRequest& request) {
  if (!request.has_private_app()) return InvalidFieldError("private_app", "private_app is required");
  const v1::PrivateApp& input = request.private_app();
  absl::Status valid = ValidateDisplayName(input.display_name());
  if (valid.ok()) valid = ValidateDescription(input.description());
  if (!valid.ok()) return valid;
  absl::StatusOr<std::string> logo_mime_type = ValidateLogoField(input.logo());
  if (!logo_mime_type.ok()) return logo_mime_type.status();
  absl::StatusOr<ScopeMask> scopes = ValidateScopes(input.scopes());
  if (!scopes.ok()) return scopes.status();
  int64_t now_micros = absl::ToUnixMicros(clock_());
  absl::StatusOr<std::optional<int64_t>> expire_micros = ValidateExpireTime(
      "private_app.token_expire_time", input.has_token_expire_time() ? &input.token_expire_time() : nullptr,
      now_micros);
  if (!expire_micros.ok()) return expire_micros.status();
  absl::StatusOr<std::vector<std::string>> ip_allowlist = ValidateIpAllowlist(input.ip_allowlist());
  if (!ip_allowlist.ok()) return ip_allowlist.status();

  uint64_t organization_id = caller.organization_id;
  AppRow row;
  row.organization_id = organization_id;
  row.display_name = input.display_name();
  row.description = input.description();
  row.logo = input.logo();
  row.logo_mime_type = *logo_mime_type;
  row.scopes = *scopes;
  row.create_micros = row.update_micros = now_micros;
  row.token_expire_micros = *expire_micros;
  row.ip_allowlist = *std::move(ip_allowlist);
  std::string now = ToDatetime(row.create_micros);

  // Runs again on a deadlock, so it sets the outputs only at the end.
  std::string access_token;
  absl::Status status = pool_->RunInTransaction("creating a private app", [&](sql::Connection& connection) {
    // Locking the organization row serializes concurrent creates in one
    // organization, so the count below cannot go stale before the insert.
    absl::StatusOr<bool> revealable = ReadRevealEnabled(connection, organization_id, /*for_update=*/true);
    if (!revealable.ok()) return revealable.status();

    Statement count = Prepare(connection, "SELECT COUNT(*) FROM private_apps WHERE organization_id = ?");
    count->setUInt64(1, organization_id);
    Rows counted(count->executeQuery());
    counted->next();
    if (counted->getInt64(1) >= kMaxAppsPerOrganization) {
      return WithErrorInfo(
          absl::FailedPreconditionError(absl::StrCat("organization already has ", kMaxAppsPerOrganization,
                                                     " private apps; delete one before creating another")),
          ErrorReason::kAppLimitReached, {{"max_apps_per_organization", absl::StrCat(kMaxAppsPerOrganization)}});
    }

    Statement insert_app =
        Prepare(connection,
                "INSERT INTO private_apps (organization_id, display_name, description, logo,"
                " logo_mime_type, scope_bits, create_time, update_time, ip_allowlist)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    insert_app->setUInt64(1, organization_id);
    insert_app->setString(2, row.display_name);
    insert_app->setString(3, row.description);
    BindLogo(*insert_app, 4, row.logo);
    insert_app->setString(5, row.logo_mime_type);
    insert_app->setUInt(6, row.scopes);
    insert_app->setString(7, now);
    insert_app->setString(8, now);
    insert_app->setString(9, JoinIpAllowlist(row.ip_allowlist));
    insert_app->executeUpdate();
    uint64_t app_id = LastInsertId(connection);

    absl::StatusOr<IssuedToken> issued = IssueAccessToken(secrets_, random_, app_id, *revealable);
    if (!issued.ok()) return issued.status();
    InsertAccessToken(connection, app_id, *issued, secrets_.token_encryption_key_id, now, row.token_expire_micros);
    InsertAuditEvent(connection, caller,
                     AuditRecord{.app_id = app_id,
                                 .action = v1::AUDIT_ACTION_APP_CREATED,
                                 .scopes_after = row.scopes,
                                 .token_hint = issued->hint,
                                 .ip_allowlist_after = row.ip_allowlist},
                     now);

    row.id = app_id;
    row.token_hint = issued->hint;
    access_token = std::move(issued->token);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;

  v1::CreatePrivateAppResponse response;
  ToProto(row, now_micros, response.mutable_private_app());
  response.set_access_token(std::move(access_token));
  return response;
}

absl::StatusOr<v1::GetPrivateAppResponse> AuthStore::GetPrivateApp(const AdminCaller& caller,
                                                                   const v1::GetPrivateAppRequest& request) {
  absl::StatusOr<uint64_t> app_id = ParseId("id", request.id());
  if (!app_id.ok()) return app_id.status();

  int64_t now_micros = absl::ToUnixMicros(clock_());
  v1::GetPrivateAppResponse response;
  absl::Status status = pool_->Run("reading a private app", [&](sql::Connection& connection) -> absl::Status {
    absl::StatusOr<AppRow> row = LoadApp(connection, caller.organization_id, *app_id, /*for_update=*/false);
    if (!row.ok()) return row.status();
    ToProto(*row, now_micros, response.mutable_private_app());
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::ListPrivateAppsResponse> AuthStore::ListPrivateApps(const AdminCaller& caller,
                                                                       const v1::ListPrivateAppsRequest& request) {
  if (request.page_size() < 0) {
    return InvalidFieldError("page_size", absl::StrCat("page_size must not be negative, got ", request.page_size()));
  }
  uint64_t organization_id = caller.organization_id;
  int page_size = request.page_size() == 0 ? kMaxPageSize : std::min(request.page_size(), kMaxPageSize);
  std::string request_scope = ListRequestScope(organization_id);
  uint64_t after_id = 0;
  if (!request.page_token().empty()) {
    absl::StatusOr<uint64_t> decoded = page_tokens_.Decode(request_scope, request.page_token());
    if (!decoded.ok()) return decoded.status();
    after_id = *decoded;
  }

  int64_t now_micros = absl::ToUnixMicros(clock_());
  std::vector<AppRow> rows;
  absl::Status status = pool_->Run("listing private apps", [&](sql::Connection& connection) {
    rows.clear();
    // One row more than the page shows whether another page follows.
    Statement select = Prepare(connection, absl::StrCat(kSelectApp,
                                                        " WHERE a.organization_id = ? AND a.id > ?"
                                                        " ORDER BY a.id LIMIT ?"));
    select->setUInt64(1, organization_id);
    select->setUInt64(2, after_id);
    select->setInt(3, page_size + 1);
    Rows result(select->executeQuery());
    while (result->next()) rows.push_back(ReadApp(*result));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;

  v1::ListPrivateAppsResponse response;
  size_t response_bytes = 0;
  for (const AppRow& row : rows) {
    if (response.private_apps_size() == page_size) break;
    v1::PrivateApp app;
    ToProto(row, now_micros, &app);
    size_t app_bytes = app.ByteSizeLong();
    if (response.private_apps_size() > 0 && response_bytes + app_bytes > kListResponseBudgetBytes) break;
    response_bytes += app_bytes;
    *response.add_private_apps() = std::move(app);
  }
  if (static_cast<size_t>(response.private_apps_size()) < rows.size()) {
    response.set_next_page_token(
        page_tokens_.Encode(request_scope, rows[response.private_apps_size() - 1].id));
  }
  return response;
}

absl::StatusOr<v1::UpdatePrivateAppResponse> AuthStore::UpdatePrivateApp(const AdminCaller& caller,
                                                                         const v1::UpdatePrivateAppRequest& request) {
  if (!request.has_private_app()) return InvalidFieldError("private_app", "private_app is required");
  const v1::PrivateApp& input = request.private_app();
  absl::StatusOr<uint64_t> app_id = ParseId("private_app.id", input.id());
  if (!app_id.ok()) return app_id.status();

  // Checks the mask and the new values before touching the database.
  if (request.update_mask().paths().empty()) {
    return InvalidFieldError(
        "update_mask.paths",
        "update_mask must name at least one of display_name, description, logo, scopes, token_expire_time and "
        "ip_allowlist");
  }
  bool set_display_name = false;
  bool set_description = false;
  bool set_logo = false;
  bool set_scopes = false;
  bool set_expire_time = false;
  bool set_ip_allowlist = false;
  for (const std::string& path : request.update_mask().paths()) {
    if (path == kDisplayNamePath) {
      set_display_name = true;
    } else if (path == kDescriptionPath) {
      set_description = true;
    } else if (path == kLogoPath) {
      set_logo = true;
    } else if (path == kScopesPath) {
      set_scopes = true;
    } else if (path == kTokenExpireTimePath) {
      set_expire_time = true;
    } else if (path == kIpAllowlistPath) {
      set_ip_allowlist = true;
    } else if (std::find(std::begin(kOutputOnlyPaths), std::end(kOutputOnlyPaths), path) !=
               std::end(kOutputOnlyPaths)) {
      return InvalidFieldError(
          "update_mask.paths",
          absl::StrCat("update_mask path \"", path, "\" is an output-only field and cannot be updated"));
    } else {
      return InvalidFieldError(
          "update_mask.paths",
          absl::StrCat("update_mask path \"", path,
                       "\" is not an updatable field; use display_name, description, logo, scopes, "
                       "token_expire_time or ip_allowlist"));
    }
  }
  if (set_display_name) {
    absl::Status valid = ValidateDisplayName(input.display_name());
    if (!valid.ok()) return valid;
  }
  if (set_description) {
    absl::Status valid = ValidateDescription(input.description());
    if (!valid.ok()) return valid;
  }
  std::string logo_mime_type;
  if (set_logo) {
    absl::StatusOr<std::string> mime_type = ValidateLogoField(input.logo());
    if (!mime_type.ok()) return mime_type.status();
    logo_mime_type = *std::move(mime_type);
  }
  ScopeMask scopes = 0;
  if (set_scopes) {
    absl::StatusOr<ScopeMask> mask = ValidateScopes(input.scopes());
    if (!mask.ok()) return mask.status();
    scopes = *mask;
  }
  int64_t now_micros = absl::ToUnixMicros(clock_());
  std::optional<int64_t> expire_micros;
  if (set_expire_time) {
    absl::StatusOr<std::optional<int64_t>> valid = ValidateExpireTime(
        "private_app.token_expire_time", input.has_token_expire_time() ? &input.token_expire_time() : nullptr,
        now_micros);
    if (!valid.ok()) return valid.status();
    expire_micros = *valid;
  }
  std::vector<std::string> ip_allowlist;
  if (set_ip_allowlist) {
    absl::StatusOr<std::vector<std::string>> valid = ValidateIpAllowlist(input.ip_allowlist());
    if (!valid.ok()) return valid.status();
    ip_allowlist = *std::move(valid);
  }
  std::string now = ToDatetime(now_micros);
  uint64_t organization_id = caller.organization_id;

  // Runs again on a deadlock, so it sets the outputs only at the end.
  AppRow updated;
  int64_t sequence = 0;
  absl::Status status =
      pool_->RunInTransaction("updating a private app", [&](sql::Connection& connection) -> absl::Status {
        absl::StatusOr<AppRow> row = LoadApp(connection, organization_id, *app_id, /*for_update=*/true);
        if (!row.ok()) return row.status();
        ScopeMask scopes_before = row->scopes;
        std::vector<std::string> ip_allowlist_before = row->ip_allowlist;
        // Only a different scope set, expiry or IP allowlist changes what
        // the token grants. A name, description or logo edit needs no log
        // entry, and neither do the same values again. The same ranges in
        // another order are a change too: the order is shown back.
        bool scopes_changed = set_scopes && row->scopes != scopes;
        bool expiry_changed = set_expire_time && row->token_expire_micros != expire_micros;
        // An expired token stays expired, because a later or removed expiry
        // would bring back a credential that callers and the audit log treat
        // as ended. The clock is read after the row lock, so a token that
        // expired while this edit waited counts as expired.
        if (expiry_changed && row->token_expire_micros.has_value() &&
            *row->token_expire_micros <= absl::ToUnixMicros(clock_())) {
          using google::protobuf::util::TimeUtil;
          return absl::FailedPreconditionError(
              absl::StrCat("the access token of private app ", *app_id, " expired at ",
                           TimeUtil::ToString(TimeUtil::MicrosecondsToTimestamp(*row->token_expire_micros)),
                           " and cannot be extended; rotate the token to issue a new one"));
        }
        bool ip_allowlist_changed = set_ip_allowlist && row->ip_allowlist != ip_allowlist;
        std::vector<std::string> changed_fields;
        if (set_display_name && row->display_name != input.display_name()) {
          changed_fields.emplace_back(kDisplayNamePath);
        }
        if (set_description && row->description != input.description()) {
          changed_fields.emplace_back(kDescriptionPath);
        }
        if (set_logo && row->logo != input.logo()) changed_fields.emplace_back(kLogoPath);
        if (expiry_changed) changed_fields.emplace_back(kTokenExpireTimePath);

        if (set_display_name) row->display_name = input.display_name();
        if (set_description) row->description = input.description();
        if (set_logo) {
          row->logo = input.logo();
          row->logo_mime_type = logo_mime_type;
        }
        if (set_scopes) row->scopes = scopes;
        if (set_expire_time) row->token_expire_micros = expire_micros;
        if (set_ip_allowlist) row->ip_allowlist = ip_allowlist;
        row->update_micros = now_micros;

        Statement update = Prepare(connection,
                                   "UPDATE private_apps SET display_name = ?, description = ?, logo = ?,"
                                   " logo_mime_type = ?, scope_bits = ?, update_time = ?, ip_allowlist = ?"
                                   " WHERE organization_id = ? AND id = ?");
        update->setString(1, row->display_name);
        update->setString(2, row->description);
        BindLogo(*update, 3, row->logo);
        update->setString(4, row->logo_mime_type);
        update->setUInt(5, row->scopes);
        update->setString(6, now);
        update->setString(7, JoinIpAllowlist(row->ip_allowlist));
        update->setUInt64(8, organization_id);
        update->setUInt64(9, *app_id);
        update->executeUpdate();

        if (expiry_changed) {
          Statement expire = Prepare(connection,
                                     "UPDATE access_tokens SET expire_time = ?"
                                     " WHERE app_id = ? AND revoke_time IS NULL AND overlap_end_time IS NULL");
          BindOptionalTime(*expire, 1, expire_micros);
          expire->setUInt64(2, *app_id);
          expire->executeUpdate();
        }

        // A scope or IP allowlist change is its own event, so that it can be
        // listed by action. Every other update is an APP_UPDATED event, even
        // one that changes nothing.
        if (scopes_changed) {
          InsertAuditEvent(connection, caller,
                           AuditRecord{.app_id = *app_id,
                                       .action = v1::AUDIT_ACTION_SCOPES_CHANGED,
                                       .scopes_before = scopes_before,
                                       .scopes_after = row->scopes,
                                       .changed_fields = {std::string(kScopesPath)}},
                           now);
        }
        if (ip_allowlist_changed) {
          InsertAuditEvent(connection, caller,
                           AuditRecord{.app_id = *app_id,
                                       .action = v1::AUDIT_ACTION_IP_ALLOWLIST_CHANGED,
                                       .changed_fields = {std::string(kIpAllowlistPath)},
                                       .ip_allowlist_before = ip_allowlist_before,
                                       .ip_allowlist_after = row->ip_allowlist},
                           now);
        }
        if ((!scopes_changed && !ip_allowlist_changed) || !changed_fields.empty()) {
          InsertAuditEvent(connection, caller,
                           AuditRecord{.app_id = *app_id,
                                       .action = v1::AUDIT_ACTION_APP_UPDATED,
                                       .scopes_before = scopes_before,
                                       .scopes_after = row->scopes,
                                       .changed_fields = changed_fields},
                           now);
        }

        int64_t appended = 0;
        if (scopes_changed || expiry_changed || ip_allowlist_changed) {
          // One entry drops every cached check of the app, whatever changed;
          // the reason names the first change in this order.
          v1::InvalidationReason reason = scopes_changed         ? v1::INVALIDATION_REASON_SCOPES_CHANGED
                                          : ip_allowlist_changed ? v1::INVALIDATION_REASON_IP_ALLOWLIST_CHANGED
                                                                 : v1::INVALIDATION_REASON_TOKEN_EXPIRY_CHANGED;
          absl::StatusOr<int64_t> entry = AppendInvalidation(connection, organization_id, *app_id, reason, now);
          if (!entry.ok()) return entry.status();
          appended = *entry;
        }
        updated = *std::move(row);
        sequence = appended;
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  if (sequence != 0) NotifyInvalidation(sequence);

  v1::UpdatePrivateAppResponse response;
  ToProto(updated, now_micros, response.mutable_private_app());
  response.set_invalidation_sequence(sequence);
  return response;
}

absl::StatusOr<v1::DeletePrivateAppResponse> AuthStore::DeletePrivateApp(const AdminCaller& caller,
                                                                         const v1::DeletePrivateAppRequest& request) {
  absl::StatusOr<uint64_t> app_id = ParseId("id", request.id());
  if (!app_id.ok()) return app_id.status();

  std::string now = ToDatetime(absl::ToUnixMicros(clock_()));
  uint64_t organization_id = caller.organization_id;

  int64_t sequence = 0;
  absl::Status status =
      pool_->RunInTransaction("deleting a private app", [&](sql::Connection& connection) -> absl::Status {
        absl::StatusOr<AppRow> row = LoadApp(connection, organization_id, *app_id, /*for_update=*/true);
        if (!row.ok()) return row.status();
        // Deleting the app deletes its tokens too (ON DELETE CASCADE), so the
        // token stops working when this transaction commits.
        Statement remove =
            Prepare(connection, "DELETE FROM private_apps WHERE organization_id = ? AND id = ?");
        remove->setUInt64(1, organization_id);
        remove->setUInt64(2, *app_id);
        if (remove->executeUpdate() == 0) return AppNotFound(*app_id);
        InsertAuditEvent(connection, caller,
                         AuditRecord{.app_id = *app_id,
                                     .action = v1::AUDIT_ACTION_APP_DELETED,
                                     .scopes_before = row->scopes,
                                     .token_hint = row->token_hint,
                                     .ip_allowlist_before = row->ip_allowlist},
                         now);
        absl::StatusOr<int64_t> entry = AppendInvalidation(connection, organization_id, *app_id,
                                                           v1::INVALIDATION_REASON_APP_DELETED, now);
        if (!entry.ok()) return entry.status();
        sequence = *entry;
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  NotifyInvalidation(sequence);

  v1::DeletePrivateAppResponse response;
  response.set_invalidation_sequence(sequence);
  return response;
}

absl::StatusOr<v1::GetAccessTokenResponse> AuthStore::GetAccessToken(const AdminCaller& caller,
                                                                     const v1::GetAccessTokenRequest& request) {
  absl::StatusOr<uint64_t> app_id = ParseId("id", request.id());
  if (!app_id.ok()) return app_id.status();
  std::string now = ToDatetime(absl::ToUnixMicros(clock_()));

  // The token is decrypted inside the transaction, so that the audit event
  // commits only for a reveal that succeeded.
  std::string token;
  absl::Status status =
      pool_->RunInTransaction("revealing an access token", [&](sql::Connection& connection) -> absl::Status {
        Statement select = Prepare(connection,
                                   "SELECT t.token_ciphertext, t.encryption_key_id, t.token_hint, o.token_reveal_enabled"
                                   " FROM private_apps a JOIN organizations o ON o.id = a.organization_id"
                                   " JOIN access_tokens t ON t.app_id = a.id"
                                   " WHERE a.organization_id = ? AND a.id = ?"
                                   " AND t.revoke_time IS NULL AND t.overlap_end_time IS NULL");
        select->setUInt64(1, caller.organization_id);
        select->setUInt64(2, *app_id);
        Rows rows(select->executeQuery());
        if (!rows->next()) return AppNotFound(*app_id);
        std::string ciphertext = rows->getString(1).asStdString();
        std::string key_id = rows->getString(2).asStdString();
        std::string hint = rows->getString(3).asStdString();
        bool reveal_enabled = rows->getBoolean(4);
        // TODO: give this and the other FAILED_PRECONDITION errors without an
        // ErrorInfo (no stored token, no running overlap, expired token edit)
        // their own reasons, listed in docs/clients.md.
        if (!reveal_enabled) {
          return absl::FailedPreconditionError(
              "the organization's policy turns token reveal off; rotate the token to get a new one, or turn "
              "token_reveal_enabled on with UpdateOrganizationPolicy");
        }
        if (ciphertext.empty()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "the access token of private app ", *app_id,
              " was issued while token reveal was off, so no copy of it is stored; rotate the token"));
        }
        const std::string* key = FindEncryptionKey(key_id);
        if (key == nullptr) {
          return WithErrorInfo(
              absl::FailedPreconditionError(absl::StrCat(
                  "the access token of private app ", *app_id, " was encrypted with key ", key_id,
                  ", which this server does not load (newest key ", secrets_.token_encryption_key_id,
                  "); restore that token_encryption_key or rotate the token")),
              ErrorReason::kEncryptionKeyMismatch,
              {{"token_key_id", key_id}, {"server_key_id", secrets_.token_encryption_key_id}});
        }
        absl::StatusOr<std::string> opened = OpenAes256Gcm(*key, ciphertext, TokenAssociatedData(*app_id, key_id));
        if (!opened.ok()) {
          spdlog::error("access token of private app {} failed to decrypt: {}", *app_id,
                        opened.status().message());
          return WithErrorInfo(opened.status(), ErrorReason::kInternalError);
        }
        InsertAuditEvent(
            connection, caller,
            AuditRecord{.app_id = *app_id, .action = v1::AUDIT_ACTION_TOKEN_REVEALED, .token_hint = hint}, now);
        token = *std::move(opened);
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  v1::GetAccessTokenResponse response;
  response.set_access_token(std::move(token));
  return response;
}

absl::StatusOr<v1::RotateAccessTokenResponse> AuthStore::RotateAccessToken(
    const AdminCaller& caller, const v1::RotateAccessTokenRequest& request) {
  absl::StatusOr<uint64_t> app_id = ParseId("id", request.id());
  if (!app_id.ok()) return app_id.status();
  absl::Duration overlap;
  if (request.has_previous_token_overlap()) {
    const google::protobuf::Duration& duration = request.previous_token_overlap();
    overlap = absl::Seconds(duration.seconds()) + absl::Nanoseconds(duration.nanos());
    if (overlap < absl::ZeroDuration() || overlap > kMaxTokenOverlap) {
      return InvalidFieldError("previous_token_overlap",
                               absl::StrCat("previous_token_overlap must be between 0s and 604800s (7 days), got ",
                                            absl::ToDoubleSeconds(overlap), "s"));
    }
  }
  int64_t now_micros = absl::ToUnixMicros(clock_());
  absl::StatusOr<std::optional<int64_t>> new_expire_micros = ValidateExpireTime(
      "new_token_expire_time", request.has_new_token_expire_time() ? &request.new_token_expire_time() : nullptr,
      now_micros);
  if (!new_expire_micros.ok()) return new_expire_micros.status();
  std::string now = ToDatetime(now_micros);
  uint64_t organization_id = caller.organization_id;

  AppRow updated;
  std::string access_token;
  int64_t sequence = 0;
  absl::Status status =
      pool_->RunInTransaction("rotating an access token", [&](sql::Connection& connection) -> absl::Status {
        // The row lock makes concurrent rotations of one app take turns, so
        // each app keeps exactly one current token and at most one previous.
        absl::StatusOr<AppRow> row = LoadApp(connection, organization_id, *app_id, /*for_update=*/true);
        if (!row.ok()) return row.status();
        absl::StatusOr<bool> revealable = ReadRevealEnabled(connection, organization_id, /*for_update=*/false);
        if (!revealable.ok()) return revealable.status();

        // The token that was previous before this rotation stops now,
        // whether or not its overlap had ended.
        Statement revoke_previous = Prepare(connection,
                                            "UPDATE access_tokens SET revoke_time = ?"
                                            " WHERE app_id = ? AND revoke_time IS NULL AND overlap_end_time IS NOT NULL");
        revoke_previous->setString(1, now);
        revoke_previous->setUInt64(2, *app_id);
        revoke_previous->executeUpdate();

        Statement retire = Prepare(connection, overlap > absl::ZeroDuration()
                                                   ? "UPDATE access_tokens SET overlap_end_time = ?"
                                                     " WHERE app_id = ? AND revoke_time IS NULL"
                                                   : "UPDATE access_tokens SET revoke_time = ?"
                                                     " WHERE app_id = ? AND revoke_time IS NULL");
        retire->setString(1, overlap > absl::ZeroDuration()
                                 ? ToDatetime(now_micros + absl::ToInt64Microseconds(overlap))
                                 : now);
        retire->setUInt64(2, *app_id);
        retire->executeUpdate();

        absl::StatusOr<IssuedToken> issued = IssueAccessToken(secrets_, random_, *app_id, *revealable);
        if (!issued.ok()) return issued.status();
        InsertAccessToken(connection, *app_id, *issued, secrets_.token_encryption_key_id, now, *new_expire_micros);
        TouchApp(connection, *app_id, now);
        InsertAuditEvent(connection, caller,
                         AuditRecord{.app_id = *app_id,
                                     .action = v1::AUDIT_ACTION_TOKEN_ROTATED,
                                     .scopes_before = row->scopes,
                                     .scopes_after = row->scopes,
                                     .token_hint = issued->hint},
                         now);

        // Even with an overlap the entry is needed: cached checks of the
        // old token carry no expiry yet, and a rotation during an overlap
        // revokes the token that was previous before it.
        absl::StatusOr<int64_t> entry = AppendInvalidation(connection, organization_id, *app_id,
                                                           v1::INVALIDATION_REASON_TOKEN_ROTATED, now);
        if (!entry.ok()) return entry.status();

        absl::StatusOr<AppRow> reloaded = LoadApp(connection, organization_id, *app_id, /*for_update=*/false);
        if (!reloaded.ok()) return reloaded.status();
        updated = *std::move(reloaded);
        access_token = std::move(issued->token);
        sequence = *entry;
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  NotifyInvalidation(sequence);

  v1::RotateAccessTokenResponse response;
  response.set_access_token(std::move(access_token));
  ToProto(updated, now_micros, response.mutable_private_app());
  response.set_invalidation_sequence(sequence);
  return response;
}

absl::StatusOr<std::pair<v1::PrivateApp, int64_t>> AuthStore::FinishOverlap(const AdminCaller& caller,
                                                                          absl::string_view id, bool cancel) {
  absl::StatusOr<uint64_t> app_id = ParseId("id", id);
  if (!app_id.ok()) return app_id.status();
  int64_t now_micros = absl::ToUnixMicros(clock_());
  std::string now = ToDatetime(now_micros);
  uint64_t organization_id = caller.organization_id;

  AppRow updated;
  int64_t sequence = 0;
  absl::Status status = pool_->RunInTransaction(
      cancel ? "cancelling a token rotation" : "ending a token overlap",
      [&](sql::Connection& connection) -> absl::Status {
        absl::StatusOr<AppRow> row = LoadApp(connection, organization_id, *app_id, /*for_update=*/true);
        if (!row.ok()) return row.status();
        if (!row->OverlapRunning(now_micros)) {
          return absl::FailedPreconditionError(absl::StrCat(
              "private app ", *app_id, " has no running rotation overlap; rotate with previous_token_overlap first"));
        }

        std::string revoked_hint;
        if (cancel) {
          // The new token goes; the previous one becomes current again with
          // its own expiry.
          Statement revoke_current = Prepare(connection,
                                             "UPDATE access_tokens SET revoke_time = ?"
                                             " WHERE app_id = ? AND revoke_time IS NULL AND overlap_end_time IS NULL");
          revoke_current->setString(1, now);
          revoke_current->setUInt64(2, *app_id);
          revoke_current->executeUpdate();
          Statement restore = Prepare(connection,
                                      "UPDATE access_tokens SET overlap_end_time = NULL"
                                      " WHERE app_id = ? AND revoke_time IS NULL");
          restore->setUInt64(1, *app_id);
          restore->executeUpdate();
          revoked_hint = row->token_hint;
        } else {
          Statement revoke_previous =
              Prepare(connection,
                      "UPDATE access_tokens SET revoke_time = ?"
                      " WHERE app_id = ? AND revoke_time IS NULL AND overlap_end_time IS NOT NULL");
          revoke_previous->setString(1, now);
          revoke_previous->setUInt64(2, *app_id);
          revoke_previous->executeUpdate();
          revoked_hint = row->previous_hint;
        }
        TouchApp(connection, *app_id, now);
        InsertAuditEvent(connection, caller,
                         AuditRecord{.app_id = *app_id,
                                     .action = cancel ? v1::AUDIT_ACTION_TOKEN_ROTATION_CANCELLED
                                                      : v1::AUDIT_ACTION_TOKEN_OVERLAP_ENDED,
                                     .scopes_before = row->scopes,
                                     .scopes_after = row->scopes,
                                     .token_hint = revoked_hint},
                         now);
        absl::StatusOr<int64_t> entry = AppendInvalidation(
            connection, organization_id, *app_id,
            cancel ? v1::INVALIDATION_REASON_TOKEN_ROTATION_CANCELLED : v1::INVALIDATION_REASON_TOKEN_OVERLAP_ENDED,
            now);
        if (!entry.ok()) return entry.status();

        absl::StatusOr<AppRow> reloaded = LoadApp(connection, organization_id, *app_id, /*for_update=*/false);
        if (!reloaded.ok()) return reloaded.status();
        updated = *std::move(reloaded);
        sequence = *entry;
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  NotifyInvalidation(sequence);

  v1::PrivateApp app;
  ToProto(updated, now_micros, &app);
  return std::make_pair(std::move(app), sequence);
}

absl::StatusOr<v1::EndAccessTokenOverlapResponse> AuthStore::EndAccessTokenOverlap(
    const AdminCaller& caller, const v1::EndAccessTokenOverlapRequest& request) {
  absl::StatusOr<std::pair<v1::PrivateApp, int64_t>> result = FinishOverlap(caller, request.id(), /*cancel=*/false);
  if (!result.ok()) return result.status();
  v1::EndAccessTokenOverlapResponse response;
  *response.mutable_private_app() = std::move(result->first);
  response.set_invalidation_sequence(result->second);
  return response;
}

absl::StatusOr<v1::CancelAccessTokenRotationResponse> AuthStore::CancelAccessTokenRotation(
    const AdminCaller& caller, const v1::CancelAccessTokenRotationRequest& request) {
  absl::StatusOr<std::pair<v1::PrivateApp, int64_t>> result = FinishOverlap(caller, request.id(), /*cancel=*/true);
  if (!result.ok()) return result.status();
  v1::CancelAccessTokenRotationResponse response;
  *response.mutable_private_app() = std::move(result->first);
  response.set_invalidation_sequence(result->second);
  return response;
}

absl::StatusOr<v1::ListAuditEventsResponse> AuthStore::ListAuditEvents(const AdminCaller& caller,
                                                                       const v1::ListAuditEventsRequest& request) {
  using google::protobuf::util::TimeUtil;
  if (request.page_size() < 0) {
    return InvalidFieldError("page_size", absl::StrCat("page_size must not be negative, got ", request.page_size()));
  }
  int page_size =
      request.page_size() == 0 ? kDefaultAuditPageSize : std::min(request.page_size(), kMaxAuditPageSize);
  uint64_t app_id = 0;
  if (!request.app_id().empty()) {
    absl::StatusOr<uint64_t> parsed = ParseId("app_id", request.app_id());
    if (!parsed.ok()) return parsed.status();
    app_id = *parsed;
  }
  std::optional<int64_t> start_micros;
  std::optional<int64_t> end_micros;
  if (request.has_start_time()) start_micros = TimeUtil::TimestampToMicroseconds(request.start_time());
  if (request.has_end_time()) end_micros = TimeUtil::TimestampToMicroseconds(request.end_time());
  if (start_micros.has_value() && end_micros.has_value() && *start_micros > *end_micros) {
    return InvalidFieldError("start_time", "start_time must not be after end_time");
  }

  // The page token is bound to the organization and every filter, so it
  // cannot continue a different listing.
  std::string request_scope = absl::StrCat(
      "crm.auth.v1.PrivateAppService/ListAuditEvents organization_id=", caller.organization_id, " app_id=", app_id,
      " action=", request.action(), " start=", start_micros.value_or(-1), " end=", end_micros.value_or(-1));
  uint64_t before_id = std::numeric_limits<int64_t>::max();
  if (!request.page_token().empty()) {
    absl::StatusOr<uint64_t> decoded = page_tokens_.Decode(request_scope, request.page_token());
    if (!decoded.ok()) return decoded.status();
    before_id = *decoded;
  }

  std::string sql =
      "SELECT e.id, e.app_id, e.action, e.admin_key_id, COALESCE(k.key_hint, ''),"
      " TIMESTAMPDIFF(MICROSECOND, '1970-01-01', e.create_time), e.scopes_before, e.scopes_after,"
      " e.changed_fields, e.token_hint, e.ip_allowlist_before, e.ip_allowlist_after"
      " FROM audit_events e LEFT JOIN admin_keys k ON k.id = e.admin_key_id"
      " WHERE e.organization_id = ? AND e.id < ?";
  if (app_id != 0) sql += " AND e.app_id = ?";
  if (request.action() != v1::AUDIT_ACTION_UNSPECIFIED) sql += " AND e.action = ?";
  if (start_micros.has_value()) sql += " AND e.create_time >= ?";
  if (end_micros.has_value()) sql += " AND e.create_time < ?";
  sql += " ORDER BY e.id DESC LIMIT ?";

  v1::ListAuditEventsResponse response;
  uint64_t last_id = 0;
  bool more = false;
  absl::Status status = pool_->Run("listing audit events", [&](sql::Connection& connection) {
    response.clear_audit_events();
    more = false;
    Statement select = Prepare(connection, sql);
    int index = 1;
    select->setUInt64(index++, caller.organization_id);
    select->setUInt64(index++, before_id);
    if (app_id != 0) select->setUInt64(index++, app_id);
    if (request.action() != v1::AUDIT_ACTION_UNSPECIFIED) select->setInt(index++, request.action());
    if (start_micros.has_value()) select->setString(index++, ToDatetime(*start_micros));
    if (end_micros.has_value()) select->setString(index++, ToDatetime(*end_micros));
    // One row more than the page shows whether another page follows.
    select->setInt(index++, page_size + 1);
    Rows rows(select->executeQuery());
    while (rows->next()) {
      if (response.audit_events_size() == page_size) {
        more = true;
        continue;  // Reads the rest, so the result set is consumed.
      }
      v1::AuditEvent* event = response.add_audit_events();
      last_id = rows->getUInt64(1);
      event->set_id(absl::StrCat(last_id));
      if (!rows->isNull(2)) event->set_app_id(absl::StrCat(rows->getUInt64(2)));
      int action = rows->getInt(3);
      event->set_action(v1::AuditAction_IsValid(action) ? static_cast<v1::AuditAction>(action)
                                                        : v1::AUDIT_ACTION_UNSPECIFIED);
      event->set_admin_key_id(absl::StrCat(rows->getUInt64(4)));
      event->set_admin_key_hint(rows->getString(5).asStdString());
      *event->mutable_create_time() = TimeUtil::MicrosecondsToTimestamp(rows->getInt64(6));
      if (!rows->isNull(7)) ScopeMaskToProto(rows->getUInt(7), event->mutable_scopes_before());
      if (!rows->isNull(8)) ScopeMaskToProto(rows->getUInt(8), event->mutable_scopes_after());
      std::string fields = rows->getString(9).asStdString();
      for (absl::string_view field : absl::StrSplit(fields, ',', absl::SkipEmpty())) {
        event->add_changed_fields(std::string(field));
      }
      event->set_token_hint(rows->getString(10).asStdString());
      if (!rows->isNull(11)) {
        for (std::string& range : SplitIpAllowlist(rows->getString(11).asStdString())) {
          event->add_ip_allowlist_before(std::move(range));
        }
      }
      if (!rows->isNull(12)) {
        for (std::string& range : SplitIpAllowlist(rows->getString(12).asStdString())) {
          event->add_ip_allowlist_after(std::move(range));
        }
      }
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (more) response.set_next_page_token(page_tokens_.Encode(request_scope, last_id));
  return response;
}

absl::StatusOr<v1::GetOrganizationPolicyResponse> AuthStore::GetOrganizationPolicy(
    const AdminCaller& caller, const v1::GetOrganizationPolicyRequest& request) {
  v1::GetOrganizationPolicyResponse response;
  absl::Status status = pool_->Run("reading an organization policy", [&](sql::Connection& connection) {
    absl::StatusOr<v1::OrganizationPolicy> policy = ReadPolicy(connection, caller.organization_id, false);
    if (!policy.ok()) return policy.status();
    *response.mutable_policy() = *std::move(policy);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::UpdateOrganizationPolicyResponse> AuthStore::UpdateOrganizationPolicy(
    const AdminCaller& caller, const v1::UpdateOrganizationPolicyRequest& request) {
  if (request.update_mask().paths().empty()) {
    return InvalidFieldError("update_mask", absl::StrCat("update_mask must name at least one of ",
                                                         absl::StrJoin(kPolicyPaths, ", ")));
  }
  for (const std::string& path : request.update_mask().paths()) {
    if (std::find(std::begin(kPolicyPaths), std::end(kPolicyPaths), path) == std::end(kPolicyPaths)) {
      return InvalidFieldError("update_mask", absl::StrCat("update_mask path \"", path,
                                                           "\" is not a policy field; use ",
                                                           absl::StrJoin(kPolicyPaths, ", ")));
    }
  }
  const v1::OrganizationPolicy& requested = request.policy();
  if (requested.burst_limit_per_10s() < 0 || requested.burst_limit_per_10s() > kMaxBurstLimitPer10s) {
    return InvalidFieldError("policy.burst_limit_per_10s",
                             absl::StrCat("policy.burst_limit_per_10s must be from 1 to ", kMaxBurstLimitPer10s,
                                          ", or 0 for the server default; got ", requested.burst_limit_per_10s()));
  }
  if (requested.daily_limit() < 0 || requested.daily_limit() > kMaxDailyLimit) {
    return InvalidFieldError("policy.daily_limit",
                             absl::StrCat("policy.daily_limit must be from 1 to ", kMaxDailyLimit,
                                          ", or 0 for the server default; got ", requested.daily_limit()));
  }
  std::string now = ToDatetime(absl::ToUnixMicros(clock_()));

  v1::OrganizationPolicy after;
  absl::Status status =
      pool_->RunInTransaction("updating an organization policy", [&](sql::Connection& connection) -> absl::Status {
        absl::StatusOr<v1::OrganizationPolicy> before = ReadPolicy(connection, caller.organization_id, true);
        if (!before.ok()) return before.status();
        after = *before;
        for (const std::string& path : request.update_mask().paths()) {
          if (path == kTokenRevealEnabledPath) after.set_token_reveal_enabled(requested.token_reveal_enabled());
          if (path == kBurstLimitPath) after.set_burst_limit_per_10s(requested.burst_limit_per_10s());
          if (path == kDailyLimitPath) after.set_daily_limit(requested.daily_limit());
        }
        Statement update = Prepare(connection,
                                   "UPDATE organizations SET token_reveal_enabled = ?, burst_limit_per_10s = ?,"
                                   " daily_limit = ? WHERE id = ?");
        update->setBoolean(1, after.token_reveal_enabled());
        update->setInt(2, after.burst_limit_per_10s());
        update->setInt64(3, after.daily_limit());
        update->setUInt64(4, caller.organization_id);
        update->executeUpdate();
        std::vector<std::string> changed;
        if (before->token_reveal_enabled() != after.token_reveal_enabled()) {
          changed.emplace_back(kTokenRevealEnabledPath);
        }
        if (before->burst_limit_per_10s() != after.burst_limit_per_10s()) changed.emplace_back(kBurstLimitPath);
        if (before->daily_limit() != after.daily_limit()) changed.emplace_back(kDailyLimitPath);
        InsertAuditEvent(connection, caller,
                         AuditRecord{.action = v1::AUDIT_ACTION_POLICY_UPDATED, .changed_fields = changed}, now);
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  v1::UpdateOrganizationPolicyResponse response;
  *response.mutable_policy() = std::move(after);
  return response;
}

absl::StatusOr<InvalidationPage> AuthStore::ReadInvalidations(int64_t after_sequence, int max_entries) {
  InvalidationPage page;
  absl::Status status = pool_->Run("reading the invalidation log", [&](sql::Connection& connection) {
    page.entries.clear();
    // One statement, so the counter and the entries come from one InnoDB
    // read view. The counter row is the one with a NULL sequence. A UNION
    // rather than a join lets the entries be read in primary key order
    // without sorting everything after after_sequence.
    Statement select = Prepare(connection,
                               "SELECT last_sequence, NULL, NULL, NULL, NULL FROM invalidation_sequence WHERE id = 1"
                               " UNION ALL"
                               " (SELECT NULL, sequence, app_id, organization_id, reason FROM invalidation_log"
                               " WHERE sequence > ? ORDER BY sequence LIMIT ?)");
    select->setInt64(1, after_sequence);
    select->setInt(2, max_entries);
    Rows rows(select->executeQuery());
    bool counter_found = false;
    while (rows->next()) {
      if (rows->isNull(2)) {
        counter_found = true;
        page.last_sequence = rows->getInt64(1);
        continue;
      }
      InvalidationEntry entry;
      entry.sequence = rows->getInt64(2);
      entry.app_id = rows->getUInt64(3);
      entry.organization_id = rows->getUInt64(4);
      int reason = rows->getInt(5);
      entry.reason = v1::InvalidationReason_IsValid(reason) ? static_cast<v1::InvalidationReason>(reason)
                                                            : v1::INVALIDATION_REASON_UNSPECIFIED;
      page.entries.push_back(entry);
    }
    if (!counter_found) {
      return WithErrorInfo(absl::InternalError("the invalidation_sequence row with id 1 is missing"),
                           ErrorReason::kInternalError);
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  // SQL does not promise the order of a UNION's rows.
  std::sort(page.entries.begin(), page.entries.end(),
            [](const InvalidationEntry& a, const InvalidationEntry& b) { return a.sequence < b.sequence; });
  return page;
}

absl::StatusOr<int> AuthStore::PurgeInvalidations(absl::Time cutoff, int max_entries) {
  std::string cutoff_time = ToDatetime(absl::ToUnixMicros(cutoff));
  int deleted = 0;
  absl::Status status = pool_->Run("purging the invalidation log", [&](sql::Connection& connection) {
    // Find the oldest entries up to the first one created at or after the
    // cutoff. Deleting by sequence keeps the retained entries consecutive
    // even when clocks of several auth servers disagree a little.
    Statement select = Prepare(connection,
                               "SELECT sequence, create_time < ? FROM invalidation_log"
                               " ORDER BY sequence LIMIT ?");
    select->setString(1, cutoff_time);
    select->setInt(2, max_entries);
    Rows rows(select->executeQuery());
    int64_t last_expired = 0;
    while (rows->next() && rows->getBoolean(2)) last_expired = rows->getInt64(1);
    if (last_expired == 0) {
      deleted = 0;
      return absl::OkStatus();
    }

    // Autocommit, so each batch holds its row locks only briefly.
    Statement remove = Prepare(connection, "DELETE FROM invalidation_log WHERE sequence <= ?");
    remove->setInt64(1, last_expired);
    deleted = remove->executeUpdate();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return deleted;
}

absl::StatusOr<int64_t> AuthStore::OldestRetainedInvalidation() {
  int64_t oldest = 0;
  absl::Status status = pool_->Run("reading the oldest invalidation", [&](sql::Connection& connection) {
    Statement select = Prepare(connection,
                               "SELECT COALESCE((SELECT MIN(sequence) FROM invalidation_log), s.last_sequence + 1)"
                               " FROM invalidation_sequence s WHERE s.id = 1");
    Rows rows(select->executeQuery());
    if (!rows->next()) {
      return WithErrorInfo(absl::InternalError("the invalidation_sequence row with id 1 is missing"),
                           ErrorReason::kInternalError);
    }
    oldest = rows->getInt64(1);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return oldest;
}

absl::StatusOr<ReencryptResult> AuthStore::ReencryptTokens(int batch_size) {
  if (batch_size < 1) return absl::InvalidArgumentError(absl::StrCat("batch_size must be at least 1, got ", batch_size));
  const std::string& newest_encryption_id = secrets_.token_encryption_key_id;
  const std::string newest_digest_id = KeyId(secrets_.token_hmac_key);

  ReencryptResult result;
  uint64_t after_id = 0;
  while (true) {
    // Runs again on a deadlock, so it sets the outputs only at the end.
    int batch_rows = 0;
    uint64_t batch_last_id = after_id;
    absl::Status status =
        pool_->RunInTransaction("re-encrypting access tokens", [&](sql::Connection& connection) -> absl::Status {
          struct Row {
            uint64_t id;
            uint64_t app_id;
            std::string ciphertext;
            std::string key_id;
          };
          // The row locks make a concurrent rotation of the same app wait
          // for this short transaction, and this one skip nothing.
          Statement select = Prepare(connection,
                                     "SELECT id, app_id, token_ciphertext, encryption_key_id FROM access_tokens"
                                     " WHERE id > ? AND (encryption_key_id <> ? OR digest_key_id IS NULL"
                                     " OR digest_key_id <> ?) ORDER BY id LIMIT ? FOR UPDATE");
          select->setUInt64(1, after_id);
          select->setString(2, newest_encryption_id);
          select->setString(3, newest_digest_id);
          select->setInt(4, batch_size);
          std::vector<Row> rows;
          Rows result_set(select->executeQuery());
          while (result_set->next()) {
            rows.push_back(Row{result_set->getUInt64(1), result_set->getUInt64(2),
                               result_set->getString(3).asStdString(), result_set->getString(4).asStdString()});
          }

          Statement update = Prepare(connection,
                                     "UPDATE access_tokens SET token_digest = ?, digest_key_id = ?,"
                                     " token_ciphertext = ?, encryption_key_id = ? WHERE id = ?");
          for (const Row& row : rows) {
            const std::string* key = FindEncryptionKey(row.key_id);
            if (key == nullptr) {
              return absl::FailedPreconditionError(absl::StrCat(
                  "access token row ", row.id, " of private app ", row.app_id, " is encrypted with key ", row.key_id,
                  ", which is not loaded; add that token_encryption_key to the key file, or rotate the app's token"));
            }
            absl::StatusOr<std::string> token =
                OpenAes256Gcm(*key, row.ciphertext, TokenAssociatedData(row.app_id, row.key_id));
            if (!token.ok()) {
              return absl::DataLossError(absl::StrCat("access token row ", row.id, " of private app ", row.app_id,
                                                      " failed to decrypt: ", token.status().message()));
            }
            absl::StatusOr<std::string> ciphertext = SealAes256Gcm(
                secrets_.token_encryption_key, *token, TokenAssociatedData(row.app_id, newest_encryption_id));
            if (!ciphertext.ok()) return ciphertext.status();
            update->setString(1, HmacSha256(secrets_.token_hmac_key, *token));
            update->setString(2, newest_digest_id);
            update->setString(3, *ciphertext);
            update->setString(4, newest_encryption_id);
            update->setUInt64(5, row.id);
            update->executeUpdate();
          }
          batch_rows = static_cast<int>(rows.size());
          if (!rows.empty()) batch_last_id = rows.back().id;
          return absl::OkStatus();
        });
    if (!status.ok()) return status;
    result.rewritten_tokens += batch_rows;
    if (batch_rows < batch_size) break;
    after_id = batch_last_id;
  }

  absl::Status counted = pool_->Run("counting admin keys under older HMAC keys", [&](sql::Connection& connection) {
    Statement count = Prepare(connection,
                              "SELECT COUNT(*) FROM admin_keys WHERE revoke_time IS NULL"
                              " AND (digest_key_id IS NULL OR digest_key_id <> ?)");
    count->setString(1, newest_digest_id);
    Rows rows(count->executeQuery());
    rows->next();
    result.admin_keys_under_older_keys = rows->getInt64(1);
    return absl::OkStatus();
  });
  if (!counted.ok()) return counted;
  return result;
}

}  // namespace crm::auth
