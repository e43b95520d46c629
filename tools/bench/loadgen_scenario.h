// The load generator's scenarios and their inputs. Each scenario is a
// Workload that sends one kind of traffic through the generated stubs on
// gRPC's callback API. The seed files list the tokens, leads and admin keys
// that tools/bench.sh created before the run.
#ifndef CRM_TOOLS_BENCH_LOADGEN_SCENARIO_H_
#define CRM_TOOLS_BENCH_LOADGEN_SCENARIO_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/auth/v1/private_app.grpc.pb.h"
#include "crm/auth/v1/token_service.grpc.pb.h"
#include "crm/data/v1/crm_service.grpc.pb.h"
#include "crm/data/v1/status.grpc.pb.h"
#include "tools/bench/loadgen_runner.h"

namespace crm::bench {

// One line of a tokens file: "ORGANIZATION_ID APP_ID TOKEN".
struct AppToken {
  uint64_t organization_id = 0;
  std::string app_id;
  std::string token;
};

// One line of a leads file: "ORGANIZATION_ID FIRST_LEAD_ID COUNT", the
// organization's leads with ids FIRST_LEAD_ID to FIRST_LEAD_ID + COUNT - 1.
struct LeadRange {
  uint64_t first_id = 0;
  int64_t count = 0;
};

// One line of an admin keys file: "ORGANIZATION_ID ADMIN_KEY".
struct AdminKey {
  uint64_t organization_id = 0;
  std::string key;
};

// Each reader returns INVALID_ARGUMENT naming the file and line of a
// malformed line, and NOT_FOUND when the file cannot be opened.
absl::StatusOr<std::vector<AppToken>> ReadTokens(const std::string& path);
absl::StatusOr<std::unordered_map<uint64_t, LeadRange>> ReadLeadRanges(const std::string& path);
absl::StatusOr<std::vector<AdminKey>> ReadAdminKeys(const std::string& path);

// Several channels to one server, each on its own TCP connection, so the
// load is not confined to one HTTP/2 connection. Slot i uses channel
// i % count.
class Channels {
 public:
  Channels(const std::string& target, int count);

  // Waits until every channel is connected, or returns UNAVAILABLE naming
  // the target.
  absl::Status WaitForConnected(absl::Duration timeout);

  crm::data::v1::CrmService::Stub& crm(int slot) { return *crm_[Index(slot)]; }
  crm::auth::v1::TokenService::Stub& tokens(int slot) { return *tokens_[Index(slot)]; }
  crm::auth::v1::PrivateAppService::Stub& apps(int slot) { return *apps_[Index(slot)]; }
  crm::data::v1::CrmStatusService::Stub& status() { return *status_; }

 private:
  size_t Index(int slot) const { return static_cast<size_t>(slot) % channels_.size(); }

  const std::string target_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<crm::data::v1::CrmService::Stub>> crm_;
  std::vector<std::unique_ptr<crm::auth::v1::TokenService::Stub>> tokens_;
  std::vector<std::unique_ptr<crm::auth::v1::PrivateAppService::Stub>> apps_;
  std::unique_ptr<crm::data::v1::CrmStatusService::Stub> status_;
};

struct ScenarioConfig {
  Channels* channels = nullptr;
  std::vector<AppToken> tokens;
  std::unordered_map<uint64_t, LeadRange> leads;
  std::vector<AdminKey> admin_keys;
  // Deadline of each call.
  absl::Duration deadline = absl::Seconds(10);
  int page_size = 50;
  // seed_apps: apps to create in each organization of admin_keys, and the
  // tokens file to write.
  int apps_per_organization = 20;
  std::string tokens_out;
};

// A Workload with the steps around the load that some scenarios need.
class Scenario : public Workload {
 public:
  // Runs before the load, such as creating the apps whose tokens are
  // rotated.
  virtual absl::Status SetUp(int concurrency) { return absl::OkStatus(); }

  // Runs after the load: deletes what SetUp created or writes output files.
  virtual absl::Status TearDown() { return absl::OkStatus(); }

  // Number of calls of a counted scenario, which runs until it has made
  // them all, or 0 for a timed scenario.
  virtual int64_t CallLimit() const { return 0; }
};

// CRM scenarios: get_lead, create_lead, update_lead, list_leads, mixed,
// warm_tokens, and random_tokens and unknown_tokens (credential guessing). Returns nullptr for another name and INVALID_ARGUMENT when
// the config lacks what the scenario needs.
absl::StatusOr<std::unique_ptr<Scenario>> MakeCrmScenario(absl::string_view name, ScenarioConfig config);

// Auth service scenarios: check_token, create_delete_app, rotate_token and
// seed_apps. Same contract as MakeCrmScenario.
absl::StatusOr<std::unique_ptr<Scenario>> MakeAuthScenario(absl::string_view name, ScenarioConfig config);

// Sets the deadline of a call to `timeout` from now.
void SetTimeout(grpc::ClientContext& context, absl::Duration timeout);

// Owns what one asynchronous unary call needs until its callback has run.
template <typename Request, typename Response>
struct PendingCall {
  grpc::ClientContext context;
  Request request;
  Response response;
};

// Starts `call` through `start`, a lambda that forwards to a stub's async()
// method. When the call ends, runs `on_ok` with the response if it
// succeeded, then `done`, then frees the call.
template <typename Request, typename Response, typename Start, typename OnOk>
void Launch(std::unique_ptr<PendingCall<Request, Response>> call, Method method, Start start, OnOk on_ok,
            CallDone done) {
  PendingCall<Request, Response>* raw = call.release();
  std::function<void(grpc::Status)> callback = [raw, method, on_ok, done](grpc::Status status) {
    std::unique_ptr<PendingCall<Request, Response>> owned(raw);
    if (status.ok()) on_ok(owned->response);
    done(method, status.error_code());
  };
  start(&raw->context, &raw->request, &raw->response, std::move(callback));
}

// An on_ok for calls whose response the scenario does not need.
struct IgnoreResponse {
  template <typename Response>
  void operator()(const Response&) const {}
};

}  // namespace crm::bench

#endif  // CRM_TOOLS_BENCH_LOADGEN_SCENARIO_H_
