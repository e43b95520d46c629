#include "services/auth/auth_store.h"

#include <cppconn/connection.h>
#include <cppconn/datatype.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <iterator>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/error_details.h"
#include "common/logging.h"
#include "common/mysql_pool.h"
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
constexpr absl::string_view kOutputOnlyPaths[] = {"id",         "organization_id", "logo_mime_type",
                                                  "token_hint", "create_time",     "update_time"};

// Columns and joins that ReadApp expects, in this order. Times are read as
// microseconds since the Unix epoch, because the connector's DATETIME strings
// may drop the fraction; the pool's session time zone is UTC.
constexpr absl::string_view kSelectApp =
    "SELECT a.id, a.organization_id, a.display_name, a.description, a.logo, a.logo_mime_type, a.scope_bits,"
    " TIMESTAMPDIFF(MICROSECOND, '1970-01-01', a.create_time),"
    " TIMESTAMPDIFF(MICROSECOND, '1970-01-01', a.update_time),"
    " COALESCE(t.token_hint, '')"
    " FROM private_apps a"
    " LEFT JOIN access_tokens t ON t.app_id = a.id AND t.revoke_time IS NULL";

// One private_apps row with the hint of its current token.
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
};

Statement Prepare(sql::Connection& connection, absl::string_view sql) {
  return &PrepareCached(connection, std::string(sql));
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
  return app;
}

void ToProto(const AppRow& row, v1::PrivateApp* app) {
  app->set_id(absl::StrCat(row.id));
  app->set_organization_id(absl::StrCat(row.organization_id));
  app->set_display_name(row.display_name);
  app->set_description(row.description);
  app->set_logo(row.logo);
  app->set_logo_mime_type(row.logo_mime_type);
  ScopeMaskToProto(row.scopes, app->mutable_scopes());
  app->set_token_hint(row.token_hint);
  using google::protobuf::util::TimeUtil;
  *app->mutable_create_time() = TimeUtil::MicrosecondsToTimestamp(row.create_micros);
  *app->mutable_update_time() = TimeUtil::MicrosecondsToTimestamp(row.update_micros);
}

// DATETIME(6) literal in UTC.
std::string ToDatetime(int64_t unix_micros) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%E6S", absl::FromUnixMicros(unix_micros), absl::UTCTimeZone());
}

absl::Status AppNotFound(uint64_t app_id) {
  return WithErrorInfo(absl::NotFoundError(absl::StrCat("private app ", app_id, " not found")),
                       ErrorReason::kResourceNotFound,
                       {{"resource_type", "private_app"}, {"resource_id", absl::StrCat(app_id)}});
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
  std::string ciphertext;
  std::string hint;
};

absl::StatusOr<IssuedToken> IssueAccessToken(const Secrets& secrets, const RandomSource& random,
                                             uint64_t app_id) {
  IssuedToken issued;
  issued.token = GenerateToken(TokenKind::kAppToken, random);
  issued.digest = HmacSha256(secrets.token_hmac_key, issued.token);
  absl::StatusOr<std::string> ciphertext =
      SealAes256Gcm(secrets.token_encryption_key, issued.token,
                    TokenAssociatedData(app_id, secrets.token_encryption_key_id));
  if (!ciphertext.ok()) return ciphertext.status();
  issued.ciphertext = *std::move(ciphertext);
  issued.hint = TokenHint(issued.token);
  return issued;
}

void InsertAccessToken(sql::Connection& connection, uint64_t app_id, const IssuedToken& issued,
                       const std::string& key_id, const std::string& now) {
  Statement insert = Prepare(connection,
                             "INSERT INTO access_tokens (app_id, token_digest, token_ciphertext,"
                             " encryption_key_id, token_hint, create_time) VALUES (?, ?, ?, ?, ?, ?)");
  insert->setUInt64(1, app_id);
  insert->setString(2, issued.digest);
  insert->setString(3, issued.ciphertext);
  insert->setString(4, key_id);
  insert->setString(5, issued.hint);
  insert->setString(6, now);
  insert->executeUpdate();
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

absl::StatusOr<ScopeMask> ValidateScopes(const google::protobuf::RepeatedPtrField<v1::Scope>& scopes) {
  absl::StatusOr<ScopeMask> mask = ScopeMaskFromProto(scopes);
  if (!mask.ok()) return InPrivateApp(mask.status());
  if (*mask == 0) {
    return InvalidFieldError("private_app.scopes", "private_app.scopes must grant at least one scope");
  }
  return mask;
}

}  // namespace

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
                     InvalidationCommitted on_invalidation)
    : pool_(pool),
      secrets_(std::move(secrets)),
      random_(std::move(random)),
      clock_(std::move(clock)),
      on_invalidation_(std::move(on_invalidation)),
      page_tokens_(secrets_.page_token_key) {}

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
                "INSERT INTO admin_keys (organization_id, key_digest, key_hint, create_time)"
                " VALUES (?, ?, ?, ?)");
    insert_key->setUInt64(1, organization_id);
    insert_key->setString(2, digest);
    insert_key->setString(3, TokenHint(admin_key));
    insert_key->setString(4, now);
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

