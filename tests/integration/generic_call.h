// Calls any CrmService method by its descriptor through grpc::GenericStub,
// so tests can walk all 30 methods with one loop.
#ifndef CRM_TESTS_INTEGRATION_GENERIC_CALL_H_
#define CRM_TESTS_INTEGRATION_GENERIC_CALL_H_

#include <grpcpp/generic/generic_stub.h>

#include <future>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {

// Sends `request` to `method` with `token` and parses the reply into
// `response` (which must be of the method's output type).
inline grpc::Status CallMethod(grpc::GenericStub& stub, const google::protobuf::MethodDescriptor* method,
                               const std::string& token, const google::protobuf::Message& request,
                               google::protobuf::Message* response) {
  std::string bytes = request.SerializeAsString();
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  std::unique_ptr<grpc::ClientContext> context = WithBearer(token);
  std::promise<grpc::Status> done;
  stub.UnaryCall(context.get(), absl::StrCat("/", method->service()->full_name(), "/", method->name()),
                 grpc::StubOptions(), &request_buffer, &response_buffer,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  grpc::Status status = done.get_future().get();
  if (status.ok()) {
    std::vector<grpc::Slice> slices;
    if (!response_buffer.Dump(&slices).ok()) return grpc::Status(grpc::StatusCode::INTERNAL, "cannot read reply");
    std::string reply;
    for (const grpc::Slice& part : slices) reply.append(reinterpret_cast<const char*>(part.begin()), part.size());
    if (!response->ParseFromString(reply)) return grpc::Status(grpc::StatusCode::INTERNAL, "cannot parse reply");
  }
  return status;
}

}  // namespace crm::testing

#endif  // CRM_TESTS_INTEGRATION_GENERIC_CALL_H_
