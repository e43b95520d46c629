// Tenant isolation (OWASP API1 broken object level authorization and API5
// broken function level authorization). A caller of organization B with
// every scope aims each PrivateAppService and CrmService method at
// organization A's ids and gets NOT_FOUND. For a Create, the record lands
// in B only. A's data reads back unchanged. An app token cannot call
// PrivateAppService and an admin key cannot call CrmService.
//
// The methods come from the service descriptors and each needs a row in the
// tables below, so a new method without a case fails the test.
#include <grpcpp/generic/generic_stub.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "crm/auth/v1/private_app.pb.h"
#include "crm/data/v1/crm_service.pb.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "services/crm/crm_service.h"
#include "tests/integration/generic_call.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {
namespace {

using google::protobuf::Message;
using google::protobuf::MessageFactory;
using google::protobuf::MethodDescriptor;
using google::protobuf::ServiceDescriptor;
using crm::data::StandardMethod;

constexpr char kRequestId[] = "7f9c24e5-3b1a-4c8e-9d2f-0a6b5c4d3e21";

// Returns a record of each module in text format. {account}, {contact} and
// {lead} stand for ids of that module, and B's Create requests fill them
// with A's ids.
const std::map<crm::auth::v1::Module, std::string>& RecordTemplates() {
  static const auto* records = new std::map<crm::auth::v1::Module, std::string>{
      {crm::auth::v1::MODULE_LEAD, "last_name: 'Lovelace' email: 'ada@example.com'"},
      {crm::auth::v1::MODULE_ACCOUNT, "name: 'Acme' domain: 'acme.example'"},
      {crm::auth::v1::MODULE_CONTACT, "first_name: 'Grace' last_name: 'Hopper' account_id: '{account}'"},
      {crm::auth::v1::MODULE_OPPORTUNITY,
       "name: 'Renewal' amount_micros: 2500000 currency_code: 'EUR' account_id: '{account}'"},
      {crm::auth::v1::MODULE_ACTIVITY,
       "type: ACTIVITY_TYPE_CALL subject: 'Call back' related_module: MODULE_CONTACT related_id: '{contact}'"},
      {crm::auth::v1::MODULE_MESSAGE,
       "channel: MESSAGE_CHANNEL_EMAIL direction: MESSAGE_DIRECTION_INBOUND sender: 'a@example.com' "
       "recipient: 'b@example.com' body: 'Hello' contact_id: '{contact}' lead_id: '{lead}'"},
  };
  return *records;
}

// Expected response to organization B's call aimed at A's ids.
enum class Expect {
  kNotFound,
  // Create without reference fields: OK, a new record in B that has none of
  // A's ids and is not A's earlier create with the same request_id.
  kCreatedInCallerOnly,
  // Create with a reference to A's record: INVALID_ARGUMENT, the same
  // response as for an id that exists nowhere.
  kForeignReferenceRejected,
  // List: OK with none of A's records, and A's page token is rejected.
  kListsCallerOnly,
  // A method of the caller's own organization, which only the admin key
  // names (policy, audit events): whatever it returns, A's data stays.
  kOwnOrganizationOnly,
};

// Returns the expected response of each CrmService method, one row per method.
const std::map<std::string, Expect>& CrmCases() {
  static const auto* cases = new std::map<std::string, Expect>{
      {"CreateLead", Expect::kCreatedInCallerOnly},
      {"GetLead", Expect::kNotFound},
      {"ListLeads", Expect::kListsCallerOnly},
      {"UpdateLead", Expect::kNotFound},
      {"DeleteLead", Expect::kNotFound},
      {"ConvertLead", Expect::kNotFound},
      {"CreateContact", Expect::kForeignReferenceRejected},
      {"GetContact", Expect::kNotFound},
      {"ListContacts", Expect::kListsCallerOnly},
      {"UpdateContact", Expect::kNotFound},
      {"DeleteContact", Expect::kNotFound},
      {"CreateAccount", Expect::kCreatedInCallerOnly},
      {"GetAccount", Expect::kNotFound},
      {"ListAccounts", Expect::kListsCallerOnly},
      {"UpdateAccount", Expect::kNotFound},
      {"DeleteAccount", Expect::kNotFound},
      {"CreateOpportunity", Expect::kForeignReferenceRejected},
      {"GetOpportunity", Expect::kNotFound},
      {"ListOpportunities", Expect::kListsCallerOnly},
      {"UpdateOpportunity", Expect::kNotFound},
      {"DeleteOpportunity", Expect::kNotFound},
      {"CreateActivity", Expect::kForeignReferenceRejected},
      {"GetActivity", Expect::kNotFound},
      {"ListActivities", Expect::kListsCallerOnly},
      {"UpdateActivity", Expect::kNotFound},
      {"DeleteActivity", Expect::kNotFound},
      {"CreateMessage", Expect::kForeignReferenceRejected},
      {"GetMessage", Expect::kNotFound},
      {"ListMessages", Expect::kListsCallerOnly},
      {"UpdateMessage", Expect::kNotFound},
      {"DeleteMessage", Expect::kNotFound},
      {"GetTokenInfo", Expect::kOwnOrganizationOnly},
  };
  return *cases;
}

// Returns the expected response of each PrivateAppService method, one row
// per method.
const std::map<std::string, Expect>& PrivateAppCases() {
  static const auto* cases = new std::map<std::string, Expect>{
      {"CreatePrivateApp", Expect::kCreatedInCallerOnly},
      {"GetPrivateApp", Expect::kNotFound},
      {"ListPrivateApps", Expect::kListsCallerOnly},
      {"UpdatePrivateApp", Expect::kNotFound},
      {"DeletePrivateApp", Expect::kNotFound},
      {"GetAccessToken", Expect::kNotFound},
      {"RotateAccessToken", Expect::kNotFound},
      {"EndAccessTokenOverlap", Expect::kNotFound},
      {"CancelAccessTokenRotation", Expect::kNotFound},
      {"ListAuditEvents", Expect::kOwnOrganizationOnly},
      {"GetOrganizationPolicy", Expect::kOwnOrganizationOnly},
      {"UpdateOrganizationPolicy", Expect::kOwnOrganizationOnly},
      {"ListApiCalls", Expect::kNotFound},
      {"GetApiUsage", Expect::kOwnOrganizationOnly},
  };
  return *cases;
}

std::unique_ptr<Message> NewMessage(const google::protobuf::Descriptor* type) {
  return std::unique_ptr<Message>(MessageFactory::generated_factory()->GetPrototype(type)->New());
}

const Message& FirstField(const Message& message) {
  return message.GetReflection()->GetMessage(message, message.GetDescriptor()->field(0));
}

std::string StringField(const Message& message, const std::string& name) {
  return message.GetReflection()->GetString(message, message.GetDescriptor()->FindFieldByName(name));
}

void SetStringField(Message* message, const std::string& name, const std::string& value) {
  message->GetReflection()->SetString(message, message->GetDescriptor()->FindFieldByName(name), value);
}

void CheckEveryMethodHasACase(const ServiceDescriptor* service, const std::map<std::string, Expect>& cases) {
  std::set<std::string> methods;
  for (int i = 0; i < service->method_count(); ++i) {
    methods.insert(service->method(i)->name());
    EXPECT_TRUE(cases.count(service->method(i)->name()))
        << service->method(i)->full_name() << " has no tenant isolation case; add one";
  }
  for (const auto& [name, expect] : cases) {
    EXPECT_TRUE(methods.count(name)) << "the case for " << name << " names no method of " << service->full_name();
  }
}

class TenantIsolationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start();
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    admin_a_ = stack_->NewOrganization("Organization A");
    admin_b_ = stack_->NewOrganization("Organization B");
    app_a_ = stack_->NewApp(admin_a_, AllScopes(), "A's app");
    token_a_ = app_a_.access_token();
    token_b_ = stack_->NewApp(admin_b_, AllScopes(), "B's app").access_token();
    crm_service_ = crm::data::v1::CreateLeadRequest::descriptor()->file()->FindServiceByName("CrmService");
    app_service_ = crm::auth::v1::CreatePrivateAppRequest::descriptor()->file()->FindServiceByName(
        "PrivateAppService");
    auth_stub_ = std::make_unique<grpc::GenericStub>(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", stack_->auth_port()), grpc::InsecureChannelCredentials()));
    for (int i = 0; i < crm_service_->method_count(); ++i) {
      absl::StatusOr<crm::data::MethodSpec> spec = crm::data::SpecForMethod(crm_service_->method(i));
      ASSERT_TRUE(spec.ok()) << spec.status();
      specs_.push_back(*std::move(spec));
    }
  }

