// CrmService scenarios. Every call carries the token's bearer header and
// the x-benchmark-organization-id header, which only crm_server_noauth
// reads, so crm_server, crm_server_noauth and echo_server receive identical
// requests.
#include <atomic>

#include "absl/strings/str_cat.h"
#include "common/token.h"
#include "tools/bench/loadgen_scenario.h"

namespace crm::bench {
namespace {

using crm::data::v1::CrmService;

// Starts single CrmService calls for the scenarios below.
class CrmCaller {
 public:
  explicit CrmCaller(const ScenarioConfig& config) : channels_(config.channels), deadline_(config.deadline) {}

  void GetLead(int slot, const AppToken& token, uint64_t lead_id, CallDone done) {
    auto call = NewCall<crm::data::v1::GetLeadRequest, crm::data::v1::GetLeadResponse>(token);
    call->request.set_id(absl::StrCat(lead_id));
    CrmService::Stub& stub = channels_->crm(slot);
    Launch(
        std::move(call), Method::kGetLead,
        [&stub](auto* context, auto* request, auto* response, auto callback) {
          stub.async()->GetLead(context, request, response, std::move(callback));
        },
        IgnoreResponse(), std::move(done));
  }

  // `serial` makes the lead's name and email unique within the run.
  void CreateLead(int slot, const AppToken& token, int64_t serial, CallDone done) {
    auto call = NewCall<crm::data::v1::CreateLeadRequest, crm::data::v1::CreateLeadResponse>(token);
    crm::data::v1::Lead* lead = call->request.mutable_lead();
    lead->set_first_name("Ada");
    lead->set_last_name(absl::StrCat("Created ", serial));
    lead->set_email(absl::StrCat("created", serial, "@example.com"));
    lead->set_phone("+1 555 0100");
    lead->set_company("Example Corp");
    lead->set_title("Buyer");
    lead->set_source("loadgen");
    CrmService::Stub& stub = channels_->crm(slot);
    Launch(
        std::move(call), Method::kCreateLead,
        [&stub](auto* context, auto* request, auto* response, auto callback) {
          stub.async()->CreateLead(context, request, response, std::move(callback));
        },
        IgnoreResponse(), std::move(done));
  }

  // Sets title and status, named in the update mask.
  void UpdateLead(int slot, const AppToken& token, uint64_t lead_id, int64_t serial, CallDone done) {
    auto call = NewCall<crm::data::v1::UpdateLeadRequest, crm::data::v1::UpdateLeadResponse>(token);
    crm::data::v1::Lead* lead = call->request.mutable_lead();
    lead->set_id(absl::StrCat(lead_id));
    lead->set_title(absl::StrCat("Title ", serial));
    lead->set_status(serial % 2 == 0 ? crm::data::v1::LEAD_STATUS_CONTACTED : crm::data::v1::LEAD_STATUS_QUALIFIED);
    call->request.mutable_update_mask()->add_paths("title");
    call->request.mutable_update_mask()->add_paths("status");
    CrmService::Stub& stub = channels_->crm(slot);
    Launch(
        std::move(call), Method::kUpdateLead,
        [&stub](auto* context, auto* request, auto* response, auto callback) {
          stub.async()->UpdateLead(context, request, response, std::move(callback));
        },
        IgnoreResponse(), std::move(done));
  }

  // Lists one page after `page_token` ("" for the first) and passes the
  // next page's token to `on_page`.
  void ListLeads(int slot, const AppToken& token, int page_size, const std::string& page_token,
                 std::function<void(const std::string&)> on_page, CallDone done) {
    auto call = NewCall<crm::data::v1::ListLeadsRequest, crm::data::v1::ListLeadsResponse>(token);
    call->request.set_page_size(page_size);
    call->request.set_page_token(page_token);
    CrmService::Stub& stub = channels_->crm(slot);
    Launch(
        std::move(call), Method::kListLeads,
        [&stub](auto* context, auto* request, auto* response, auto callback) {
          stub.async()->ListLeads(context, request, response, std::move(callback));
        },
        [on_page](const crm::data::v1::ListLeadsResponse& response) { on_page(response.next_page_token()); },
        std::move(done));
  }

