// Key file and environment formats of common/secrets.h, with several keys
// per name for rotation.
#include "common/secrets.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "gtest/gtest.h"

namespace crm {
namespace {

std::string Key(char fill) { return std::string(kAes256KeyBytes, fill); }
std::string Encoded(char fill) { return absl::Base64Escape(Key(fill)); }

class SecretsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* variable : {"CRM_TOKEN_ENCRYPTION_KEY", "CRM_TOKEN_HMAC_KEY", "CRM_PAGE_TOKEN_KEY"}) {
      unsetenv(variable);
    }
    path_ = absl::StrCat(::testing::TempDir(), "/secrets_test_", getpid(), "_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    unlink(path_.c_str());
  }
  void TearDown() override {
    unlink(path_.c_str());
    for (const char* variable : {"CRM_TOKEN_ENCRYPTION_KEY", "CRM_TOKEN_HMAC_KEY", "CRM_PAGE_TOKEN_KEY"}) {
      unsetenv(variable);
    }
  }

  void WriteFile(const std::string& text) {
    std::ofstream out(path_);
    out << text;
    out.close();
    chmod(path_.c_str(), 0600);
  }

  std::string path_;
};

TEST_F(SecretsTest, UnnumberedFormatStillLoads) {
  WriteFile(absl::StrCat("token_encryption_key=", Encoded('e'), "\ntoken_hmac_key=", Encoded('h'),
                         "\npage_token_key=", Encoded('p'), "\n"));
  absl::StatusOr<Secrets> secrets = LoadSecrets(path_);
  ASSERT_TRUE(secrets.ok()) << secrets.status();
  EXPECT_EQ(Key('e'), secrets->token_encryption_key);
  EXPECT_EQ(KeyId(Key('e')), secrets->token_encryption_key_id);
  EXPECT_EQ(Key('h'), secrets->token_hmac_key);
  EXPECT_EQ(Key('p'), secrets->page_token_key);
  EXPECT_TRUE(secrets->older_token_encryption_keys.empty());
  EXPECT_TRUE(secrets->older_token_hmac_keys.empty());
}

TEST_F(SecretsTest, HighestNumberIsNewest) {
  WriteFile(absl::StrCat("token_encryption_key.2=", Encoded('b'), "\ntoken_encryption_key=", Encoded('0'),
                         "\ntoken_encryption_key.10=", Encoded('c'), "\ntoken_hmac_key.1=", Encoded('h'),
                         "\ntoken_hmac_key.3=", Encoded('i'), "\npage_token_key.1=", Encoded('p'),
                         "\npage_token_key.2=", Encoded('q'), "\n"));
  absl::StatusOr<Secrets> secrets = LoadSecrets(path_);
  ASSERT_TRUE(secrets.ok()) << secrets.status();
  EXPECT_EQ(Key('c'), secrets->token_encryption_key);
  ASSERT_EQ(2u, secrets->older_token_encryption_keys.size());
  EXPECT_EQ(Key('b'), secrets->older_token_encryption_keys[0]);
  EXPECT_EQ(Key('0'), secrets->older_token_encryption_keys[1]);
  EXPECT_EQ(Key('i'), secrets->token_hmac_key);
  ASSERT_EQ(1u, secrets->older_token_hmac_keys.size());
  EXPECT_EQ(Key('h'), secrets->older_token_hmac_keys[0]);
  EXPECT_EQ(Key('q'), secrets->page_token_key);
}

TEST_F(SecretsTest, EnvironmentListReplacesFile) {
  WriteFile(absl::StrCat("token_encryption_key.1=", Encoded('e'), "\ntoken_hmac_key.1=", Encoded('h'),
                         "\npage_token_key.1=", Encoded('p'), "\n"));
  setenv("CRM_TOKEN_HMAC_KEY", absl::StrCat("1:", Encoded('x'), ", 2:", Encoded('y')).c_str(), 1);
  absl::StatusOr<Secrets> secrets = LoadSecrets(path_);
  ASSERT_TRUE(secrets.ok()) << secrets.status();
  EXPECT_EQ(Key('y'), secrets->token_hmac_key);
  ASSERT_EQ(1u, secrets->older_token_hmac_keys.size());
  EXPECT_EQ(Key('x'), secrets->older_token_hmac_keys[0]);
  EXPECT_EQ(Key('e'), secrets->token_encryption_key);
}

