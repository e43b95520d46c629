// RecordStore::Create with both ways of reading a new record's id, on the
// fixture's MariaDB: INSERT ... RETURNING and SELECT LAST_INSERT_ID().
#include "services/crm/record_store.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

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

INSTANTIATE_TEST_SUITE_P(IdSource, RecordStoreTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "InsertReturning" : "LastInsertId";
                         });

}  // namespace
}  // namespace crm::data