 private:
  template <typename Request, typename Response>
  std::unique_ptr<PendingCall<Request, Response>> NewCall(const AppToken& token) {
    auto call = std::make_unique<PendingCall<Request, Response>>();
    SetTimeout(call->context, deadline_);
    call->context.AddMetadata("authorization", absl::StrCat("Bearer ", token.token));
    call->context.AddMetadata("x-benchmark-organization-id", absl::StrCat(token.organization_id));
    return call;
  }

  Channels* const channels_;
  const absl::Duration deadline_;
};

// The data and caller that every CRM scenario shares.
class CrmScenario : public Scenario {
 public:
  explicit CrmScenario(ScenarioConfig config) : config_(std::move(config)), caller_(config_) {}

 protected:
  const AppToken& RandomToken(std::mt19937_64& random) const {
    return config_.tokens[std::uniform_int_distribution<size_t>(0, config_.tokens.size() - 1)(random)];
  }

  // Returns a random lead of the token's organization, which Validate has
  // checked to have leads.
  uint64_t RandomLead(const AppToken& token, std::mt19937_64& random) const {
    const LeadRange& range = config_.leads.at(token.organization_id);
    return range.first_id + std::uniform_int_distribution<uint64_t>(0, range.count - 1)(random);
  }

  // Serial numbers for created leads and titles, unique within the process.
  int64_t NextSerial() { return serial_.fetch_add(1); }

  ScenarioConfig config_;
  CrmCaller caller_;

 private:
  std::atomic<int64_t> serial_{0};
};

// Checks that there are tokens and, when `needs_leads`, that every token's
// organization has leads.
absl::Status Validate(const ScenarioConfig& config, absl::string_view scenario, bool needs_leads) {
  if (config.tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(scenario, " needs --tokens_file with at least one token"));
  }
  if (!needs_leads) return absl::OkStatus();
  for (const AppToken& token : config.tokens) {
    auto range = config.leads.find(token.organization_id);
    if (range == config.leads.end() || range->second.count == 0) {
      return absl::InvalidArgumentError(absl::StrCat(scenario, " needs leads of organization ", token.organization_id,
                                                     " in --leads_file"));
    }
  }
  return absl::OkStatus();
}

class GetLeadScenario : public CrmScenario {
 public:
  using CrmScenario::CrmScenario;

  void StartCall(int slot, int64_t call_index, std::mt19937_64& random, CallDone done) override {
    const AppToken& token = RandomToken(random);
    caller_.GetLead(slot, token, RandomLead(token, random), std::move(done));
  }
};

class CreateLeadScenario : public CrmScenario {
 public:
  using CrmScenario::CrmScenario;

  void StartCall(int slot, int64_t call_index, std::mt19937_64& random, CallDone done) override {
    caller_.CreateLead(slot, RandomToken(random), NextSerial(), std::move(done));
  }
};

class UpdateLeadScenario : public CrmScenario {
 public:
  using CrmScenario::CrmScenario;

  void StartCall(int slot, int64_t call_index, std::mt19937_64& random, CallDone done) override {
    const AppToken& token = RandomToken(random);
    caller_.UpdateLead(slot, token, RandomLead(token, random), NextSerial(), std::move(done));
  }
};

// Each slot pages through its token's organization by next_page_token, as a
// sync client would, and starts again at the first page after the last.
class ListLeadsScenario : public CrmScenario {
 public:
  using CrmScenario::CrmScenario;

  absl::Status SetUp(int concurrency) override {
    page_tokens_.assign(concurrency, "");
    return absl::OkStatus();
  }

  void StartCall(int slot, int64_t call_index, std::mt19937_64& random, CallDone done) override {
    const AppToken& token = config_.tokens[static_cast<size_t>(slot) % config_.tokens.size()];
    std::string* page_token = &page_tokens_[slot];
    caller_.ListLeads(
        slot, token, config_.page_size, *page_token, [page_token](const std::string& next) { *page_token = next; },
        std::move(done));
  }

 private:
  // Indexed by slot. Only the slot's own call chain touches its entry.
  std::vector<std::string> page_tokens_;
};

// 80% GetLead, 7.5% CreateLead, 7.5% UpdateLead and 5% ListLeads (first
// page), each with a random token of the tokens file.
class MixedScenario : public CrmScenario {
 public:
  using CrmScenario::CrmScenario;