TEST_F(SecretsTest, RejectsBadEntries) {
  const std::string valid = absl::StrCat("token_encryption_key.1=", Encoded('e'), "\ntoken_hmac_key.1=",
                                         Encoded('h'), "\npage_token_key.1=", Encoded('p'), "\n");
  for (const std::string& extra : {absl::StrCat("token_hmac_keys.2=", Encoded('z'), "\n"),
                                   absl::StrCat("token_hmac_key.0=", Encoded('z'), "\n"),
                                   absl::StrCat("token_hmac_key.x=", Encoded('z'), "\n"),
                                   absl::StrCat("token_hmac_key.1=", Encoded('z'), "\n"),
                                   absl::StrCat("token_hmac_key.2=", Encoded('h'), "\n"),
                                   std::string("token_hmac_key.2=c2hvcnQ=\n")}) {
    WriteFile(valid + extra);
    absl::StatusOr<Secrets> secrets = LoadSecrets(path_);
    EXPECT_EQ(absl::StatusCode::kInvalidArgument, secrets.status().code()) << extra;
    // No message carries key material.
    EXPECT_EQ(std::string::npos, secrets.status().message().find(Encoded('z'))) << secrets.status();
    EXPECT_EQ(std::string::npos, secrets.status().message().find(Encoded('h'))) << secrets.status();
  }
}

TEST_F(SecretsTest, AddedKeysAreReadOnlyUntilCurrentRemoved) {
  ASSERT_TRUE(WriteNewKeyFile(path_).ok());
  absl::StatusOr<Secrets> first = LoadSecrets(path_);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->older_token_encryption_keys.empty());

  absl::StatusOr<std::vector<std::string>> added = AddNewestKeys(path_);
  ASSERT_TRUE(added.ok()) << added.status();
  ASSERT_EQ(2u, added->size());
  absl::StatusOr<Secrets> second = LoadSecrets(path_);
  ASSERT_TRUE(second.ok()) << second.status();
  // Key 1 stays current; key 2 is only read.
  EXPECT_EQ(first->token_encryption_key, second->token_encryption_key);
  EXPECT_EQ(first->token_hmac_key, second->token_hmac_key);
  ASSERT_EQ(1u, second->older_token_encryption_keys.size());
  ASSERT_EQ(1u, second->older_token_hmac_keys.size());
  const std::string new_encryption_key = second->older_token_encryption_keys[0];
  EXPECT_NE(first->token_encryption_key, new_encryption_key);
  EXPECT_EQ(absl::StrCat("token_encryption_key.2 id ", KeyId(new_encryption_key),
                         ", read only while token_encryption_key.current=1"),
            (*added)[0]);

  // Without the current entries, key 2 is current and key 1 is read.
  std::ifstream in(path_);
  std::string line;
  std::string kept;
  while (std::getline(in, line)) {
    if (line.find(".current=") == std::string::npos) kept += line + "\n";
  }
  in.close();
  WriteFile(kept);
  absl::StatusOr<Secrets> third = LoadSecrets(path_);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(new_encryption_key, third->token_encryption_key);
  ASSERT_EQ(1u, third->older_token_encryption_keys.size());
  EXPECT_EQ(first->token_encryption_key, third->older_token_encryption_keys[0]);
  EXPECT_EQ(first->token_hmac_key, third->older_token_hmac_keys[0]);
  EXPECT_EQ(first->page_token_key, third->page_token_key);

  struct stat info {};
  ASSERT_EQ(0, stat(path_.c_str(), &info));
  EXPECT_EQ(0600u, info.st_mode & 0777);
}

TEST_F(SecretsTest, CurrentEntryInEnvironment) {
  setenv("CRM_TOKEN_ENCRYPTION_KEY", absl::StrCat("1:", Encoded('a'), ",2:", Encoded('b'), ",current:1").c_str(), 1);
  setenv("CRM_TOKEN_HMAC_KEY", Encoded('h').c_str(), 1);
  setenv("CRM_PAGE_TOKEN_KEY", absl::StrCat("current:3,1:", Encoded('p')).c_str(), 1);
  absl::StatusOr<Secrets> secrets = LoadSecrets("");
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, secrets.status().code());

  setenv("CRM_PAGE_TOKEN_KEY", Encoded('p').c_str(), 1);
  secrets = LoadSecrets("");
  ASSERT_TRUE(secrets.ok()) << secrets.status();
  EXPECT_EQ(Key('a'), secrets->token_encryption_key);
  ASSERT_EQ(1u, secrets->older_token_encryption_keys.size());
  EXPECT_EQ(Key('b'), secrets->older_token_encryption_keys[0]);
}

TEST_F(SecretsTest, DescriptionHasIdsOnly) {
  ASSERT_TRUE(WriteNewKeyFile(path_).ok());
  absl::StatusOr<Secrets> secrets = LoadSecrets(path_);
  ASSERT_TRUE(secrets.ok()) << secrets.status();
  std::string description = DescribeSecrets(*secrets);
  EXPECT_NE(std::string::npos, description.find(KeyId(secrets->token_hmac_key))) << description;
  EXPECT_EQ(std::string::npos, description.find(absl::Base64Escape(secrets->token_hmac_key))) << description;
}

}  // namespace
}  // namespace crm
