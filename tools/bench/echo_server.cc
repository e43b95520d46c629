// echo_server: the baseline of tools/bench.sh. It serves crm.data.v1.CrmService
// with the same server API as crm_server: the generated service class with
// every method replaced by a raw callback handler (MarkMethodRawCallback),
// built with ServerBuilder next to health checking and reflection. Unlike
// crm_server it finishes each call at once on the gRPC thread, with no token
// check, no worker pool and no database. GetLead returns a fixed lead of the
// seeded leads' size, and every other method an empty response.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/server_setup.h"
#include "crm/data/v1/crm_service.grpc.pb.h"

ABSL_FLAG(std::string, listen_host, "127.0.0.1", "Address to listen on");
ABSL_FLAG(int, port, 0, "TCP port; 0 picks a free port, which the start-up log line names");

namespace crm::bench {
namespace {

// A GetLeadResponse like the ones crm_server returns for seeded leads.
std::string CannedGetLeadResponse() {
  crm::data::v1::GetLeadResponse response;
  crm::data::v1::Lead* lead = response.mutable_lead();
  lead->set_id("1000001");
  lead->set_first_name("Ada");
  lead->set_last_name("Lead 1000001");
  lead->set_email("lead1000001@example.com");
  lead->set_phone("+1 555 0100");
  lead->set_company("Example Corp");
  lead->set_title("Buyer");
  lead->set_status(crm::data::v1::LEAD_STATUS_NEW);
  lead->set_source("web form");
  lead->mutable_create_time()->set_seconds(1767225600);
  lead->mutable_update_time()->set_seconds(1767225600);
  return response.SerializeAsString();
}

class EchoCrmService final : public crm::data::v1::CrmService::Service {
 public:
  EchoCrmService() : get_lead_response_(CannedGetLeadResponse()) {
    const google::protobuf::ServiceDescriptor* service =
        crm::data::v1::GetLeadRequest::descriptor()->file()->FindServiceByName("CrmService");
    for (int i = 0; i < service->method_count(); ++i) {
      const std::string* body = service->method(i)->name() == "GetLead" ? &get_lead_response_ : &empty_response_;
      MarkMethodRawCallback(i, new grpc::internal::CallbackUnaryHandler<grpc::ByteBuffer, grpc::ByteBuffer>(
                                   [body](grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) {
                                     // A new slice per call, as crm_server
                                     // makes for its serialized response.
                                     grpc::Slice slice(*body);
                                     *response = grpc::ByteBuffer(&slice, 1);
                                     grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
                                     reactor->Finish(grpc::Status::OK);
                                     return reactor;
                                   }));
    }
  }

 private:
  const std::string get_lead_response_;
  const std::string empty_response_;
};

int Run() {
  if (!ConfigureLogging("info")) return 1;
  EchoCrmService service;
  EnableHealthAndReflection();
  grpc::ServerBuilder builder;
  int port = 0;
  std::string address = absl::StrCat(absl::GetFlag(FLAGS_listen_host), ":", absl::GetFlag(FLAGS_port));
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::cerr << "echo_server: cannot listen on " << address << "\n";
    return 1;
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  spdlog::info("echo server listening on {}:{}", absl::GetFlag(FLAGS_listen_host), port);
  crm::WaitForShutdownSignal();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  spdlog::info("echo server stopped");
  return 0;
}

}  // namespace
}  // namespace crm::bench

int main(int argc, char** argv) {
  crm::BlockShutdownSignals();
  absl::SetProgramUsageMessage("Baseline CrmService that returns a fixed response to every call at once, for tools/bench.sh.");
  absl::ParseCommandLine(argc, argv);
  return crm::bench::Run();
}