absl::StatusOr<uint64_t> AuthStore::AuthenticateAdminKey(absl::string_view admin_key) {
  absl::Status format = ValidateTokenFormat(TokenKind::kAdminKey, admin_key);
  if (!format.ok()) return format;

  std::string digest = HmacSha256(secrets_.token_hmac_key, admin_key);
  uint64_t organization_id = 0;
  absl::Status status = pool_->Run("authenticating an admin key", [&](sql::Connection& connection) {
    Statement select = Prepare(connection,
                               "SELECT organization_id, key_digest FROM admin_keys"
                               " WHERE key_digest = ? AND revoke_time IS NULL");
    select->setString(1, digest);
    Rows rows(select->executeQuery());
    if (!rows->next() || !ConstantTimeEquals(rows->getString(2).asStdString(), digest)) {
      return WithErrorInfo(absl::UnauthenticatedError("unknown or revoked admin key"),
                           ErrorReason::kAdminKeyInvalid);
    }
    organization_id = rows->getUInt64(1);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return organization_id;
}

absl::StatusOr<TokenClaims> AuthStore::CheckToken(absl::string_view token) {
  if (token.empty()) {
    return WithErrorInfo(InvalidFieldError("token", "token is required"), ErrorReason::kTokenMissing);
  }
  absl::Status format = ValidateTokenFormat(TokenKind::kAppToken, token);
  if (!format.ok()) return format;

  std::string digest = HmacSha256(secrets_.token_hmac_key, token);
  TokenClaims claims;
  absl::Status status = pool_->Run("checking an access token", [&](sql::Connection& connection) {
    // One statement reads the token, the app and the log's latest sequence
    // from one InnoDB read view, under REPEATABLE READ and READ COMMITTED
    // alike, and takes no locks. So the claims reflect every invalidation
    // up to last_sequence and none after it.
    //
    // Rotated tokens keep their row with revoke_time set, so the statement
    // finds them too and the caller gets TOKEN_REVOKED. That reveals nothing
    // to someone guessing tokens, because only the holder of a token that
    // was really issued can get it. A deleted app's tokens are deleted with it, so they
    // are TOKEN_INVALID like a token that never existed.
    Statement select = Prepare(connection,
                               "SELECT s.last_sequence, t.token_digest, a.organization_id, a.id, a.scope_bits,"
                               " t.revoke_time IS NULL"
                               " FROM invalidation_sequence s"
                               " LEFT JOIN (access_tokens t JOIN private_apps a ON a.id = t.app_id)"
                               " ON t.token_digest = ?"
                               " WHERE s.id = 1");
    select->setString(1, digest);
    Rows rows(select->executeQuery());
    if (!rows->next()) {
      return WithErrorInfo(absl::InternalError("the invalidation_sequence row with id 1 is missing"),
                           ErrorReason::kInternalError);
    }
    if (rows->isNull(2) || !ConstantTimeEquals(rows->getString(2).asStdString(), digest)) {
      return WithErrorInfo(absl::UnauthenticatedError("unknown access token, or its app was deleted"),
                           ErrorReason::kTokenInvalid);
    }
    if (!rows->getBoolean(6)) {
      return WithErrorInfo(
          absl::UnauthenticatedError("the access token was rotated; use the app's current token"),
          ErrorReason::kTokenRevoked);
    }
    claims.invalidation_sequence = rows->getInt64(1);
    claims.organization_id = rows->getUInt64(3);
    claims.app_id = rows->getUInt64(4);
    claims.scopes = rows->getUInt(5);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return claims;
}

absl::StatusOr<v1::CreatePrivateAppResponse> AuthStore::CreatePrivateApp(
    uint64_t organization_id, const v1::CreatePrivateAppRequest& request) {
  if (!request.has_private_app()) return InvalidFieldError("private_app", "private_app is required");
  const v1::PrivateApp& input = request.private_app();
  absl::Status valid = ValidateDisplayName(input.display_name());
  if (valid.ok()) valid = ValidateDescription(input.description());
  if (!valid.ok()) return valid;
  absl::StatusOr<std::string> logo_mime_type = ValidateLogoField(input.logo());
  if (!logo_mime_type.ok()) return logo_mime_type.status();
  absl::StatusOr<ScopeMask> scopes = ValidateScopes(input.scopes());
  if (!scopes.ok()) return scopes.status();

  AppRow row;
  row.organization_id = organization_id;
  row.display_name = input.display_name();
  row.description = input.description();
  row.logo = input.logo();
  row.logo_mime_type = *logo_mime_type;
  row.scopes = *scopes;
  row.create_micros = row.update_micros = absl::ToUnixMicros(clock_());
  std::string now = ToDatetime(row.create_micros);

  // Runs again on a deadlock, so it sets the outputs only at the end.
  std::string access_token;
  absl::Status status = pool_->RunInTransaction("creating a private app", [&](sql::Connection& connection) {
    // Locking the organization row serializes concurrent creates in one
    // organization, so the count below cannot go stale before the insert.
    Statement lock = Prepare(connection, "SELECT id FROM organizations WHERE id = ? FOR UPDATE");
    lock->setUInt64(1, organization_id);
    Rows locked(lock->executeQuery());
    if (!locked->next()) {
      return WithErrorInfo(absl::NotFoundError(absl::StrCat("organization ", organization_id, " not found")),
                           ErrorReason::kResourceNotFound,
                           {{"resource_type", "organization"}, {"resource_id", absl::StrCat(organization_id)}});
    }

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
                " logo_mime_type, scope_bits, create_time, update_time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    insert_app->setUInt64(1, organization_id);
    insert_app->setString(2, row.display_name);
    insert_app->setString(3, row.description);
    BindLogo(*insert_app, 4, row.logo);
    insert_app->setString(5, row.logo_mime_type);
    insert_app->setUInt(6, row.scopes);
    insert_app->setString(7, now);
    insert_app->setString(8, now);
    insert_app->executeUpdate();
    uint64_t app_id = LastInsertId(connection);

    absl::StatusOr<IssuedToken> issued = IssueAccessToken(secrets_, random_, app_id);
    if (!issued.ok()) return issued.status();
    InsertAccessToken(connection, app_id, *issued, secrets_.token_encryption_key_id, now);

    row.id = app_id;
    row.token_hint = issued->hint;
    access_token = std::move(issued->token);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;

  v1::CreatePrivateAppResponse response;
  ToProto(row, response.mutable_private_app());
  response.set_access_token(std::move(access_token));
  return response;
}

absl::StatusOr<v1::GetPrivateAppResponse> AuthStore::GetPrivateApp(uint64_t organization_id,
                                                                   const v1::GetPrivateAppRequest& request) {
  absl::StatusOr<uint64_t> app_id = ParseId("id", request.id());
  if (!app_id.ok()) return app_id.status();

  v1::GetPrivateAppResponse response;
  absl::Status status = pool_->Run("reading a private app", [&](sql::Connection& connection) -> absl::Status {
    absl::StatusOr<AppRow> row = LoadApp(connection, organization_id, *app_id, /*for_update=*/false);
    if (!row.ok()) return row.status();
    ToProto(*row, response.mutable_private_app());
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::ListPrivateAppsResponse> AuthStore::ListPrivateApps(
    uint64_t organization_id, const v1::ListPrivateAppsRequest& request) {
  if (request.page_size() < 0) {
    return InvalidFieldError("page_size", absl::StrCat("page_size must not be negative, got ", request.page_size()));
  }
  int page_size = request.page_size() == 0 ? kMaxPageSize : std::min(request.page_size(), kMaxPageSize);
  std::string request_scope = ListRequestScope(organization_id);
  uint64_t after_id = 0;
  if (!request.page_token().empty()) {
    absl::StatusOr<uint64_t> decoded = page_tokens_.Decode(request_scope, request.page_token());
    if (!decoded.ok()) return decoded.status();
    after_id = *decoded;
  }

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
    ToProto(row, &app);
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

absl::StatusOr<v1::UpdatePrivateAppResponse> AuthStore::UpdatePrivateApp(
    uint64_t organization_id, const v1::UpdatePrivateAppRequest& request) {
  if (!request.has_private_app()) return InvalidFieldError("private_app", "private_app is required");
  const v1::PrivateApp& input = request.private_app();
  absl::StatusOr<uint64_t> app_id = ParseId("private_app.id", input.id());
  if (!app_id.ok()) return app_id.status();

  // Checks the mask and the new values before touching the database.
  if (request.update_mask().paths().empty()) {
    return InvalidFieldError("update_mask.paths",
                             "update_mask must name at least one of display_name, description, logo and scopes");
  }
  bool set_display_name = false;
  bool set_description = false;
  bool set_logo = false;
  bool set_scopes = false;
  for (const std::string& path : request.update_mask().paths()) {
    if (path == kDisplayNamePath) {
      set_display_name = true;
    } else if (path == kDescriptionPath) {
      set_description = true;
    } else if (path == kLogoPath) {
      set_logo = true;
    } else if (path == kScopesPath) {
      set_scopes = true;
    } else if (std::find(std::begin(kOutputOnlyPaths), std::end(kOutputOnlyPaths), path) !=
               std::end(kOutputOnlyPaths)) {
      return InvalidFieldError(
          "update_mask.paths",
          absl::StrCat("update_mask path \"", path, "\" is an output-only field and cannot be updated"));
    } else {
      return InvalidFieldError("update_mask.paths",
                               absl::StrCat("update_mask path \"", path,
                                            "\" is not an updatable field; use display_name, description, logo or scopes"));
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
  std::string now = ToDatetime(now_micros);

  // Runs again on a deadlock, so it sets the outputs only at the end.
  AppRow updated;
  int64_t sequence = 0;
  absl::Status status =
      pool_->RunInTransaction("updating a private app", [&](sql::Connection& connection) -> absl::Status {
        absl::StatusOr<AppRow> row = LoadApp(connection, organization_id, *app_id, /*for_update=*/true);
        if (!row.ok()) return row.status();
        // Only a different scope set changes what the token grants; a name,
        // description or logo edit, or the same scopes again, needs no entry.
        bool scopes_changed = set_scopes && row->scopes != scopes;
        if (set_display_name) row->display_name = input.display_name();
        if (set_description) row->description = input.description();
        if (set_logo) {
          row->logo = input.logo();
          row->logo_mime_type = logo_mime_type;
        }
        if (set_scopes) row->scopes = scopes;
        row->update_micros = now_micros;

        Statement update = Prepare(connection,
                                   "UPDATE private_apps SET display_name = ?, description = ?, logo = ?,"
                                   " logo_mime_type = ?, scope_bits = ?, update_time = ?"
                                   " WHERE organization_id = ? AND id = ?");
        update->setString(1, row->display_name);
        update->setString(2, row->description);
        BindLogo(*update, 3, row->logo);
        update->setString(4, row->logo_mime_type);
        update->setUInt(5, row->scopes);
        update->setString(6, now);
        update->setUInt64(7, organization_id);
        update->setUInt64(8, *app_id);
        update->executeUpdate();

        int64_t appended = 0;
        if (scopes_changed) {
          absl::StatusOr<int64_t> entry = AppendInvalidation(connection, organization_id, *app_id,
                                                             v1::INVALIDATION_REASON_SCOPES_CHANGED, now);
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
  ToProto(updated, response.mutable_private_app());
  response.set_invalidation_sequence(sequence);
  return response;
}

absl::StatusOr<v1::DeletePrivateAppResponse> AuthStore::DeletePrivateApp(
    uint64_t organization_id, const v1::DeletePrivateAppRequest& request) {
  absl::StatusOr<uint64_t> app_id = ParseId("id", request.id());
  if (!app_id.ok()) return app_id.status();

  std::string now = ToDatetime(absl::ToUnixMicros(clock_()));

  int64_t sequence = 0;
  absl::Status status =
      pool_->RunInTransaction("deleting a private app", [&](sql::Connection& connection) -> absl::Status {
        // Deleting the app deletes its tokens too (ON DELETE CASCADE), so the
        // token stops working when this transaction commits.
        Statement remove =
            Prepare(connection, "DELETE FROM private_apps WHERE organization_id = ? AND id = ?");
        remove->setUInt64(1, organization_id);
        remove->setUInt64(2, *app_id);
        if (remove->executeUpdate() == 0) return AppNotFound(*app_id);
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

absl::StatusOr<v1::GetAccessTokenResponse> AuthStore::GetAccessToken(
    uint64_t organization_id, const v1::GetAccessTokenRequest& request) {
  absl::StatusOr<uint64_t> app_id = ParseId("id", request.id());
  if (!app_id.ok()) return app_id.status();

  std::string ciphertext;
  std::string key_id;
  absl::Status status = pool_->Run("reading an access token", [&](sql::Connection& connection) {
    Statement select = Prepare(connection,
                               "SELECT t.token_ciphertext, t.encryption_key_id"
                               " FROM private_apps a JOIN access_tokens t ON t.app_id = a.id"
                               " WHERE a.organization_id = ? AND a.id = ? AND t.revoke_time IS NULL");
    select->setUInt64(1, organization_id);
    select->setUInt64(2, *app_id);
    Rows rows(select->executeQuery());
    if (!rows->next()) return AppNotFound(*app_id);
    ciphertext = rows->getString(1).asStdString();
    key_id = rows->getString(2).asStdString();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;

  if (key_id != secrets_.token_encryption_key_id) {
    return WithErrorInfo(
        absl::FailedPreconditionError(
            absl::StrCat("the access token of private app ", *app_id, " was encrypted with key ", key_id,
                         " but this server has key ", secrets_.token_encryption_key_id,
                         "; restore that token_encryption_key or rotate the token")),
        ErrorReason::kEncryptionKeyMismatch,
        {{"token_key_id", key_id}, {"server_key_id", secrets_.token_encryption_key_id}});
  }
  absl::StatusOr<std::string> token =
      OpenAes256Gcm(secrets_.token_encryption_key, ciphertext, TokenAssociatedData(*app_id, key_id));
  if (!token.ok()) {
    spdlog::error("access token of private app {} failed to decrypt: {}", *app_id, token.status().message());
    return WithErrorInfo(token.status(), ErrorReason::kInternalError);
  }
  v1::GetAccessTokenResponse response;
  response.set_access_token(*std::move(token));
  return response;
}

absl::StatusOr<v1::RotateAccessTokenResponse> AuthStore::RotateAccessToken(
    uint64_t organization_id, const v1::RotateAccessTokenRequest& request) {
  absl::StatusOr<uint64_t> app_id = ParseId("id", request.id());
  if (!app_id.ok()) return app_id.status();
  int64_t now_micros = absl::ToUnixMicros(clock_());
  std::string now = ToDatetime(now_micros);

  AppRow updated;
  std::string access_token;
  int64_t sequence = 0;
  absl::Status status =
      pool_->RunInTransaction("rotating an access token", [&](sql::Connection& connection) -> absl::Status {
        // The row lock makes concurrent rotations of one app take turns, so
        // each app keeps exactly one unrevoked token.
        absl::StatusOr<AppRow> row = LoadApp(connection, organization_id, *app_id, /*for_update=*/true);
        if (!row.ok()) return row.status();

        Statement revoke = Prepare(
            connection, "UPDATE access_tokens SET revoke_time = ? WHERE app_id = ? AND revoke_time IS NULL");
        revoke->setString(1, now);
        revoke->setUInt64(2, *app_id);
        revoke->executeUpdate();

        absl::StatusOr<IssuedToken> issued = IssueAccessToken(secrets_, random_, *app_id);
        if (!issued.ok()) return issued.status();
        InsertAccessToken(connection, *app_id, *issued, secrets_.token_encryption_key_id, now);

        Statement touch = Prepare(connection, "UPDATE private_apps SET update_time = ? WHERE id = ?");
        touch->setString(1, now);
        touch->setUInt64(2, *app_id);
        touch->executeUpdate();

        absl::StatusOr<int64_t> entry = AppendInvalidation(connection, organization_id, *app_id,
                                                           v1::INVALIDATION_REASON_TOKEN_ROTATED, now);
        if (!entry.ok()) return entry.status();

        row->token_hint = issued->hint;
        row->update_micros = now_micros;
        updated = *std::move(row);
        access_token = std::move(issued->token);
        sequence = *entry;
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  NotifyInvalidation(sequence);

  v1::RotateAccessTokenResponse response;
  response.set_access_token(std::move(access_token));
  ToProto(updated, response.mutable_private_app());
  response.set_invalidation_sequence(sequence);
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

}  // namespace crm::auth
