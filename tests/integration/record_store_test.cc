// RecordStore on the fixture's MariaDB: Create with both ways of reading a
// new record's id (INSERT ... RETURNING and SELECT LAST_INSERT_ID()), and
// the purge of old request ids.
#include "services/crm/record_store.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "crm/data/v1/resources.pb.h"
#include "services/crm/record_schema.h"
#include "tests/integration/test_stack.h"

namespace crm::data {
namespace {

using crm::data::v1::Lead;

class RecordStoreTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::TestStack>> stack = testing::TestStack::Start();
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    store_ = std::make_unique<RecordStore>(&stack_->data_pool(), PageTokenCodec(stack_->secrets().page_token_key));
    store_->set_insert_returning(GetParam());
    schema_ = SchemaForModule(crm::auth::v1::MODULE_LEAD);
    ASSERT_NE(schema_, nullptr);
  }

  Lead NewLead(const std::string& last_name) {
    Lead lead;
    lead.set_last_name(last_name);
    lead.set_company("O'Brien; DROP TABLE leads --");
    return lead;
  }

  std::unique_ptr<testing::TestStack> stack_;
  std::unique_ptr<RecordStore> store_;
  const ModuleSchema* schema_ = nullptr;
};

TEST_P(RecordStoreTest, CreateReturnsStoredIds) {
  const uint64_t organization = 7;
  std::set<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    Lead lead = NewLead("Lead " + std::to_string(i));
    absl::Status status = store_->Create(*schema_, organization, "", &lead);
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_FALSE(lead.id().empty());
    ids.insert(lead.id());

    Lead stored;
    status = store_->Get(*schema_, organization, lead.id(), &stored);
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_EQ(stored.last_name(), lead.last_name());
    EXPECT_EQ(stored.company(), lead.company());
    EXPECT_EQ(stored.etag(), lead.etag());
  }
  EXPECT_EQ(ids.size(), 3u);
}

TEST_P(RecordStoreTest, RetriedRequestIdReturnsFirstRecord) {
  const uint64_t organization = 8;
  const std::string request_id = "3f2b8a6e-1c4d-4e5f-9a7b-0c1d2e3f4a5b";
  Lead first = NewLead("First");
  absl::Status status = store_->Create(*schema_, organization, request_id, &first);
  ASSERT_TRUE(status.ok()) << status;
  Lead retry = NewLead("Retry");
  status = store_->Create(*schema_, organization, request_id, &retry);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(retry.id(), first.id());
  EXPECT_EQ(retry.last_name(), "First");
}

// A store whose clock the test moves, to age request ids without waiting.
class CreateRequestPurgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::TestStack>> stack = testing::TestStack::Start();
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    store_ = std::make_unique<RecordStore>(&stack_->data_pool(), PageTokenCodec(stack_->secrets().page_token_key),
                                           [this] { return now_; });
    schema_ = SchemaForModule(crm::auth::v1::MODULE_LEAD);
    ASSERT_NE(schema_, nullptr);
  }

  // Creates a lead with `request_id` at the current fake time and returns
  // its id.
  std::string CreateLead(const std::string& request_id, const std::string& last_name) {
    Lead lead;
    lead.set_last_name(last_name);
    absl::Status status = store_->Create(*schema_, kOrganization, request_id, &lead);
    EXPECT_TRUE(status.ok()) << status;
    return lead.id();
  }

  static constexpr uint64_t kOrganization = 9;
  // Far in the future (2096), so the stack's CRM server, which purges by
  // the real clock, never deletes the ids these tests create.
  absl::Time now_ = absl::FromUnixSeconds(4'000'000'000);
  std::unique_ptr<testing::TestStack> stack_;
  std::unique_ptr<RecordStore> store_;
  const ModuleSchema* schema_ = nullptr;
};

TEST_F(CreateRequestPurgeTest, PurgeForgetsOnlyOldIds) {
  const std::string old_id = "0b6f1c2a-5d3e-4f70-8a91-b2c3d4e5f601";
  const std::string recent_id = "0b6f1c2a-5d3e-4f70-8a91-b2c3d4e5f602";
  std::string old_lead = CreateLead(old_id, "Old");
  now_ += absl::Hours(2);
  std::string recent_lead = CreateLead(recent_id, "Recent");

  // The old id is 25 hours old and the recent one 23 hours.
  now_ += absl::Hours(23);
  absl::StatusOr<int> purged = store_->PurgeCreateRequests(absl::Hours(24), 1000);
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 1);

  EXPECT_EQ(CreateLead(recent_id, "Recent retry"), recent_lead);
  std::string new_lead = CreateLead(old_id, "Old retry");
  EXPECT_NE(new_lead, old_lead);
  Lead stored;
  ASSERT_TRUE(store_->Get(*schema_, kOrganization, old_lead, &stored).ok());
  EXPECT_EQ(stored.last_name(), "Old");

  // The retry claimed the old id again, so it is kept for another 24 hours.
  purged = store_->PurgeCreateRequests(absl::Hours(24), 1000);
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 0);
  EXPECT_EQ(CreateLead(old_id, "Second retry"), new_lead);
}

TEST_F(CreateRequestPurgeTest, PurgeDeletesInBatches) {
  for (int i = 0; i < 5; ++i) CreateLead(absl::StrCat("5a1e0c7d-2b3f-4e8a-9c6d-00000000000", i), "Batch");
  now_ += absl::Hours(25);
  std::vector<int> batches;
  while (true) {
    absl::StatusOr<int> purged = store_->PurgeCreateRequests(absl::Hours(24), 2);
    ASSERT_TRUE(purged.ok()) << purged.status();
    batches.push_back(*purged);
    if (*purged < 2) break;
  }
  EXPECT_EQ(batches, (std::vector<int>{2, 2, 1}));
}

INSTANTIATE_TEST_SUITE_P(IdSource, RecordStoreTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "InsertReturning" : "LastInsertId";
                         });

}  // namespace
}  // namespace crm::data