  const crm::data::MethodSpec& SpecOf(StandardMethod method, crm::auth::v1::Module module) {
    for (const crm::data::MethodSpec& spec : specs_) {
      if (spec.standard_method == method && spec.schema->module == module) return spec;
    }
    ADD_FAILURE() << "no method for module " << module;
    return specs_.front();
  }

  // Fills {account}, {contact} and {lead} with the ids in `ids`.
  std::string FillTemplate(crm::auth::v1::Module module, const std::map<crm::auth::v1::Module, std::string>& ids) {
    return absl::StrReplaceAll(RecordTemplates().at(module),
                               {{"{account}", ids.at(crm::auth::v1::MODULE_ACCOUNT)},
                                {"{contact}", ids.at(crm::auth::v1::MODULE_CONTACT)},
                                {"{lead}", ids.at(crm::auth::v1::MODULE_LEAD)}});
  }

  // Creates a record with `token`, with references from `ids`, and returns
  // the response.
  std::unique_ptr<Message> CreateRecord(const std::string& token, crm::auth::v1::Module module,
                                        const std::map<crm::auth::v1::Module, std::string>& ids,
                                        const std::string& request_id) {
    const crm::data::MethodSpec& create = SpecOf(StandardMethod::kCreate, module);
    std::unique_ptr<Message> request = NewMessage(create.method->input_type());
    Message* record = request->GetReflection()->MutableMessage(request.get(), request->GetDescriptor()->field(0));
    EXPECT_TRUE(google::protobuf::TextFormat::MergeFromString(FillTemplate(module, ids), record));
    SetStringField(request.get(), "request_id", request_id);
    std::unique_ptr<Message> response = NewMessage(create.method->output_type());
    grpc::Status status = CallMethod(stack_->generic_crm(), create.method, token, *request, response.get());
    EXPECT_TRUE(status.ok()) << create.method->name() << ": " << status.error_message();
    return response;
  }

