// The `filter` language of the List methods: a subset of AIP-160, parsed
// into a tree against a module's filterable fields and compiled to a
// parameterized SQL condition. Field names in the SQL come from the
// descriptors and every value is a bound parameter, so no filter text ever
// reaches the SQL.
//
//   filter      = [ expression ]
//   expression  = factor { "AND" factor }
//   factor      = term { "OR" term }
//   term        = [ "NOT" | "-" ] ( comparison | "(" expression ")" )
//   comparison  = field ( "=" | "!=" | "<" | "<=" | ">" | ">=" ) value
//               | field ":" string | field ":" "*"
//
// As in AIP-160, OR binds tighter than AND. The proto comment on CrmService
// gives the literal forms and what each operator means per field kind.
#ifndef CRM_SERVICES_CRM_FILTER_H_
#define CRM_SERVICES_CRM_FILTER_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/crm/record_rows.h"
#include "services/crm/record_schema.h"

namespace crm::data {

// Bounds that keep parsing and the generated SQL small.
inline constexpr size_t kMaxFilterBytes = 2048;
// Parentheses and NOT each add one level.
inline constexpr int kMaxFilterDepth = 8;
inline constexpr int kMaxFilterComparisons = 32;

enum class FilterOperator {
  kEqual,
  kNotEqual,
  kLess,
  kLessOrEqual,
  kGreater,
  kGreaterOrEqual,
  kContains,    // text:"abc"
  kStartsWith,  // text:"abc*"
  kIsSet,       // field:*
};

// One node of a parsed filter.
struct FilterNode {
  enum class Type { kAnd, kOr, kNot, kComparison };

  Type type = Type::kComparison;
  // Two or more operands for kAnd and kOr, one for kNot.
  std::vector<FilterNode> children;
  // For kComparison: the field, the operator and the value converted to
  // what the column stores. kIsSet has no value, and kContains and
  // kStartsWith have the search text.
  const ColumnField* column = nullptr;
  FilterOperator op = FilterOperator::kEqual;
  SqlValue value;
};

// Parses `filter` against the filterable fields of `schema`. Returns
// std::nullopt for an empty or all-blank filter, and INVALID_ARGUMENT
// naming the character position (1-based, in code points) for a syntax
// error, an unknown or unfilterable field, a value of the wrong type, or a
// filter over the bounds above.
absl::StatusOr<std::optional<FilterNode>> ParseFilter(const ModuleSchema& schema, absl::string_view filter);

// Compiles a parsed filter into a condition that is TRUE or FALSE for every
// row, never NULL, so NOT is always the exact complement.
SqlCondition CompileFilter(const FilterNode& node);

// A Lisp-like rendering for tests, such as (AND (= status 1) (OR ...)).
std::string FilterToString(const FilterNode& node);

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_FILTER_H_
