// The full 6 x 4 scope matrix: with exactly one scope granted, the methods
// that need it succeed and every other CrmService method is
// PERMISSION_DENIED, across all 32 methods. GetTokenInfo, which needs no
// scope, succeeds with every one.
#include <map>

#include "crm/data/v1/crm_service.pb.h"
#include "crm/data/v1/resources.pb.h"
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

// A valid record of each module, in protobuf text format.
const std::map<crm::auth::v1::Module, std::string>& ValidRecords() {
  static const auto* records = new std::map<crm::auth::v1::Module, std::string>{
      {crm::auth::v1::MODULE_LEAD, "last_name: 'Lovelace' email: 'ada@example.com' company: 'Analytical'"},
      {crm::auth::v1::MODULE_CONTACT, "first_name: 'Grace' last_name: 'Hopper'"},
      {crm::auth::v1::MODULE_ACCOUNT, "name: 'Acme' domain: 'acme.example'"},
      {crm::auth::v1::MODULE_OPPORTUNITY,
       "name: 'Renewal' amount_micros: 2500000 currency_code: 'EUR' close_date: '2026-12-31'"},
      {crm::auth::v1::MODULE_ACTIVITY, "type: ACTIVITY_TYPE_CALL subject: 'Call back' due_time { seconds: 1800000000 }"},
      {crm::auth::v1::MODULE_MESSAGE,
       "channel: MESSAGE_CHANNEL_EMAIL direction: MESSAGE_DIRECTION_INBOUND sender: 'a@example.com' "
       "recipient: 'b@example.com' body: 'Hello\\nthere'"},
  };
  return *records;
}

class ScopeMatrixTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start();
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    admin_key_ = stack_->NewOrganization();
    full_token_ = stack_->NewApp(admin_key_, AllScopes(), "Seeder").access_token();
    service_ = crm::data::v1::CreateLeadRequest::descriptor()->file()->FindServiceByName("CrmService");
  }

  std::unique_ptr<Message> NewMessage(const google::protobuf::Descriptor* type) {
    return std::unique_ptr<Message>(MessageFactory::generated_factory()->GetPrototype(type)->New());
  }

  // Creates a record of `module` with the all-scopes token; returns its id.
  std::string Seed(const crm::data::MethodSpec& create) {
    std::unique_ptr<Message> request = BuildRequest(create, "");
    std::unique_ptr<Message> response = NewMessage(create.method->output_type());
    grpc::Status status = CallMethod(stack_->generic_crm(), create.method, full_token_, *request, response.get());
    EXPECT_TRUE(status.ok()) << status.error_message();
    const Message& record = response->GetReflection()->GetMessage(*response, response->GetDescriptor()->field(0));
    return record.GetReflection()->GetString(record, record.GetDescriptor()->FindFieldByName("id"));
  }

  // A valid request for `spec`, aimed at record `id` where it takes one.
  std::unique_ptr<Message> BuildRequest(const crm::data::MethodSpec& spec, const std::string& id) {
    std::unique_ptr<Message> request = NewMessage(spec.method->input_type());
    const google::protobuf::Reflection* reflection = request->GetReflection();
    const google::protobuf::Descriptor* type = request->GetDescriptor();
    switch (spec.standard_method) {
      case crm::data::StandardMethod::kCreate:
      case crm::data::StandardMethod::kUpdate: {
        Message* record = reflection->MutableMessage(request.get(), type->field(0));
        EXPECT_TRUE(google::protobuf::TextFormat::MergeFromString(ValidRecords().at(spec.schema->module), record));
        if (spec.standard_method == crm::data::StandardMethod::kUpdate) {
          record->GetReflection()->SetString(record, record->GetDescriptor()->FindFieldByName("id"), id);
        }
        break;
      }
      case crm::data::StandardMethod::kGet:
      case crm::data::StandardMethod::kDelete:
      case crm::data::StandardMethod::kConvertLead:
        reflection->SetString(request.get(), type->FindFieldByName("id"), id);
        break;
      case crm::data::StandardMethod::kList:
        reflection->SetInt32(request.get(), type->FindFieldByName("page_size"), 5);
        break;
      case crm::data::StandardMethod::kGetTokenInfo:
        break;  // The request has no fields.
    }
    return request;
  }

  std::unique_ptr<TestStack> stack_;
  std::string admin_key_;
  std::string full_token_;
  const google::protobuf::ServiceDescriptor* service_ = nullptr;
};