  // Creates one record per module in organization A, with references to A's
  // own records and the same request_id for every create.
  void SeedOrganizationA() {
    std::map<crm::auth::v1::Module, std::string> ids = {{crm::auth::v1::MODULE_ACCOUNT, ""},
                                                        {crm::auth::v1::MODULE_CONTACT, ""},
                                                        {crm::auth::v1::MODULE_LEAD, ""}};
    for (crm::auth::v1::Module module :
         {crm::auth::v1::MODULE_ACCOUNT, crm::auth::v1::MODULE_LEAD, crm::auth::v1::MODULE_CONTACT,
          crm::auth::v1::MODULE_OPPORTUNITY, crm::auth::v1::MODULE_ACTIVITY, crm::auth::v1::MODULE_MESSAGE}) {
      std::unique_ptr<Message> created = CreateRecord(token_a_, module, ids, kRequestId);
      const Message& record = FirstField(*created);
      a_ids_[module] = StringField(record, "id");
      a_etags_[module] = StringField(record, "etag");
      if (ids.count(module)) ids[module] = a_ids_[module];
    }
  }

  // Returns every record of organization A, serialized, per List method. The
  // records include etags and update times, so any change shows.
  std::map<std::string, std::vector<std::string>> SnapshotOrganizationA() {
    std::map<std::string, std::vector<std::string>> snapshot;
    for (const crm::data::MethodSpec& spec : specs_) {
      if (spec.standard_method != StandardMethod::kList) continue;
      std::unique_ptr<Message> request = NewMessage(spec.method->input_type());
      request->GetReflection()->SetInt32(request.get(), request->GetDescriptor()->FindFieldByName("page_size"),
                                         1000);
      std::unique_ptr<Message> response = NewMessage(spec.method->output_type());
      grpc::Status status = CallMethod(stack_->generic_crm(), spec.method, token_a_, *request, response.get());
      EXPECT_TRUE(status.ok()) << spec.method->name() << ": " << status.error_message();
      const google::protobuf::FieldDescriptor* records = response->GetDescriptor()->field(0);
      for (int i = 0; i < response->GetReflection()->FieldSize(*response, records); ++i) {
        snapshot[spec.method->name()].push_back(
            response->GetReflection()->GetRepeatedMessage(*response, records, i).SerializeAsString());
      }
    }
    return snapshot;
  }

