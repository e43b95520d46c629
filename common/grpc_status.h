// Conversion from absl::Status, used inside both services, to grpc::Status
// at the gRPC boundary. The canonical codes are numerically identical.
#ifndef CRM_COMMON_GRPC_STATUS_H_
#define CRM_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace crm {

grpc::Status ToGrpcStatus(const absl::Status& status);

// Name of a gRPC status code as in the gRPC spec, such as "PERMISSION_DENIED".
const char* StatusCodeName(grpc::StatusCode code);

}  // namespace crm

#endif  // CRM_COMMON_GRPC_STATUS_H_