  void StartCall(int slot, int64_t call_index, std::mt19937_64& random, CallDone done) override {
    const AppToken& token = RandomToken(random);
    int percent_times_ten = std::uniform_int_distribution<int>(0, 999)(random);
    if (percent_times_ten < 800) {
      caller_.GetLead(slot, token, RandomLead(token, random), std::move(done));
    } else if (percent_times_ten < 875) {
      caller_.CreateLead(slot, token, NextSerial(), std::move(done));
    } else if (percent_times_ten < 950) {
      caller_.UpdateLead(slot, token, RandomLead(token, random), NextSerial(), std::move(done));
    } else {
      caller_.ListLeads(slot, token, config_.page_size, "", [](const std::string&) {}, std::move(done));
    }
  }
};

// Sends one ListLeads (page size 1) with each token of the tokens file, so
// the CRM server checks and caches every token once.
class WarmTokensScenario : public CrmScenario {
 public:
  using CrmScenario::CrmScenario;

  int64_t CallLimit() const override { return static_cast<int64_t>(config_.tokens.size()); }

  void StartCall(int slot, int64_t call_index, std::mt19937_64& random, CallDone done) override {
    caller_.ListLeads(slot, config_.tokens[call_index], 1, "", [](const std::string&) {}, std::move(done));
  }
};

// GetLead with a token that was never issued, as a credential guesser sends
// it. random_tokens draws every character after the prefix at random, so
// the checksum fails (all but about 1 in 62^6 of them) and the CRM server
// rejects the token itself. unknown_tokens appends the correct checksum, so
// the token passes the format check and meets the failed-lookup limiter and
// the auth server. The expected status, UNAUTHENTICATED, is reported as OK,
// and a guessed token that is accepted is reported as UNKNOWN.
class GuessedTokenScenario : public Scenario {
 public:
  GuessedTokenScenario(ScenarioConfig config, bool valid_checksum)
      : config_(std::move(config)), caller_(config_), valid_checksum_(valid_checksum) {}

  void StartCall(int slot, int64_t call_index, std::mt19937_64& random, CallDone done) override {
    AppToken guess;
    guess.token = valid_checksum_ ? crm::GenerateToken(crm::TokenKind::kAppToken,
                                                       [&random](size_t count) { return RandomBytes(random, count); })
                                  : RandomCharacters(random);
    caller_.GetLead(slot, guess, 1, [done = std::move(done)](Method method, grpc::StatusCode code) {
      if (code == grpc::StatusCode::UNAUTHENTICATED) {
        code = grpc::StatusCode::OK;
      } else if (code == grpc::StatusCode::OK) {
        code = grpc::StatusCode::UNKNOWN;
      }
      done(method, code);
    });
  }

 private:
  static std::string RandomBytes(std::mt19937_64& random, size_t count) {
    std::string bytes(count, '\0');
    for (char& byte : bytes) byte = static_cast<char>(std::uniform_int_distribution<int>(0, 255)(random));
    return bytes;
  }

  static std::string RandomCharacters(std::mt19937_64& random) {
    constexpr absl::string_view kBase62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    std::string token(crm::TokenPrefix(crm::TokenKind::kAppToken));
    std::uniform_int_distribution<size_t> digit(0, kBase62.size() - 1);
    while (token.size() < crm::kTokenChars) token.push_back(kBase62[digit(random)]);
    return token;
  }

  ScenarioConfig config_;
  CrmCaller caller_;
  const bool valid_checksum_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Scenario>> MakeCrmScenario(absl::string_view name, ScenarioConfig config) {
  if (name == "random_tokens" || name == "unknown_tokens") {
    return std::make_unique<GuessedTokenScenario>(std::move(config), name == "unknown_tokens");
  }
  bool needs_leads = name == "get_lead" || name == "update_lead" || name == "mixed";
  bool known = needs_leads || name == "create_lead" || name == "list_leads" || name == "warm_tokens";
  if (!known) return std::unique_ptr<Scenario>();
  if (absl::Status valid = Validate(config, name, needs_leads); !valid.ok()) return valid;

  if (name == "get_lead") return std::make_unique<GetLeadScenario>(std::move(config));
  if (name == "create_lead") return std::make_unique<CreateLeadScenario>(std::move(config));
  if (name == "update_lead") return std::make_unique<UpdateLeadScenario>(std::move(config));
  if (name == "list_leads") return std::make_unique<ListLeadsScenario>(std::move(config));
  if (name == "mixed") return std::make_unique<MixedScenario>(std::move(config));
  return std::make_unique<WarmTokensScenario>(std::move(config));
}

}  // namespace crm::bench