  // Returns a page token of A's listing, for List calls from B.
  std::string PageTokenOfA(const crm::data::MethodSpec& list) {
    std::unique_ptr<Message> request = NewMessage(list.method->input_type());
    request->GetReflection()->SetInt32(request.get(), request->GetDescriptor()->FindFieldByName("page_size"), 1);
    // Two records, so that a first page of one has a next page.
    CreateRecord(token_a_, list.schema->module, a_ids_, "");
    std::unique_ptr<Message> response = NewMessage(list.method->output_type());
    EXPECT_TRUE(CallMethod(stack_->generic_crm(), list.method, token_a_, *request, response.get()).ok());
    std::string page_token = StringField(*response, "next_page_token");
    EXPECT_FALSE(page_token.empty()) << list.method->name();
    return page_token;
  }

  // Calls `spec` with B's token aimed at A's ids and checks the response.
  void CallFromBAtA(const crm::data::MethodSpec& spec, Expect expect, const std::string& page_token_of_a) {
    std::string label = spec.method->name();
    // GetTokenInfo reads no module's records, so it has no schema.
    crm::auth::v1::Module module = spec.schema != nullptr ? spec.schema->module : crm::auth::v1::MODULE_UNSPECIFIED;
    std::unique_ptr<Message> request = NewMessage(spec.method->input_type());
    const google::protobuf::Reflection* reflection = request->GetReflection();
    const google::protobuf::Descriptor* type = request->GetDescriptor();
    switch (spec.standard_method) {
      case StandardMethod::kCreate: {
        Message* record = reflection->MutableMessage(request.get(), type->field(0));
        ASSERT_TRUE(google::protobuf::TextFormat::MergeFromString(FillTemplate(module, a_ids_), record));
        // The id is output only, so the server ignores it, but the new record
        // must not take it.
        SetStringField(record, "id", a_ids_.at(module));
        SetStringField(request.get(), "request_id", kRequestId);
        break;
      }
      case StandardMethod::kUpdate: {
        Message* record = reflection->MutableMessage(request.get(), type->field(0));
        ASSERT_TRUE(google::protobuf::TextFormat::MergeFromString(FillTemplate(module, a_ids_), record));
        SetStringField(record, "id", a_ids_.at(module));
        SetStringField(record, "etag", a_etags_.at(module));
        break;
      }
      case StandardMethod::kGet:
        SetStringField(request.get(), "id", a_ids_.at(module));
        break;
      case StandardMethod::kDelete:
        SetStringField(request.get(), "id", a_ids_.at(module));
        SetStringField(request.get(), "etag", a_etags_.at(module));
        break;
      case StandardMethod::kConvertLead: {
        auto& convert = static_cast<crm::data::v1::ConvertLeadRequest&>(*request);
        convert.set_id(a_ids_.at(module));
        convert.set_etag(a_etags_.at(module));
        convert.mutable_account()->set_name("Taken over");
        convert.mutable_contact()->set_last_name("Taken over");
        break;
      }
      case StandardMethod::kList:
        reflection->SetInt32(request.get(), type->FindFieldByName("page_size"), 1000);
        break;
      case StandardMethod::kGetTokenInfo:
        break;  // The request has no fields; the token names the app.
    }

    std::unique_ptr<Message> response = NewMessage(spec.method->output_type());
    grpc::Status status = CallMethod(stack_->generic_crm(), spec.method, token_b_, *request, response.get());
    switch (expect) {
      case Expect::kNotFound:
        EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << label << ": " << status.error_message();
        break;
      case Expect::kForeignReferenceRejected:
        EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
            << label << ": " << status.error_message();
        break;
      case Expect::kCreatedInCallerOnly: {
        ASSERT_TRUE(status.ok()) << label << ": " << status.error_message();
        std::string id = StringField(FirstField(*response), "id");
        EXPECT_NE(id, a_ids_.at(module)) << label << " returned A's record for A's request_id";
        break;
      }
      case Expect::kListsCallerOnly: {
        ASSERT_TRUE(status.ok()) << label << ": " << status.error_message();
        const google::protobuf::FieldDescriptor* records = response->GetDescriptor()->field(0);
        for (int i = 0; i < response->GetReflection()->FieldSize(*response, records); ++i) {
          const Message& record = response->GetReflection()->GetRepeatedMessage(*response, records, i);
          EXPECT_NE(StringField(record, "id"), a_ids_.at(module)) << label << " listed A's record";
        }
        // A's page token, replayed by B.
        SetStringField(request.get(), "page_token", page_token_of_a);
        std::unique_ptr<Message> replayed = NewMessage(spec.method->output_type());
        grpc::Status replay = CallMethod(stack_->generic_crm(), spec.method, token_b_, *request, replayed.get());
        EXPECT_EQ(replay.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
            << label << " with A's page token: " << replay.error_message();
        break;
      }
      case Expect::kOwnOrganizationOnly:
        ASSERT_TRUE(status.ok()) << label << ": " << status.error_message();
        EXPECT_NE(StringField(*response, "organization_id"), app_a_.private_app().organization_id())
            << label << " returned A's organization to B's token";
        break;
    }
  }

  grpc::Status CallPrivateApp(const MethodDescriptor* method, const std::string& credential, const Message& request,
                              Message* response) {
    return CallMethod(*auth_stub_, method, credential, request, response);
  }

  std::unique_ptr<TestStack> stack_;
  std::string admin_a_;
  std::string admin_b_;
  crm::auth::v1::CreatePrivateAppResponse app_a_;
  std::string token_a_;
  std::string token_b_;
  const ServiceDescriptor* crm_service_ = nullptr;
  const ServiceDescriptor* app_service_ = nullptr;
  std::unique_ptr<grpc::GenericStub> auth_stub_;
  std::vector<crm::data::MethodSpec> specs_;
  std::map<crm::auth::v1::Module, std::string> a_ids_;
  std::map<crm::auth::v1::Module, std::string> a_etags_;
};

TEST_F(TenantIsolationTest, EveryMethodHasACase) {
  CheckEveryMethodHasACase(crm_service_, CrmCases());
  CheckEveryMethodHasACase(app_service_, PrivateAppCases());
}

TEST_F(TenantIsolationTest, CrmCallsAtOtherOrganizationChangeNothing) {
  SeedOrganizationA();
  std::map<std::string, std::string> page_tokens;
  for (const crm::data::MethodSpec& spec : specs_) {
    if (spec.standard_method == StandardMethod::kList) page_tokens[spec.method->name()] = PageTokenOfA(spec);
  }
  std::map<std::string, std::vector<std::string>> before = SnapshotOrganizationA();
  ASSERT_EQ(before.size(), 6u);

  for (const crm::data::MethodSpec& spec : specs_) {
    auto found = CrmCases().find(spec.method->name());
    if (found == CrmCases().end()) continue;  // EveryMethodHasACase reports it.
    CallFromBAtA(spec, found->second, page_tokens[spec.method->name()]);
  }

  std::map<std::string, std::vector<std::string>> after = SnapshotOrganizationA();
  for (const auto& [method, records] : before) {
    EXPECT_EQ(after[method], records) << "organization A's records changed, as read by " << method;
  }
}

TEST_F(TenantIsolationTest, PrivateAppCallsAtOtherOrganizationChangeNothing) {
  std::string app_id = app_a_.private_app().id();
  crm::auth::v1::GetPrivateAppRequest get;
  get.set_id(app_id);
  crm::auth::v1::GetPrivateAppResponse before;
  ASSERT_TRUE(stack_->apps().GetPrivateApp(WithBearer(admin_a_).get(), get, &before).ok());
  // A second app in A, so A's list has a next page to replay.
  stack_->NewApp(admin_a_, {MakeScope(crm::auth::v1::MODULE_LEAD, crm::auth::v1::ACTION_READ)}, "A's second app");
  crm::auth::v1::ListPrivateAppsRequest list_a;
  list_a.set_page_size(1);
  crm::auth::v1::ListPrivateAppsResponse listed_a;
  ASSERT_TRUE(stack_->apps().ListPrivateApps(WithBearer(admin_a_).get(), list_a, &listed_a).ok());
  ASSERT_FALSE(listed_a.next_page_token().empty());
  const MethodDescriptor* get_policy = app_service_->FindMethodByName("GetOrganizationPolicy");
  ASSERT_NE(get_policy, nullptr);
  std::unique_ptr<Message> policy_request = NewMessage(get_policy->input_type());
  std::unique_ptr<Message> policy_before = NewMessage(get_policy->output_type());
  ASSERT_TRUE(CallPrivateApp(get_policy, admin_a_, *policy_request, policy_before.get()).ok());

  for (int i = 0; i < app_service_->method_count(); ++i) {
    const MethodDescriptor* method = app_service_->method(i);
    auto found = PrivateAppCases().find(method->name());
    if (found == PrivateAppCases().end()) continue;  // EveryMethodHasACase reports it.
    std::unique_ptr<Message> request = NewMessage(method->input_type());
    const google::protobuf::FieldDescriptor* id = request->GetDescriptor()->FindFieldByName("id");
    if (id != nullptr) SetStringField(request.get(), "id", app_id);
    // Methods that take the app as a filter (ListApiCalls, ListAuditEvents).
    if (request->GetDescriptor()->FindFieldByName("app_id") != nullptr) {
      SetStringField(request.get(), "app_id", app_id);
    }
    const google::protobuf::FieldDescriptor* app = request->GetDescriptor()->FindFieldByName("private_app");
    if (app != nullptr) {
      auto* private_app = static_cast<crm::auth::v1::PrivateApp*>(request->GetReflection()->MutableMessage(
          request.get(), app));
      private_app->set_id(app_id);
      private_app->set_organization_id(before.private_app().organization_id());
      private_app->set_display_name("Taken over");
      *private_app->add_scopes() = MakeScope(crm::auth::v1::MODULE_LEAD, crm::auth::v1::ACTION_DELETE);
      // An allowlist that excludes loopback would lock A's token out of the
      // CRM server, which the check at the end would notice.
      private_app->add_ip_allowlist("192.0.2.0/24");
      if (method->name() == "UpdatePrivateApp") {
        auto* update = static_cast<crm::auth::v1::UpdatePrivateAppRequest*>(request.get());
        update->mutable_update_mask()->add_paths("display_name");
        update->mutable_update_mask()->add_paths("scopes");
        update->mutable_update_mask()->add_paths("ip_allowlist");
      }
    }
    std::unique_ptr<Message> response = NewMessage(method->output_type());
    grpc::Status status = CallPrivateApp(method, admin_b_, *request, response.get());
    std::string label = method->name();
    switch (found->second) {
      case Expect::kNotFound:
        EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << label << ": " << status.error_message();
        break;
      case Expect::kCreatedInCallerOnly: {
        ASSERT_TRUE(status.ok()) << label << ": " << status.error_message();
        const auto& created = static_cast<const crm::auth::v1::CreatePrivateAppResponse&>(*response);
        EXPECT_NE(created.private_app().id(), app_id) << label;
        EXPECT_NE(created.private_app().organization_id(), before.private_app().organization_id()) << label;
        break;
      }
      case Expect::kListsCallerOnly: {
        ASSERT_TRUE(status.ok()) << label << ": " << status.error_message();
        const auto& listed = static_cast<const crm::auth::v1::ListPrivateAppsResponse&>(*response);
        for (const crm::auth::v1::PrivateApp& listed_app : listed.private_apps()) {
          EXPECT_NE(listed_app.organization_id(), before.private_app().organization_id()) << label;
        }
        crm::auth::v1::ListPrivateAppsRequest replay;
        replay.set_page_token(listed_a.next_page_token());
        crm::auth::v1::ListPrivateAppsResponse replayed;
        grpc::Status replay_status = stack_->apps().ListPrivateApps(WithBearer(admin_b_).get(), replay, &replayed);
        EXPECT_EQ(replay_status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
            << label << " with A's page token: " << replay_status.error_message();
        break;
      }
      case Expect::kOwnOrganizationOnly:
        // Checked below: A's policy and app read back unchanged. B's usage
        // lists only B's apps.
        if (method->name() == "GetApiUsage") {
          ASSERT_TRUE(status.ok()) << label << ": " << status.error_message();
          const auto& usage = static_cast<const crm::auth::v1::GetApiUsageResponse&>(*response);
          for (const crm::auth::v1::AppApiUsage& app_usage : usage.apps()) {
            EXPECT_NE(app_usage.app_id(), app_id) << label << " lists A's app";
          }
        }
        break;
      case Expect::kForeignReferenceRejected:
        ADD_FAILURE() << label << ": PrivateAppService has no reference fields";
        break;
    }
  }
  std::unique_ptr<Message> policy_after = NewMessage(get_policy->output_type());
  ASSERT_TRUE(CallPrivateApp(get_policy, admin_a_, *policy_request, policy_after.get()).ok());
  EXPECT_EQ(policy_after->SerializeAsString(), policy_before->SerializeAsString()) << "A's policy changed";

  // A's app, scopes and token are as before, and the token still works.
  crm::auth::v1::GetPrivateAppResponse after;
  ASSERT_TRUE(stack_->apps().GetPrivateApp(WithBearer(admin_a_).get(), get, &after).ok());
  EXPECT_EQ(after.SerializeAsString(), before.SerializeAsString());
  crm::auth::v1::GetAccessTokenRequest reveal;
  reveal.set_id(app_id);
  crm::auth::v1::GetAccessTokenResponse revealed;
  ASSERT_TRUE(stack_->apps().GetAccessToken(WithBearer(admin_a_).get(), reveal, &revealed).ok());
  EXPECT_EQ(revealed.access_token(), token_a_);
  crm::data::v1::ListLeadsResponse leads;
  EXPECT_TRUE(stack_->crm().ListLeads(WithBearer(token_a_).get(), {}, &leads).ok());
}

TEST_F(TenantIsolationTest, AppTokenCannotCallPrivateAppService) {
  for (int i = 0; i < app_service_->method_count(); ++i) {
    const MethodDescriptor* method = app_service_->method(i);
    std::unique_ptr<Message> request = NewMessage(method->input_type());
    const google::protobuf::FieldDescriptor* id = request->GetDescriptor()->FindFieldByName("id");
    if (id != nullptr) SetStringField(request.get(), "id", app_a_.private_app().id());
    std::unique_ptr<Message> response = NewMessage(method->output_type());
    grpc::Status status = CallPrivateApp(method, token_a_, *request, response.get());
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << method->name() << ": " << status.error_message();
  }
}

TEST_F(TenantIsolationTest, AdminKeyCannotCallCrmService) {
  SeedOrganizationA();
  std::map<std::string, std::vector<std::string>> before = SnapshotOrganizationA();
  for (const crm::data::MethodSpec& spec : specs_) {
    std::unique_ptr<Message> request = NewMessage(spec.method->input_type());
    const google::protobuf::FieldDescriptor* id = request->GetDescriptor()->FindFieldByName("id");
    if (id != nullptr) SetStringField(request.get(), "id", a_ids_.at(spec.schema->module));
    std::unique_ptr<Message> response = NewMessage(spec.method->output_type());
    grpc::Status status = CallMethod(stack_->generic_crm(), spec.method, admin_a_, *request, response.get());
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << spec.method->name() << ": " << status.error_message();
  }
  EXPECT_EQ(SnapshotOrganizationA(), before);
}

}  // namespace
}  // namespace crm::testing
