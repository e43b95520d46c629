// Auth service scenarios: TokenService.CheckToken and the PrivateAppService
// calls that create apps and rotate their tokens.
#include <algorithm>
#include <fstream>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tools/bench/loadgen_scenario.h"

namespace crm::bench {
namespace {

using crm::auth::v1::PrivateAppService;

// An organization may have at most this many apps (auth service limit).
constexpr int kMaxAppsPerOrganization = 20;

template <typename Request, typename Response>
std::unique_ptr<PendingCall<Request, Response>> NewAdminCall(const AdminKey& admin, absl::Duration deadline) {
  auto call = std::make_unique<PendingCall<Request, Response>>();
  SetTimeout(call->context, deadline);
  call->context.AddMetadata("authorization", absl::StrCat("Bearer ", admin.key));
  return call;
}

// Fills a CreatePrivateApp request for an app with the Lead scopes that
// the CRM scenarios use.
void FillNewApp(int64_t serial, crm::auth::v1::CreatePrivateAppRequest* request) {
  crm::auth::v1::PrivateApp* app = request->mutable_private_app();
  app->set_display_name(absl::StrCat("Benchmark app ", serial));
  app->set_description("Created by tools/bench/loadgen");
  for (crm::auth::v1::Action action :
       {crm::auth::v1::ACTION_READ, crm::auth::v1::ACTION_CREATE, crm::auth::v1::ACTION_UPDATE}) {
    crm::auth::v1::Scope* scope = app->add_scopes();
    scope->set_module(crm::auth::v1::MODULE_LEAD);
    scope->set_action(action);
  }
}

// Deletes an app with a blocking call, for set-up and clean-up steps.
absl::Status DeleteAppNow(PrivateAppService::Stub& stub, const AdminKey& admin, const std::string& app_id,
                          absl::Duration deadline) {
  grpc::ClientContext context;
  SetTimeout(context, deadline);
  context.AddMetadata("authorization", absl::StrCat("Bearer ", admin.key));
  crm::auth::v1::DeletePrivateAppRequest request;
  request.set_id(app_id);
  crm::auth::v1::DeletePrivateAppResponse response;
  grpc::Status status = stub.DeletePrivateApp(&context, request, &response);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat("cannot delete app ", app_id, ": ", status.error_message()));
  }
  return absl::OkStatus();
}

// Checks that slots spread over the organizations stay within the app
// limit, counting one app per slot.
absl::Status CheckAppRoom(const ScenarioConfig& config, absl::string_view scenario, int concurrency) {
  if (config.admin_keys.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(scenario, " needs --admin_keys_file with at least one key"));
  }
  int apps_per_organization =
      (concurrency + static_cast<int>(config.admin_keys.size()) - 1) / static_cast<int>(config.admin_keys.size());
  if (apps_per_organization > kMaxAppsPerOrganization) {
    return absl::InvalidArgumentError(absl::StrCat(scenario, " at concurrency ", concurrency, " needs at least ",
                                                   (concurrency + kMaxAppsPerOrganization - 1) /
                                                       kMaxAppsPerOrganization,
                                                   " organizations in --admin_keys_file"));
  }
  return absl::OkStatus();
}

// TokenService.CheckToken with random tokens: the auth server's database
// lookup, which a CRM server makes on each token-cache miss.
class CheckTokenScenario : public Scenario {
 public:
  explicit CheckTokenScenario(ScenarioConfig config) : config_(std::move(config)) {}

  void StartCall(int slot, int64_t call_index, std::mt19937_64& random, CallDone done) override {
    const AppToken& token =
        config_.tokens[std::uniform_int_distribution<size_t>(0, config_.tokens.size() - 1)(random)];
    auto call = std::make_unique<PendingCall<crm::auth::v1::CheckTokenRequest, crm::auth::v1::CheckTokenResponse>>();
    SetTimeout(call->context, config_.deadline);
    call->request.set_token(token.token);
    crm::auth::v1::TokenService::Stub& stub = config_.channels->tokens(slot);
    Launch(
        std::move(call), Method::kCheckToken,
        [&stub](auto* context, auto* request, auto* response, auto callback) {
          stub.async()->CheckToken(context, request, response, std::move(callback));
        },
        IgnoreResponse(), std::move(done));
  }

 private:
  const ScenarioConfig config_;
};

