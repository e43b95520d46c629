// Conversion between absl::Status, used inside both services, and
// grpc::Status at the gRPC boundary. The canonical codes are numerically
// identical. Error details attached with common/error_details.h travel as a
// serialized google.rpc.Status in grpc::Status::error_details(), which gRPC
// sends as the grpc-status-details-bin trailer.
#ifndef CRM_COMMON_GRPC_STATUS_H_
#define CRM_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace crm {

// Converts `status` for a server response. An error gets binary details: a
// google.rpc.Status with its code, message and payloads, whose ErrorInfo
// has `domain` (kAuthErrorDomain or kDataErrorDomain). An error without
// payloads still gets a google.rpc.Status with no details.
grpc::Status ToGrpcStatus(const absl::Status& status, absl::string_view domain);

// Converts a status that a gRPC client call returned, keeping the details
// of a peer that sends google.rpc.Status. Details that do not parse are
// dropped; the code and message are kept.
absl::Status FromGrpcStatus(const grpc::Status& status);

// Name of a gRPC status code as in the gRPC spec, such as "PERMISSION_DENIED".
const char* StatusCodeName(grpc::StatusCode code);

}  // namespace crm

#endif  // CRM_COMMON_GRPC_STATUS_H_