TEST_F(ScopeMatrixTest, EachScopeAllowsExactlyItsMethods) {
  std::vector<crm::data::MethodSpec> specs;
  std::map<crm::auth::v1::Module, const crm::data::MethodSpec*> create_of;
  for (int i = 0; i < service_->method_count(); ++i) specs.push_back(*crm::data::SpecForMethod(service_->method(i)));
  for (const crm::data::MethodSpec& spec : specs) {
    if (spec.standard_method == crm::data::StandardMethod::kCreate) create_of[spec.schema->module] = &spec;
  }
  int unscoped_calls = 0;

  crm::auth::v1::CreatePrivateAppResponse app = stack_->NewApp(admin_key_, {AllScopes()[0]}, "Matrix");
  int allowed_calls = 0;
  for (const crm::auth::v1::Scope& granted : AllScopes()) {
    // Re-scope the same app: its token stays the same.
    crm::auth::v1::UpdatePrivateAppRequest update;
    update.mutable_private_app()->set_id(app.private_app().id());
    *update.mutable_private_app()->add_scopes() = granted;
    update.mutable_update_mask()->add_paths("scopes");
    crm::auth::v1::UpdatePrivateAppResponse updated;
    ASSERT_TRUE(stack_->apps().UpdatePrivateApp(WithBearer(admin_key_).get(), update, &updated).ok());
    ScopeMask granted_bit = ScopeBit(granted.module(), granted.action());

    for (const crm::data::MethodSpec& spec : specs) {
      if (spec.required_scopes == 0) {
        // A method without a scope must still accept any valid token.
        std::unique_ptr<Message> request = NewMessage(spec.method->input_type());
        std::unique_ptr<Message> response = NewMessage(spec.method->output_type());
        grpc::Status status =
            CallMethod(stack_->generic_crm(), spec.method, app.access_token(), *request, response.get());
        EXPECT_TRUE(status.ok()) << spec.method->name() << ": " << status.error_code() << " "
                                 << status.error_message();
        ++unscoped_calls;
        continue;
      }
      std::string id = Seed(*create_of.at(spec.schema->module));
      std::unique_ptr<Message> request = BuildRequest(spec, id);
      std::unique_ptr<Message> response = NewMessage(spec.method->output_type());
      grpc::Status status =
          CallMethod(stack_->generic_crm(), spec.method, app.access_token(), *request, response.get());
      std::string label = absl::StrCat(spec.method->name(), " with only ", ScopeName(granted.module(), granted.action()));
      if (spec.required_scopes == granted_bit) {
        EXPECT_TRUE(status.ok()) << label << ": " << status.error_code() << " " << status.error_message();
        ++allowed_calls;
      } else {
        EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << label;
      }
    }
  }
  // Read scopes allow Get and List; the others one method each. No single
  // scope allows ConvertLead, which needs four.
  EXPECT_EQ(allowed_calls, 30);
  // GetTokenInfo once per scope.
  EXPECT_EQ(unscoped_calls, 24);
}

TEST_F(ScopeMatrixTest, DeniedCreateStoresNothing) {
  crm::auth::v1::CreatePrivateAppResponse reader = stack_->NewApp(
      admin_key_, {MakeScope(crm::auth::v1::MODULE_LEAD, crm::auth::v1::ACTION_READ)}, "Reader");
  crm::data::v1::CreateLeadRequest create;
  create.mutable_lead()->set_last_name("Denied");
  crm::data::v1::CreateLeadResponse created;
  grpc::Status status = stack_->crm().CreateLead(WithBearer(reader.access_token()).get(), create, &created);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);

  crm::data::v1::ListLeadsRequest list;
  crm::data::v1::ListLeadsResponse leads;
  ASSERT_TRUE(stack_->crm().ListLeads(WithBearer(full_token_).get(), list, &leads).ok());
  EXPECT_EQ(leads.leads_size(), 0);
}

}  // namespace
}  // namespace crm::testing
