// Storage of CRM records: the five standard operations for any module,
// driven by its ModuleSchema. Every statement filters by organization, so a
// record of another organization behaves exactly like a missing one.
#ifndef CRM_SERVICES_CRM_RECORD_STORE_H_
#define CRM_SERVICES_CRM_RECORD_STORE_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/mysql_pool.h"
#include "common/page_token.h"
#include "google/protobuf/field_mask.pb.h"
#include "google/protobuf/message.h"
#include "services/crm/record_schema.h"

namespace crm::data {

inline constexpr int kDefaultPageSize = 50;
inline constexpr int kMaxPageSize = 1000;

class RecordStore {
 public:
  using Clock = std::function<absl::Time()>;

  RecordStore(MysqlPool* pool, PageTokenCodec page_tokens, Clock clock = absl::Now);

  // Validates `resource`, applies create defaults, stores it and sets the
  // output-only fields on it.
  absl::Status Create(const ModuleSchema& schema, uint64_t organization_id,
                      google::protobuf::Message* resource);

  // Reads record `id` into `out`; NOT_FOUND when the organization has none.
  absl::Status Get(const ModuleSchema& schema, uint64_t organization_id, absl::string_view id,
                   google::protobuf::Message* out);

  // Appends up to `page_size` records after the page token's position, oldest
  // first, through `add_record`. Sets `next_page_token` when more remain.
  // `method` is part of the page token's fingerprint.
  absl::Status List(const ModuleSchema& schema, uint64_t organization_id, absl::string_view method,
                    int page_size, absl::string_view page_token,
                    absl::FunctionRef<google::protobuf::Message*()> add_record, std::string* next_page_token);

  // Applies the fields of `patch` named in `mask` (or, for an empty mask,
  // every field set in `patch`) to record patch.id and writes the result to
  // `out`.
  absl::Status Update(const ModuleSchema& schema, uint64_t organization_id,
                      const google::protobuf::Message& patch, const google::protobuf::FieldMask& mask,
                      google::protobuf::Message* out);

  // Deletes record `id`; NOT_FOUND when the organization has none.
  absl::Status Delete(const ModuleSchema& schema, uint64_t organization_id, absl::string_view id);

 private:
  MysqlPool* const pool_;
  const PageTokenCodec page_tokens_;
  const Clock clock_;
};

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_RECORD_STORE_H_
