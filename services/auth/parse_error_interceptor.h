// A server interceptor that reports a request message which does not parse
// as INVALID_ARGUMENT. gRPC's generated synchronous handlers return INTERNAL
// with an empty message for such a request, which blames the server for a
// client's bytes. Proto3 string fields that hold invalid UTF-8 are the usual
// cause, because protobuf rejects them while parsing.
#ifndef CRM_SERVICES_AUTH_PARSE_ERROR_INTERCEPTOR_H_
#define CRM_SERVICES_AUTH_PARSE_ERROR_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

namespace crm::auth {

class ParseErrorInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override;
};

}  // namespace crm::auth

#endif  // CRM_SERVICES_AUTH_PARSE_ERROR_INTERCEPTOR_H_
