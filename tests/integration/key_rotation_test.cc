// Rotation of token_encryption_key and token_hmac_key on the real database.
// Tokens and admin keys written under key 1 keep working once key 2 is
// added, and new tokens use key 2. ReencryptTokens (crmctl
// reencrypt-tokens) moves every stored token to key 2, so key 1 can then be
// removed.
#include <map>
#include <string>

#include <cppconn/connection.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>

#include "common/crypto.h"
#include "common/secrets.h"
#include "gtest/gtest.h"
#include "services/auth/auth_store.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {
namespace {

using crm::auth::AuthStore;
using crm::auth::v1::ACTION_READ;
using crm::auth::v1::MODULE_LEAD;

// Key ids of one access_tokens row.
struct StoredKeys {
  std::string encryption_key_id;
  std::string digest_key_id;  // "NULL" when unset.
};

class KeyRotationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start();
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    key1_ = stack_->secrets();

    // Key 2 is added as the newest, key 1 kept as older.
    both_ = key1_;
    both_.token_encryption_key = RandomBytes(kAes256KeyBytes);
    both_.token_encryption_key_id = KeyId(both_.token_encryption_key);
    both_.token_hmac_key = RandomBytes(kAes256KeyBytes);
    both_.older_token_encryption_keys = {key1_.token_encryption_key};
    both_.older_token_hmac_keys = {key1_.token_hmac_key};

    // Key 1 removed.
    key2_only_ = both_;
    key2_only_.older_token_encryption_keys.clear();
    key2_only_.older_token_hmac_keys.clear();
  }

  // Key ids of every access_tokens row by app id.
  std::multimap<uint64_t, StoredKeys> StoredKeyIds() {
    std::multimap<uint64_t, StoredKeys> rows;
    absl::Status status = stack_->auth_pool().Run("reading key ids", [&](sql::Connection& connection) {
      std::unique_ptr<sql::Statement> statement(connection.createStatement());
      std::unique_ptr<sql::ResultSet> result(statement->executeQuery(
          "SELECT app_id, encryption_key_id, COALESCE(digest_key_id, 'NULL') FROM access_tokens"));
      while (result->next()) {
        rows.emplace(result->getUInt64(1),
                     StoredKeys{result->getString(2).asStdString(), result->getString(3).asStdString()});
      }
      return absl::OkStatus();
    });
    EXPECT_TRUE(status.ok()) << status;
    return rows;
  }

  static std::string Reveal(AuthStore& store, uint64_t organization_id, const std::string& app_id) {
    crm::auth::v1::GetAccessTokenRequest request;
    request.set_id(app_id);
    absl::StatusOr<crm::auth::v1::GetAccessTokenResponse> response = store.GetAccessToken(crm::auth::AdminCaller{.organization_id = organization_id}, request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? response->access_token() : "";
  }

  std::unique_ptr<TestStack> stack_;
  Secrets key1_;
  Secrets both_;
  Secrets key2_only_;
};

