// Checks that CrmService's contract is complete: every method declares the
// scopes it needs and maps to a standard method of one module or to the
// custom method ConvertLead.
#include <set>

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
  for (int i = 0; i < service->method_count(); ++i) {
    absl::StatusOr<MethodSpec> spec = SpecForMethod(service->method(i));
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_NE(spec->required_scopes, 0u) << service->method(i)->name();
    EXPECT_NE(spec->schema, nullptr) << service->method(i)->name();
  }
}

TEST(CrmContract, FiveMethodsPerModulePlusConvertLead) {
  const google::protobuf::ServiceDescriptor* service = CrmServiceDescriptor();
  std::set<std::pair<int, int>> seen;
  for (int i = 0; i < service->method_count(); ++i) {
    absl::StatusOr<MethodSpec> spec = SpecForMethod(service->method(i));
    ASSERT_TRUE(spec.ok()) << spec.status();
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

}  // namespace
}  // namespace crm::data