// Each slot creates an app, then deletes it with its next call, in
// organization slot % organizations, so no organization reaches its app
// limit. Both calls are measured, as CreatePrivateApp and DeletePrivateApp.
class CreateDeleteAppScenario : public Scenario {
 public:
  explicit CreateDeleteAppScenario(ScenarioConfig config) : config_(std::move(config)) {}

  absl::Status SetUp(int concurrency) override {
    pending_app_ids_.assign(concurrency, "");
    return CheckAppRoom(config_, "create_delete_app", concurrency);
  }

  void StartCall(int slot, int64_t call_index, std::mt19937_64& random, CallDone done) override {
    const AdminKey& admin = AdminFor(slot);
    std::string* pending = &pending_app_ids_[slot];
    PrivateAppService::Stub& stub = config_.channels->apps(slot);
    if (pending->empty()) {
      auto call = NewAdminCall<crm::auth::v1::CreatePrivateAppRequest, crm::auth::v1::CreatePrivateAppResponse>(
          admin, config_.deadline);
      FillNewApp(call_index, &call->request);
      Launch(
          std::move(call), Method::kCreatePrivateApp,
          [&stub](auto* context, auto* request, auto* response, auto callback) {
            stub.async()->CreatePrivateApp(context, request, response, std::move(callback));
          },
          [pending](const crm::auth::v1::CreatePrivateAppResponse& response) {
            *pending = response.private_app().id();
          },
          std::move(done));
      return;
    }
    // A failed delete leaves the id pending, so the slot's next call tries
    // again instead of creating another app.
    auto call = NewAdminCall<crm::auth::v1::DeletePrivateAppRequest, crm::auth::v1::DeletePrivateAppResponse>(
        admin, config_.deadline);
    call->request.set_id(*pending);
    Launch(
        std::move(call), Method::kDeletePrivateApp,
        [&stub](auto* context, auto* request, auto* response, auto callback) {
          stub.async()->DeletePrivateApp(context, request, response, std::move(callback));
        },
        [pending](const crm::auth::v1::DeletePrivateAppResponse&) { pending->clear(); }, std::move(done));
  }

  absl::Status TearDown() override {
    for (size_t slot = 0; slot < pending_app_ids_.size(); ++slot) {
      if (pending_app_ids_[slot].empty()) continue;
      absl::Status deleted = DeleteAppNow(config_.channels->apps(0), AdminFor(static_cast<int>(slot)),
                                          pending_app_ids_[slot], config_.deadline);
      if (!deleted.ok()) return deleted;
    }
    return absl::OkStatus();
  }

 private:
  const AdminKey& AdminFor(int slot) const {
    return config_.admin_keys[static_cast<size_t>(slot) % config_.admin_keys.size()];
  }

  const ScenarioConfig config_;
  // Indexed by slot: the app the slot created and has not deleted yet.
  std::vector<std::string> pending_app_ids_;
};

// Each slot owns one app, created in SetUp, and rotates its token over and
// over; TearDown deletes the apps.
class RotateTokenScenario : public Scenario {
 public:
  explicit RotateTokenScenario(ScenarioConfig config) : config_(std::move(config)) {}

  absl::Status SetUp(int concurrency) override {
    if (absl::Status room = CheckAppRoom(config_, "rotate_token", concurrency); !room.ok()) return room;
    for (int slot = 0; slot < concurrency; ++slot) {
      grpc::ClientContext context;
      SetTimeout(context, config_.deadline);
      context.AddMetadata("authorization", absl::StrCat("Bearer ", AdminFor(slot).key));
      crm::auth::v1::CreatePrivateAppRequest request;
      FillNewApp(slot, &request);
      crm::auth::v1::CreatePrivateAppResponse response;
      grpc::Status status = config_.channels->apps(slot).CreatePrivateApp(&context, request, &response);
      if (!status.ok()) {
        return absl::UnavailableError(absl::StrCat("cannot create the app of slot ", slot, ": ",
                                                   status.error_message()));
      }
      app_ids_.push_back(response.private_app().id());
    }
    return absl::OkStatus();
  }

  void StartCall(int slot, int64_t call_index, std::mt19937_64& random, CallDone done) override {
    auto call = NewAdminCall<crm::auth::v1::RotateAccessTokenRequest, crm::auth::v1::RotateAccessTokenResponse>(
        AdminFor(slot), config_.deadline);
    call->request.set_id(app_ids_[slot]);
    PrivateAppService::Stub& stub = config_.channels->apps(slot);
    Launch(
        std::move(call), Method::kRotateAccessToken,
        [&stub](auto* context, auto* request, auto* response, auto callback) {
          stub.async()->RotateAccessToken(context, request, response, std::move(callback));
        },
        IgnoreResponse(), std::move(done));
  }

