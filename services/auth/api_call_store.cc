#include "services/auth/api_call_store.h"

#include <cppconn/connection.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <google/protobuf/util/time_util.h>

#include <array>
#include <limits>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/error_details.h"
#include "common/grpc_status.h"
#include "common/text.h"
#include "crm/data/v1/crm_service.pb.h"

namespace crm::auth {
namespace {

using google::protobuf::util::TimeUtil;
using Rows = std::unique_ptr<sql::ResultSet>;

constexpr size_t kMaxMethodChars = 128;
constexpr size_t kMaxPeerChars = 64;
// The highest google.rpc.Code value (UNAUTHENTICATED).
constexpr int kMaxStatusCode = 16;
// Rows per INSERT statement, largest first. A batch is split greedily.
constexpr std::array<int, 5> kInsertRowCounts = {256, 64, 16, 4, 1};
constexpr int kColumnsPerRow = 7;

// One validated call of a report.
struct CallRow {
  uint64_t organization_id = 0;
  uint64_t app_id = 0;
  std::string call_time;
  std::string method;
  int code = 0;
  int64_t latency_micros = 0;
  std::string peer_address;
};

const std::string& InsertSql(size_t row_count_index) {
  static const std::array<std::string, kInsertRowCounts.size()> statements = [] {
    std::array<std::string, kInsertRowCounts.size()> sql;
    for (size_t i = 0; i < kInsertRowCounts.size(); ++i) {
      sql[i] =
          "INSERT INTO api_calls (organization_id, app_id, call_time, method, code, latency_micros, peer_address)"
          " VALUES ";
      for (int row = 0; row < kInsertRowCounts[i]; ++row) absl::StrAppend(&sql[i], row == 0 ? "" : ",", "(?,?,?,?,?,?,?)");
    }
    return sql;
  }();
  return statements[row_count_index];
}

// Returns `time` in microseconds since the Unix epoch, or no value when
// `time` is null.
absl::StatusOr<std::optional<int64_t>> ParseTime(absl::string_view field, const google::protobuf::Timestamp* time) {
  if (time == nullptr) return std::optional<int64_t>();
  // The range of google.protobuf.Timestamp: 0001-01-01 to 9999-12-31.
  if (time->seconds() < TimeUtil::kTimestampMinSeconds || time->seconds() > TimeUtil::kTimestampMaxSeconds ||
      time->nanos() < 0 || time->nanos() > 999999999) {
    return InvalidFieldError(field, absl::StrCat(field, " is not a valid timestamp"));
  }
  return std::optional<int64_t>(TimeUtil::TimestampToMicroseconds(*time));
}

absl::StatusOr<CallRow> ValidateCall(const v1::ApiCallRecord& call) {
  CallRow row;
  absl::StatusOr<uint64_t> organization_id = ParseId("calls.organization_id", call.organization_id());
  if (!organization_id.ok()) return organization_id.status();
  absl::StatusOr<uint64_t> app_id = ParseId("calls.app_id", call.app_id());
  if (!app_id.ok()) return app_id.status();
  row.organization_id = *organization_id;
  row.app_id = *app_id;

  if (call.method().empty()) return InvalidFieldError("calls.method", "calls.method is required");
  absl::Status method = ValidateText("calls.method", call.method(), TextRules{.max_code_points = kMaxMethodChars});
  if (!method.ok()) return method;
  row.method = call.method();

  if (call.code() < 0 || call.code() > kMaxStatusCode) {
    return InvalidFieldError("calls.code", absl::StrCat("calls.code must be a google.rpc.Code value from 0 to ",
                                                        kMaxStatusCode, ", got ", call.code()));
  }
  row.code = call.code();

  if (!call.has_call_time()) return InvalidFieldError("calls.call_time", "calls.call_time is required");
  absl::StatusOr<std::optional<int64_t>> call_micros = ParseTime("calls.call_time", &call.call_time());
  if (!call_micros.ok()) return call_micros.status();
  row.call_time = ToDatetime(**call_micros);

  const google::protobuf::Duration& latency = call.latency();
  if (!call.has_latency() || latency.seconds() < 0 || latency.seconds() > TimeUtil::kDurationMaxSeconds ||
      latency.nanos() < 0 || latency.nanos() > 999999999) {
    return InvalidFieldError("calls.latency", "calls.latency is required and must not be negative");
  }
  row.latency_micros = TimeUtil::DurationToMicroseconds(call.latency());

  // A peer that is not plain text is dropped rather than failing the whole
  // batch, because the address is informational.
  row.peer_address = call.peer_address().substr(0, kMaxPeerChars);
  if (!ValidateText("calls.peer_address", row.peer_address, TextRules{.max_code_points = kMaxPeerChars}).ok()) {
    row.peer_address.clear();
  }
  return row;
}

// Returns the full name of a CrmService method given as its full name
// ("/crm.data.v1.CrmService/GetLead") or its name alone ("GetLead").
absl::StatusOr<std::string> NormalizeMethod(absl::string_view method) {
  const google::protobuf::ServiceDescriptor* service =
      crm::data::v1::CreateLeadRequest::descriptor()->file()->FindServiceByName("CrmService");
  std::string prefix = absl::StrCat("/", service->full_name(), "/");
  absl::string_view name = method;
  if (absl::StartsWith(name, prefix)) name.remove_prefix(prefix.size());
  if (name.empty() || service->FindMethodByName(std::string(name)) == nullptr) {
    return InvalidFieldError("method", absl::StrCat("method must name a CrmService method, such as \"GetLead\" or \"",
                                                    prefix, "GetLead\""));
  }
  return absl::StrCat(prefix, name);
}

// Returns the google.rpc.Code value named `name`, such as "NOT_FOUND".
absl::StatusOr<int> ParseCodeName(absl::string_view name) {
  for (int code = 0; code <= kMaxStatusCode; ++code) {
    if (name == StatusCodeName(static_cast<grpc::StatusCode>(code))) return code;
  }
  return InvalidFieldError("code", "code must be a status code name such as \"OK\", \"NOT_FOUND\" or "
                                   "\"PERMISSION_DENIED\"");
}

// A ListApiCalls position: the last listed call's time and id.
struct Position {
  int64_t call_micros = 0;
  uint64_t id = 0;
};

absl::StatusOr<Position> ParsePosition(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  Position position;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &position.call_micros) ||
      !absl::SimpleAtoi(parts[1], &position.id)) {
    return InvalidFieldError("page_token", "page_token is not a token this method issued",
                             ErrorReason::kInvalidPageToken);
  }
  return position;
}

}  // namespace

