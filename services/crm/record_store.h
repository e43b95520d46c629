// Storage of CRM records: the five standard operations for any module,
// driven by its ModuleSchema, and the ConvertLead custom operation. Every
// statement filters by organization, so a record of another organization
// behaves exactly like a missing one.
#ifndef CRM_SERVICES_CRM_RECORD_STORE_H_
#define CRM_SERVICES_CRM_RECORD_STORE_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/mysql_pool.h"
#include "common/page_token.h"
#include "crm/data/v1/crm_service.pb.h"
#include "google/protobuf/field_mask.pb.h"
#include "google/protobuf/message.h"
#include "services/crm/record_schema.h"

namespace crm::data {

inline constexpr int kDefaultPageSize = 50;
inline constexpr int kMaxPageSize = 1000;

// The paging and query fields of a List request.
struct ListParams {
  int page_size = 0;
  std::string page_token;
  std::string filter;
  std::string order_by;
};

class RecordStore {
 public:
  using Clock = std::function<absl::Time()>;

  RecordStore(MysqlPool* pool, PageTokenCodec page_tokens, Clock clock = absl::Now);

  // Chooses how a create reads the new record's id: true uses MariaDB's
  // INSERT ... RETURNING (one round trip), false a separate
  // SELECT LAST_INSERT_ID(), which every MySQL-protocol server supports.
  // The default is true on MariaDB.
  void set_insert_returning(bool enabled) { insert_returning_ = enabled; }

  // Validates `resource`, applies create defaults, checks its references,
  // stores it and sets the output-only fields on it. With a `request_id`
  // (a UUID) already used for this module and organization, stores nothing
  // and reads the record created then into `resource` instead.
  absl::Status Create(const ModuleSchema& schema, uint64_t organization_id, absl::string_view request_id,
                      google::protobuf::Message* resource);

  // Reads record `id` into `out`; NOT_FOUND when the organization has none.
  absl::Status Get(const ModuleSchema& schema, uint64_t organization_id, absl::string_view id,
                   google::protobuf::Message* out);

  // Appends up to page_size records that match the filter, after the page
  // token's position in order_by order, through `add_record`. Sets
  // `next_page_token` when more remain. `method` is part of the page
  // token's fingerprint, with the organization, filter and order_by.
  absl::Status List(const ModuleSchema& schema, uint64_t organization_id, absl::string_view method,
                    const ListParams& params, absl::FunctionRef<google::protobuf::Message*()> add_record,
                    std::string* next_page_token);

  // Applies the fields of `patch` named in `mask` (or, for an empty mask,
  // every field set in `patch`) to record patch.id and writes the result to
  // `out`. A non-empty patch.etag must match the stored record's, or the
  // update fails with ABORTED.
  absl::Status Update(const ModuleSchema& schema, uint64_t organization_id,
                      const google::protobuf::Message& patch, const google::protobuf::FieldMask& mask,
                      google::protobuf::Message* out);

  // Deletes record `id` and applies the delete rules of the references to
  // it; NOT_FOUND when the organization has none, ABORTED when `etag` is
  // non-empty and stale.
  absl::Status Delete(const ModuleSchema& schema, uint64_t organization_id, absl::string_view id,
                      absl::string_view etag);

  // Converts a lead into an account, a contact and optionally an
  // opportunity in one transaction; see ConvertLead in crm_service.proto.
  absl::Status ConvertLead(uint64_t organization_id, const crm::data::v1::ConvertLeadRequest& request,
                           crm::data::v1::ConvertLeadResponse* response);

  // Deletes up to `max_rows` request ids of creates made more than
  // `retention` ago, oldest first, and returns how many it deleted. A create
  // that reuses a deleted request id makes a new record.
  absl::StatusOr<int> PurgeCreateRequests(absl::Duration retention, int max_rows);

 private:
  // The current time, cut to the microseconds that DATETIME(6) keeps.
  absl::Time Now() const;

  MysqlPool* const pool_;
  const PageTokenCodec page_tokens_;
  const Clock clock_;
  bool insert_returning_;
};

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_RECORD_STORE_H_
