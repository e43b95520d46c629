// The mapping between one record message and its table row, shared by the
// store, the filter compiler and the List cursor: the SQL value of each
// column, the SELECT list, binding parameters and reading rows back.
//
// Timestamps travel as text in both directions, because the legacy
// connector's getters drop the microseconds of DATETIME(6) columns.
#ifndef CRM_SERVICES_CRM_RECORD_ROWS_H_
#define CRM_SERVICES_CRM_RECORD_ROWS_H_

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "services/crm/record_schema.h"

namespace sql {
class PreparedStatement;
class ResultSet;
}  // namespace sql

namespace crm::data {

// A value for one statement parameter: NULL, a signed or unsigned integer,
// or text (which also carries dates and timestamps).
using SqlValue = std::variant<std::monostate, int64_t, uint64_t, std::string>;

// A piece of WHERE clause with `?` placeholders and their values in order.
struct SqlCondition {
  std::string sql;
  std::vector<SqlValue> params;
};

// Binds `value` to parameter `index` (1-based).
void BindSqlValue(const SqlValue& value, int index, sql::PreparedStatement* statement);

// Formats a time the way DATETIME(6) columns take it: "2025-01-31 08:00:00.000000" (UTC).
std::string FormatSqlTime(absl::Time time);

// Converts between Timestamp and absl::Time, keeping microseconds.
void SetTimestamp(absl::Time time, google::protobuf::Timestamp* out);
absl::Time FromTimestamp(const google::protobuf::Timestamp& timestamp);

// Sets the Timestamp field `field_name` of `record` to `time`.
void SetTimeField(absl::Time time, absl::string_view field_name, google::protobuf::Message* record);

// The value `column` stores for `resource`: '' for unset text, NULL for an
// unset date, record id or timestamp, the number for enums.
SqlValue ColumnValue(const ColumnField& column, const google::protobuf::Message& resource);

// "id, create_time, update_time, revision, <columns...>" in the order
// ReadRecord expects.
std::string SelectList(const ModuleSchema& schema);

// Binds every column of `resource` to parameters first_index,
// first_index + 1, ... Returns the next free index.
int BindColumns(const ModuleSchema& schema, const google::protobuf::Message& resource,
                sql::PreparedStatement* statement, int first_index);

// Reads a row selected with SelectList into `out`, etag included.
absl::Status ReadRecord(const ModuleSchema& schema, sql::ResultSet& row, google::protobuf::Message* out);

// The etag of a record at `revision`, and its inverse; ParseEtag returns
// INVALID_ARGUMENT for text this server never issued.
std::string FormatEtag(uint64_t revision);
absl::StatusOr<uint64_t> ParseEtag(absl::string_view etag);

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_RECORD_ROWS_H_
