// Scope sets as bit masks: bit (module - 1) * 4 + (action - 1) is set when
// the (module, action) scope is granted. 6 modules x 4 actions use 24 bits.
// The auth schema stores this mask; both services convert with these
// functions only.
#ifndef CRM_COMMON_SCOPES_H_
#define CRM_COMMON_SCOPES_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "crm/auth/v1/scope.pb.h"
#include "google/protobuf/repeated_field.h"

namespace crm {

using ScopeMask = uint32_t;

// Bit of one scope; both values must be defined and not *_UNSPECIFIED.
ScopeMask ScopeBit(crm::auth::v1::Module module, crm::auth::v1::Action action);

// Builds a mask from scopes. INVALID_ARGUMENT when a scope has an
// unspecified or unknown module or action, or appears twice.
absl::StatusOr<ScopeMask> ScopeMaskFromProto(
    const google::protobuf::RepeatedPtrField<crm::auth::v1::Scope>& scopes);

// Writes the scopes of `mask`, sorted by module then action.
void ScopeMaskToProto(ScopeMask mask, google::protobuf::RepeatedPtrField<crm::auth::v1::Scope>* scopes);

// Readable form such as "LEAD:READ", for messages and logs.
std::string ScopeName(crm::auth::v1::Module module, crm::auth::v1::Action action);

}  // namespace crm

#endif  // CRM_COMMON_SCOPES_H_