absl::Status ApiCallStore::Report(const v1::ReportApiCallsRequest& request) {
  if (request.calls_size() > kMaxApiCallsPerReport) {
    return InvalidFieldError("calls", absl::StrCat("a report carries at most ", kMaxApiCallsPerReport,
                                                   " calls, got ", request.calls_size()));
  }
  std::vector<CallRow> rows;
  rows.reserve(request.calls_size());
  for (const v1::ApiCallRecord& call : request.calls()) {
    absl::StatusOr<CallRow> row = ValidateCall(call);
    if (!row.ok()) return row.status();
    rows.push_back(*std::move(row));
  }
  if (rows.empty()) return absl::OkStatus();

  return pool_->RunInTransaction("storing API calls", [&](sql::Connection& connection) {
    size_t next = 0;
    for (size_t size_index = 0; size_index < kInsertRowCounts.size(); ++size_index) {
      size_t row_count = static_cast<size_t>(kInsertRowCounts[size_index]);
      while (rows.size() - next >= row_count) {
        sql::PreparedStatement& insert = PrepareCached(connection, InsertSql(size_index));
        for (size_t i = 0; i < row_count; ++i) {
          const CallRow& row = rows[next + i];
          int base = static_cast<int>(i) * kColumnsPerRow;
          insert.setUInt64(base + 1, row.organization_id);
          insert.setUInt64(base + 2, row.app_id);
          insert.setString(base + 3, row.call_time);
          insert.setString(base + 4, row.method);
          insert.setInt(base + 5, row.code);
          insert.setInt64(base + 6, row.latency_micros);
          insert.setString(base + 7, row.peer_address);
        }
        insert.executeUpdate();
        next += row_count;
      }
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::ListApiCallsResponse> ApiCallStore::List(const AdminCaller& caller,
                                                            const v1::ListApiCallsRequest& request) {
  absl::StatusOr<uint64_t> app_id = ParseId("app_id", request.app_id());
  if (!app_id.ok()) return app_id.status();
  std::string method;
  if (!request.method().empty()) {
    absl::StatusOr<std::string> normalized = NormalizeMethod(request.method());
    if (!normalized.ok()) return normalized.status();
    method = *std::move(normalized);
  }
  std::optional<int> code;
  if (!request.code().empty()) {
    absl::StatusOr<int> parsed = ParseCodeName(request.code());
    if (!parsed.ok()) return parsed.status();
    code = *parsed;
  }
  absl::StatusOr<std::optional<int64_t>> start_micros =
      ParseTime("start_time", request.has_start_time() ? &request.start_time() : nullptr);
  if (!start_micros.ok()) return start_micros.status();
  absl::StatusOr<std::optional<int64_t>> end_micros =
      ParseTime("end_time", request.has_end_time() ? &request.end_time() : nullptr);
  if (!end_micros.ok()) return end_micros.status();
  if (start_micros->has_value() && end_micros->has_value() && **end_micros <= **start_micros) {
    return InvalidFieldError("end_time", "end_time must be after start_time");
  }
  if (request.page_size() < 0 || request.page_size() > kMaxApiCallPageSize) {
    return InvalidFieldError("page_size", absl::StrCat("page_size must be from 0 to ", kMaxApiCallPageSize,
                                                       " (0 means ", kDefaultApiCallPageSize, "), got ",
                                                       request.page_size()));
  }
  int page_size = request.page_size() == 0 ? kDefaultApiCallPageSize : request.page_size();

  // The page token is bound to the organization, the app and every filter,
  // so it cannot continue a different listing.
  std::string request_scope =
      absl::StrCat("crm.auth.v1.PrivateAppService/ListApiCalls organization_id=", caller.organization_id,
                   " app_id=", *app_id, " method=", method, " code=", code.value_or(-1),
                   " start=", start_micros->value_or(-1), " end=", end_micros->value_or(-1));
  std::optional<Position> after;
  if (!request.page_token().empty()) {
    absl::StatusOr<std::string> position = page_tokens_.DecodePosition(request_scope, request.page_token());
    if (!position.ok()) return position.status();
    absl::StatusOr<Position> parsed = ParsePosition(*position);
    if (!parsed.ok()) return parsed.status();
    after = *parsed;
  }

  std::string sql =
      "SELECT id, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', call_time), method, code, latency_micros, peer_address"
      " FROM api_calls WHERE organization_id = ? AND app_id = ?";
  if (!method.empty()) sql += " AND method = ?";
  if (code.has_value()) sql += " AND code = ?";
  if (start_micros->has_value()) sql += " AND call_time >= ?";
  if (end_micros->has_value()) sql += " AND call_time < ?";
  if (after.has_value()) sql += " AND (call_time < ? OR (call_time = ? AND id < ?))";
  sql += " ORDER BY call_time DESC, id DESC LIMIT ?";

  v1::ListApiCallsResponse response;
  Position last;
  bool more = false;
  absl::Status status = pool_->Run("listing API calls", [&](sql::Connection& connection) {
    response.clear_api_calls();
    more = false;
    // The app must belong to the caller's organization. A deleted app's
    // calls and another organization's are NOT_FOUND.
    sql::PreparedStatement& app =
        PrepareCached(connection, "SELECT 1 FROM private_apps WHERE id = ? AND organization_id = ?");
    app.setUInt64(1, *app_id);
    app.setUInt64(2, caller.organization_id);
    Rows found(app.executeQuery());
    bool exists = found->next();
    while (found->next()) {
    }
    if (!exists) return AppNotFound(*app_id);

    sql::PreparedStatement& select = PrepareCached(connection, sql);
    int index = 1;
    select.setUInt64(index++, caller.organization_id);
    select.setUInt64(index++, *app_id);
    if (!method.empty()) select.setString(index++, method);
    if (code.has_value()) select.setInt(index++, *code);
    if (start_micros->has_value()) select.setString(index++, ToDatetime(**start_micros));
    if (end_micros->has_value()) select.setString(index++, ToDatetime(**end_micros));
    if (after.has_value()) {
      select.setString(index++, ToDatetime(after->call_micros));
      select.setString(index++, ToDatetime(after->call_micros));
      select.setUInt64(index++, after->id);
    }
    // One row more than the page shows whether another page follows.
    select.setInt(index++, page_size + 1);
    Rows rows(select.executeQuery());
    while (rows->next()) {
      if (response.api_calls_size() == page_size) {
        more = true;
        continue;  // Reads the rest, so the result set is consumed.
      }
      last.id = rows->getUInt64(1);
      last.call_micros = rows->getInt64(2);
      v1::ApiCall* call = response.add_api_calls();
      call->set_app_id(request.app_id());
      *call->mutable_call_time() = TimeUtil::MicrosecondsToTimestamp(last.call_micros);
      call->set_method(rows->getString(3).asStdString());
      int call_code = rows->getInt(4);
      call->set_code(StatusCodeName(static_cast<grpc::StatusCode>(call_code)));
      *call->mutable_latency() = TimeUtil::MicrosecondsToDuration(rows->getInt64(5));
      call->set_peer_address(rows->getString(6).asStdString());
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (more) {
    response.set_next_page_token(
        page_tokens_.EncodePosition(request_scope, absl::StrCat(last.call_micros, ":", last.id)));
  }
  return response;
}

absl::StatusOr<int> ApiCallStore::Purge(absl::Time cutoff, int max_rows) {
  int deleted = 0;
  absl::Status status = pool_->Run("purging the API call log", [&](sql::Connection& connection) {
    // Autocommit, so each batch holds its row locks only briefly. The
    // order ends with the primary key, so the rows a LIMIT picks are the
    // same on a statement-based replica.
    sql::PreparedStatement& remove =
        PrepareCached(connection, "DELETE FROM api_calls WHERE call_time < ? ORDER BY call_time, id LIMIT ?");
    remove.setString(1, ToDatetime(absl::ToUnixMicros(cutoff)));
    remove.setInt(2, max_rows);
    deleted = remove.executeUpdate();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return deleted;
}

}  // namespace crm::auth
