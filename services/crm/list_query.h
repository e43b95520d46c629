// The sort order and keyset position of the List methods. order_by names
// sortable fields (field_rules.sortable), and the order always ends with
// id, so it is total. A page token stores the sort values and id of the
// last record returned: its position. The next page selects the rows
// strictly after that position, with the tuple comparison written out for
// mixed directions and unset (NULL) values. So no row is skipped or
// repeated when rows are added or removed between pages.
#ifndef CRM_SERVICES_CRM_LIST_QUERY_H_
#define CRM_SERVICES_CRM_LIST_QUERY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "services/crm/record_rows.h"
#include "services/crm/record_schema.h"

namespace crm::data {

inline constexpr size_t kMaxOrderByBytes = 256;
// Fields order_by may name, not counting the id that always ends the order.
inline constexpr int kMaxOrderByFields = 3;

struct SortKey {
  const ColumnField* column;
  bool descending;
};

// Parses order_by ("field [desc|asc], ..."). The result ends with id,
// which takes the direction of the field before it; an empty order_by is
// id ascending. INVALID_ARGUMENT naming the position (1-based) for unknown
// or unsortable fields, repeated fields, bad syntax or too many fields.
absl::StatusOr<std::vector<SortKey>> ParseOrderBy(const ModuleSchema& schema, absl::string_view order_by);

// "last_name DESC, id DESC": the ORDER BY list for `keys`.
std::string OrderByClause(const std::vector<SortKey>& keys);

// The values of the sort keys in `record`: its position in the order.
std::vector<SqlValue> PositionOf(const std::vector<SortKey>& keys, const google::protobuf::Message& record);

// A condition that is true exactly for rows after `position` in the order.
// In ascending order unset (NULL) values come first, as MySQL and MariaDB
// sort them.
SqlCondition AfterPosition(const std::vector<SortKey>& keys, const std::vector<SqlValue>& position);

// Serializes a position for a page token, and parses it back, checking
// that each value fits its key's kind.
std::string EncodePosition(const std::vector<SqlValue>& position);
absl::StatusOr<std::vector<SqlValue>> DecodePosition(const std::vector<SortKey>& keys, absl::string_view bytes);

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_LIST_QUERY_H_