  absl::Status TearDown() override {
    for (size_t slot = 0; slot < app_ids_.size(); ++slot) {
      absl::Status deleted =
          DeleteAppNow(config_.channels->apps(0), AdminFor(static_cast<int>(slot)), app_ids_[slot], config_.deadline);
      if (!deleted.ok()) return deleted;
    }
    return absl::OkStatus();
  }

 private:
  const AdminKey& AdminFor(int slot) const {
    return config_.admin_keys[static_cast<size_t>(slot) % config_.admin_keys.size()];
  }

  const ScenarioConfig config_;
  std::vector<std::string> app_ids_;
};

// Creates apps_per_organization apps in every organization of the admin
// keys file and writes their tokens to tokens_out: seeding, not a
// measurement, though the report still counts its calls.
class SeedAppsScenario : public Scenario {
 public:
  explicit SeedAppsScenario(ScenarioConfig config) : config_(std::move(config)) {}

  int64_t CallLimit() const override {
    return static_cast<int64_t>(config_.admin_keys.size()) * config_.apps_per_organization;
  }

  void StartCall(int slot, int64_t call_index, std::mt19937_64& random, CallDone done) override {
    const AdminKey& admin = config_.admin_keys[call_index / config_.apps_per_organization];
    auto call = NewAdminCall<crm::auth::v1::CreatePrivateAppRequest, crm::auth::v1::CreatePrivateAppResponse>(
        admin, config_.deadline);
    FillNewApp(call_index, &call->request);
    PrivateAppService::Stub& stub = config_.channels->apps(slot);
    Launch(
        std::move(call), Method::kCreatePrivateApp,
        [&stub](auto* context, auto* request, auto* response, auto callback) {
          stub.async()->CreatePrivateApp(context, request, response, std::move(callback));
        },
        [this, organization_id = admin.organization_id](const crm::auth::v1::CreatePrivateAppResponse& response) {
          absl::MutexLock lock(&mu_);
          created_.push_back({organization_id, response.private_app().id(), response.access_token()});
        },
        std::move(done));
  }

  // Writes the tokens grouped by organization, in app creation order.
  absl::Status TearDown() override {
    absl::MutexLock lock(&mu_);
    auto app_number = [](const AppToken& token) {
      uint64_t number = 0;
      return absl::SimpleAtoi(token.app_id, &number) ? number : 0;
    };
    std::sort(created_.begin(), created_.end(), [&](const AppToken& left, const AppToken& right) {
      if (left.organization_id != right.organization_id) return left.organization_id < right.organization_id;
      return app_number(left) < app_number(right);
    });
    std::ofstream out(config_.tokens_out);
    for (const AppToken& token : created_) {
      out << token.organization_id << " " << token.app_id << " " << token.token << "\n";
    }
    out.close();
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", config_.tokens_out));
    return absl::OkStatus();
  }

 private:
  const ScenarioConfig config_;
  absl::Mutex mu_;
  std::vector<AppToken> created_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Scenario>> MakeAuthScenario(absl::string_view name, ScenarioConfig config) {
  if (name == "check_token") {
    if (config.tokens.empty()) return absl::InvalidArgumentError("check_token needs --tokens_file");
    return std::make_unique<CheckTokenScenario>(std::move(config));
  }
  if (name == "create_delete_app") return std::make_unique<CreateDeleteAppScenario>(std::move(config));
  if (name == "rotate_token") return std::make_unique<RotateTokenScenario>(std::move(config));
  if (name == "seed_apps") {
    if (config.admin_keys.empty()) return absl::InvalidArgumentError("seed_apps needs --admin_keys_file");
    if (config.tokens_out.empty()) return absl::InvalidArgumentError("seed_apps needs --tokens_out");
    if (config.apps_per_organization < 1 || config.apps_per_organization > kMaxAppsPerOrganization) {
      return absl::InvalidArgumentError(
          absl::StrCat("--apps_per_organization must be 1 to ", kMaxAppsPerOrganization));
    }
    return std::make_unique<SeedAppsScenario>(std::move(config));
  }
  return std::unique_ptr<Scenario>();
}

}  // namespace crm::bench
