#include "common/scopes.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/error_details.h"

namespace crm {

using crm::auth::v1::Action;
using crm::auth::v1::Module;

namespace {

constexpr int kActionsPerModule = 4;

}  // namespace

ScopeMask ScopeBit(Module module, Action action) {
  return ScopeMask{1} << ((static_cast<int>(module) - 1) * kActionsPerModule + (static_cast<int>(action) - 1));
}

absl::StatusOr<ScopeMask> ScopeMaskFromProto(
    const google::protobuf::RepeatedPtrField<crm::auth::v1::Scope>& scopes) {
  ScopeMask mask = 0;
  for (int i = 0; i < scopes.size(); ++i) {
    const crm::auth::v1::Scope& scope = scopes.Get(i);
    if (scope.module() == crm::auth::v1::MODULE_UNSPECIFIED || !crm::auth::v1::Module_IsValid(scope.module())) {
      std::string field = absl::StrCat("scopes[", i, "].module");
      return InvalidFieldError(field, absl::StrCat(field, " must be one of MODULE_LEAD ... MODULE_MESSAGE, got ",
                                                   static_cast<int>(scope.module())));
    }
    if (scope.action() == crm::auth::v1::ACTION_UNSPECIFIED || !crm::auth::v1::Action_IsValid(scope.action())) {
      std::string field = absl::StrCat("scopes[", i, "].action");
      return InvalidFieldError(field, absl::StrCat(field, " must be one of ACTION_READ ... ACTION_DELETE, got ",
                                                   static_cast<int>(scope.action())));
    }
    ScopeMask bit = ScopeBit(scope.module(), scope.action());
    if ((mask & bit) != 0) {
      std::string field = absl::StrCat("scopes[", i, "]");
      return InvalidFieldError(field, absl::StrCat(field, " repeats ", ScopeName(scope.module(), scope.action())));
    }
    mask |= bit;
  }
  return mask;
}

void ScopeMaskToProto(ScopeMask mask, google::protobuf::RepeatedPtrField<crm::auth::v1::Scope>* scopes) {
  for (int module = crm::auth::v1::MODULE_LEAD; module <= crm::auth::v1::MODULE_MESSAGE; ++module) {
    for (int action = crm::auth::v1::ACTION_READ; action <= crm::auth::v1::ACTION_DELETE; ++action) {
      if ((mask & ScopeBit(static_cast<Module>(module), static_cast<Action>(action))) == 0) continue;
      crm::auth::v1::Scope* scope = scopes->Add();
      scope->set_module(static_cast<Module>(module));
      scope->set_action(static_cast<Action>(action));
    }
  }
}

std::string ScopeName(Module module, Action action) {
  return absl::StrCat(absl::StripPrefix(crm::auth::v1::Module_Name(module), "MODULE_"), ":",
                      absl::StripPrefix(crm::auth::v1::Action_Name(action), "ACTION_"));
}

}  // namespace crm
