// Checks that CrmService's contract is complete: every method declares the
// scopes it needs and maps to a standard method of one module or to the
// custom method ConvertLead, except GetTokenInfo, which needs no scope.
#include <set>

#include "crm/data/v1/annotations.pb.h"
#include "crm/data/v1/crm_service.pb.h"
#include "google/protobuf/descriptor.pb.h"
#include "gtest/gtest.h"
#include "services/crm/crm_service.h"

namespace crm::data {
namespace {

const google::protobuf::ServiceDescriptor* CrmServiceDescriptor() {
  return crm::data::v1::CreateLeadRequest::descriptor()->file()->FindServiceByName("CrmService");
}

TEST(CrmContract, EveryMethodDeclaresScope) {
  const google::protobuf::ServiceDescriptor* service = CrmServiceDescriptor();
  ASSERT_NE(service, nullptr);
  int unscoped = 0;
  for (int i = 0; i < service->method_count(); ++i) {
    absl::StatusOr<MethodSpec> spec = SpecForMethod(service->method(i));
    ASSERT_TRUE(spec.ok()) << spec.status();
    if (spec->standard_method == StandardMethod::kGetTokenInfo) {
      ++unscoped;
      EXPECT_EQ(spec->required_scopes, 0u);
      EXPECT_EQ(spec->schema, nullptr);
      continue;
    }
    EXPECT_NE(spec->required_scopes, 0u) << service->method(i)->name();
    EXPECT_NE(spec->schema, nullptr) << service->method(i)->name();
  }
  EXPECT_EQ(unscoped, 1);
}

TEST(CrmContract, GetTokenInfoNeedsNoScope) {
  absl::StatusOr<MethodSpec> spec = SpecForMethod(CrmServiceDescriptor()->FindMethodByName("GetTokenInfo"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(StandardMethod::kGetTokenInfo, spec->standard_method);
  EXPECT_EQ(0u, spec->required_scopes);
}

TEST(CrmContract, FiveMethodsPerModulePlusConvertLead) {
  const google::protobuf::ServiceDescriptor* service = CrmServiceDescriptor();
  std::set<std::pair<int, int>> seen;
  for (int i = 0; i < service->method_count(); ++i) {
    absl::StatusOr<MethodSpec> spec = SpecForMethod(service->method(i));
    ASSERT_TRUE(spec.ok()) << spec.status();
    if (spec->schema == nullptr) continue;  // GetTokenInfo, checked above.
    EXPECT_TRUE(seen.emplace(spec->schema->module, static_cast<int>(spec->standard_method)).second)
        << service->method(i)->name() << " repeats a module and standard method";
  }
  EXPECT_EQ(seen.size(), 31u);
  EXPECT_TRUE(seen.contains({crm::auth::v1::MODULE_LEAD, static_cast<int>(StandardMethod::kConvertLead)}));
}

TEST(CrmContract, ConvertLeadNeedsFourScopes) {
  absl::StatusOr<MethodSpec> spec = SpecForMethod(CrmServiceDescriptor()->FindMethodByName("ConvertLead"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  ScopeMask expected = ScopeBit(crm::auth::v1::MODULE_LEAD, crm::auth::v1::ACTION_UPDATE) |
                       ScopeBit(crm::auth::v1::MODULE_ACCOUNT, crm::auth::v1::ACTION_CREATE) |
                       ScopeBit(crm::auth::v1::MODULE_CONTACT, crm::auth::v1::ACTION_CREATE) |
                       ScopeBit(crm::auth::v1::MODULE_OPPORTUNITY, crm::auth::v1::ACTION_CREATE);
  EXPECT_EQ(expected, spec->required_scopes);
  EXPECT_EQ(StandardMethod::kConvertLead, spec->standard_method);
}

// A method without required_scopes must be refused, so the check above can
// fail. The descriptor is built at run time from a small proto.
TEST(CrmContract, MethodWithoutScopeIsRejected) {
  google::protobuf::DescriptorPool pool(google::protobuf::DescriptorPool::generated_pool());
  google::protobuf::FileDescriptorProto file;
  file.set_name("unscoped_test.proto");
  file.set_package("crm.test");
  file.set_syntax("proto3");
  file.add_dependency("crm/data/v1/crm_service.proto");
  google::protobuf::MethodDescriptorProto* method = file.add_service()->add_method();
  file.mutable_service(0)->set_name("UnscopedService");
  method->set_name("GetLead");
  method->set_input_type(".crm.data.v1.GetLeadRequest");
  method->set_output_type(".crm.data.v1.GetLeadResponse");
  const google::protobuf::FileDescriptor* built = pool.BuildFile(file);
  ASSERT_NE(built, nullptr);

  absl::StatusOr<MethodSpec> spec = SpecForMethod(built->service(0)->method(0));
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
}

// Only GetTokenInfo may go without a scope: another method that sets
// no_scope_required, or one that sets it beside required_scopes, is rejected.
TEST(CrmContract, NoScopeRequiredOnlyForGetTokenInfo) {
  google::protobuf::DescriptorPool pool(google::protobuf::DescriptorPool::generated_pool());
  google::protobuf::FileDescriptorProto file;
  file.set_name("no_scope_test.proto");
  file.set_package("crm.test");
  file.set_syntax("proto3");
  file.add_dependency("crm/data/v1/crm_service.proto");
  google::protobuf::ServiceDescriptorProto* service = file.add_service();
  service->set_name("NoScopeService");
  google::protobuf::MethodDescriptorProto* get_lead = service->add_method();
  get_lead->set_name("GetLead");
  get_lead->set_input_type(".crm.data.v1.GetLeadRequest");
  get_lead->set_output_type(".crm.data.v1.GetLeadResponse");
  get_lead->mutable_options()->SetExtension(crm::data::v1::no_scope_required, true);
  google::protobuf::MethodDescriptorProto* both = service->add_method();
  both->set_name("GetTokenInfo");
  both->set_input_type(".crm.data.v1.GetTokenInfoRequest");
  both->set_output_type(".crm.data.v1.GetTokenInfoResponse");
  both->mutable_options()->SetExtension(crm::data::v1::no_scope_required, true);
  crm::auth::v1::Scope* scope = both->mutable_options()->AddExtension(crm::data::v1::required_scopes);
  scope->set_module(crm::auth::v1::MODULE_LEAD);
  scope->set_action(crm::auth::v1::ACTION_READ);
  const google::protobuf::FileDescriptor* built = pool.BuildFile(file);
  ASSERT_NE(built, nullptr);

  EXPECT_EQ(SpecForMethod(built->service(0)->method(0)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SpecForMethod(built->service(0)->method(1)).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ClientIpHeader, Validation) {
  for (const char* valid : {"", "x-forwarded-for", "x-real-ip", "x_client.ip2"}) {
    EXPECT_TRUE(ValidateClientIpHeader(valid).ok()) << valid;
  }
  for (const char* invalid : {"X-Forwarded-For", "x forwarded", "x-forwarded-for-bin", "grpc-client", ":authority",
                              "x-forwarded-for,x-real-ip"}) {
    EXPECT_FALSE(ValidateClientIpHeader(invalid).ok()) << invalid;
  }
}

TEST(ClientAddress, HeaderUsedOnlyWhenConfiguredAndTrusted) {
  absl::StatusOr<IpAllowlist> trusted = IpAllowlist::Parse({"127.0.0.0/8"});
  ASSERT_TRUE(trusted.ok());
  ClientAddressPolicy off;
  ClientAddressPolicy on{"x-forwarded-for", *trusted};
  std::vector<absl::string_view> header = {"203.0.113.5"};

  absl::StatusOr<IpAddress> direct = ClientAddress(off, "ipv4:127.0.0.1:5000", header);
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(direct->ToString(), "127.0.0.1");

  absl::StatusOr<IpAddress> forwarded = ClientAddress(on, "ipv4:127.0.0.1:5000", header);
  ASSERT_TRUE(forwarded.ok()) << forwarded.status();
  EXPECT_EQ(forwarded->ToString(), "203.0.113.5");

  absl::StatusOr<IpAddress> untrusted = ClientAddress(on, "ipv6:[2001:db8::9]:5000", header);
  ASSERT_TRUE(untrusted.ok()) << untrusted.status();
  EXPECT_EQ(untrusted->ToString(), "2001:db8::9");

  EXPECT_FALSE(ClientAddress(off, "unix:/run/crm.sock", {}).ok());
  EXPECT_FALSE(ClientAddress(on, "ipv4:127.0.0.1:5000", {"203.0.113.5, nonsense"}).ok());
}

}  // namespace
}  // namespace crm::data