TEST_F(KeyRotationTest, TokensSurviveRotationAndReencryption) {
  // Written under key 1 by the running auth server.
  std::string admin_key = stack_->NewOrganization();
  crm::auth::v1::CreatePrivateAppResponse app1 = stack_->NewApp(admin_key, {MakeScope(MODULE_LEAD, ACTION_READ)});
  crm::auth::v1::RotateAccessTokenRequest rotate;
  rotate.set_id(app1.private_app().id());
  crm::auth::v1::RotateAccessTokenResponse rotated;
  ASSERT_TRUE(stack_->apps().RotateAccessToken(WithBearer(admin_key).get(), rotate, &rotated).ok());
  const std::string token1 = rotated.access_token();
  uint64_t organization_id = std::stoull(app1.private_app().organization_id());
  uint64_t app1_id = std::stoull(app1.private_app().id());
  for (const auto& [app_id, keys] : StoredKeyIds()) {
    EXPECT_EQ(key1_.token_encryption_key_id, keys.encryption_key_id);
    EXPECT_EQ(KeyId(key1_.token_hmac_key), keys.digest_key_id);
  }

  // Key 2 added: what key 1 wrote still works.
  AuthStore with_both(&stack_->auth_pool(), both_);
  absl::StatusOr<auth::TokenClaims> claims = with_both.CheckToken(token1);
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(app1_id, claims->app_id);
  EXPECT_EQ(token1, Reveal(with_both, organization_id, app1.private_app().id()));
  absl::StatusOr<uint64_t> admin_organization = with_both.AuthenticateAdminKey(admin_key);
  ASSERT_TRUE(admin_organization.ok()) << admin_organization.status();
  EXPECT_EQ(organization_id, *admin_organization);

  // New tokens use key 2; app 1's tokens are still under key 1.
  crm::auth::v1::CreatePrivateAppRequest create;
  create.mutable_private_app()->set_display_name("After rotation");
  *create.mutable_private_app()->add_scopes() = MakeScope(MODULE_LEAD, ACTION_READ);
  absl::StatusOr<crm::auth::v1::CreatePrivateAppResponse> app2 = with_both.CreatePrivateApp(crm::auth::AdminCaller{.organization_id = organization_id}, create);
  ASSERT_TRUE(app2.ok()) << app2.status();
  const std::string token2 = app2->access_token();
  uint64_t app2_id = std::stoull(app2->private_app().id());
  std::multimap<uint64_t, StoredKeys> before = StoredKeyIds();
  ASSERT_EQ(3u, before.size());  // App 1's revoked and current tokens, app 2's token.
  for (const auto& [app_id, keys] : before) {
    const Secrets& expected = app_id == app2_id ? both_ : key1_;
    EXPECT_EQ(expected.token_encryption_key_id, keys.encryption_key_id) << "app " << app_id;
    EXPECT_EQ(KeyId(expected.token_hmac_key), keys.digest_key_id) << "app " << app_id;
  }

  // One row per transaction, so the batching is exercised.
  absl::StatusOr<auth::ReencryptResult> moved = with_both.ReencryptTokens(1);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(2, moved->rewritten_tokens);
  // The admin key moved to key 2 when it authenticated above.
  EXPECT_EQ(0, moved->admin_keys_under_older_keys);
  for (const auto& [app_id, keys] : StoredKeyIds()) {
    EXPECT_EQ(both_.token_encryption_key_id, keys.encryption_key_id) << "app " << app_id;
    EXPECT_EQ(KeyId(both_.token_hmac_key), keys.digest_key_id) << "app " << app_id;
  }
  absl::StatusOr<auth::ReencryptResult> again = with_both.ReencryptTokens(100);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(0, again->rewritten_tokens);

  // Key 1 removed: every token and the admin key still work.
  AuthStore with_key2(&stack_->auth_pool(), key2_only_);
  for (const auto& [token, app_id] : {std::pair{token1, app1_id}, std::pair{token2, app2_id}}) {
    absl::StatusOr<auth::TokenClaims> checked = with_key2.CheckToken(token);
    ASSERT_TRUE(checked.ok()) << checked.status();
    EXPECT_EQ(app_id, checked->app_id);
  }
  EXPECT_EQ(token1, Reveal(with_key2, organization_id, app1.private_app().id()));
  EXPECT_EQ(token2, Reveal(with_key2, organization_id, app2->private_app().id()));
  EXPECT_TRUE(with_key2.AuthenticateAdminKey(admin_key).ok());

  // A server with only key 1 no longer recognizes them, so the rows really
  // moved.
  AuthStore with_key1(&stack_->auth_pool(), key1_);
  EXPECT_EQ(absl::StatusCode::kUnauthenticated, with_key1.CheckToken(token1).status().code());
  EXPECT_EQ(absl::StatusCode::kUnauthenticated, with_key1.AuthenticateAdminKey(admin_key).status().code());
}

TEST_F(KeyRotationTest, UnusedAdminKeyIsReported) {
  std::string admin_key = stack_->NewOrganization();
  AuthStore with_both(&stack_->auth_pool(), both_);
  absl::StatusOr<auth::ReencryptResult> result = with_both.ReencryptTokens(100);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(1, result->admin_keys_under_older_keys);

  ASSERT_TRUE(with_both.AuthenticateAdminKey(admin_key).ok());
  result = with_both.ReencryptTokens(100);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(0, result->admin_keys_under_older_keys);
}

TEST_F(KeyRotationTest, MissingKeyStopsReencryption) {
  std::string admin_key = stack_->NewOrganization();
  crm::auth::v1::CreatePrivateAppResponse app = stack_->NewApp(admin_key, {MakeScope(MODULE_LEAD, ACTION_READ)});
  // Key 1 was dropped before its tokens moved.
  AuthStore with_key2(&stack_->auth_pool(), key2_only_);
  absl::StatusOr<auth::ReencryptResult> result = with_key2.ReencryptTokens(100);
  EXPECT_EQ(absl::StatusCode::kFailedPrecondition, result.status().code());
  EXPECT_EQ(absl::StatusCode::kUnauthenticated, with_key2.CheckToken(app.access_token()).status().code());
}

}  // namespace
}  // namespace crm::testing
