// The CRM data API rules integrators build syncs on, against real servers
// and MariaDB: List filters, order_by and keyset paging (also under
// concurrent writes), etags, request_id retries, references with their
// delete rules, and ConvertLead.
#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {
namespace {

using crm::data::v1::Account;
using crm::data::v1::Activity;
using crm::data::v1::Contact;
using crm::data::v1::Lead;
using crm::data::v1::Message;
using crm::data::v1::Opportunity;

class CrmApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start();
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    token_ = stack_->NewApp(stack_->NewOrganization(), AllScopes()).access_token();
    other_token_ = stack_->NewApp(stack_->NewOrganization("Other"), AllScopes()).access_token();
  }

  crm::data::v1::CrmService::Stub& crm() { return stack_->crm(); }

  Lead NewLead(const std::string& last_name, crm::data::v1::LeadStatus status = crm::data::v1::LEAD_STATUS_NEW,
               const std::string& token = "") {
    crm::data::v1::CreateLeadRequest request;
    request.mutable_lead()->set_last_name(last_name);
    request.mutable_lead()->set_status(status);
    crm::data::v1::CreateLeadResponse response;
    grpc::Status status_code = crm().CreateLead(WithBearer(token.empty() ? token_ : token).get(), request, &response);
    EXPECT_TRUE(status_code.ok()) << status_code.error_message();
    return response.lead();
  }

  Account NewAccount(const std::string& name, const std::string& token = "") {
    crm::data::v1::CreateAccountRequest request;
    request.mutable_account()->set_name(name);
    crm::data::v1::CreateAccountResponse response;
    grpc::Status status = crm().CreateAccount(WithBearer(token.empty() ? token_ : token).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.account();
  }

  grpc::Status CreateContact(const Contact& contact, Contact* out = nullptr) {
    crm::data::v1::CreateContactRequest request;
    *request.mutable_contact() = contact;
    crm::data::v1::CreateContactResponse response;
    grpc::Status status = crm().CreateContact(WithBearer(token_).get(), request, &response);
    if (out != nullptr) *out = response.contact();
    return status;
  }

  grpc::Status ListLeads(const std::string& filter, const std::string& order_by, int page_size,
                         const std::string& page_token, crm::data::v1::ListLeadsResponse* response,
                         const std::string& token = "") {
    crm::data::v1::ListLeadsRequest request;
    request.set_filter(filter);
    request.set_order_by(order_by);
    request.set_page_size(page_size);
    request.set_page_token(page_token);
    return crm().ListLeads(WithBearer(token.empty() ? token_ : token).get(), request, response);
  }

  // Every lead that matches `filter`, in order, over pages of `page_size`.
  std::vector<Lead> ListAllLeads(const std::string& filter, const std::string& order_by = "", int page_size = 0) {
    std::vector<Lead> leads;
    std::string page_token;
    for (int page = 0; page < 1000; ++page) {
      crm::data::v1::ListLeadsResponse response;
      grpc::Status status = ListLeads(filter, order_by, page_size, page_token, &response);
      EXPECT_TRUE(status.ok()) << filter << " / " << order_by << ": " << status.error_message();
      if (!status.ok()) break;
      leads.insert(leads.end(), response.leads().begin(), response.leads().end());
      page_token = response.next_page_token();
      if (page_token.empty()) break;
    }
    return leads;
  }

  std::set<std::string> LeadIds(const std::string& filter) {
    std::set<std::string> ids;
    for (const Lead& lead : ListAllLeads(filter)) ids.insert(lead.id());
    return ids;
  }

  std::unique_ptr<TestStack> stack_;
  std::string token_;
  std::string other_token_;
};

std::vector<std::string> IdsOf(const std::vector<Lead>& leads) {
  std::vector<std::string> ids;
  for (const Lead& lead : leads) ids.push_back(lead.id());
  return ids;
}

uint64_t IdNumber(const std::string& id) { return std::stoull(id); }

TEST_F(CrmApiTest, FilterSelectsMatchingRecords) {
  Lead ada = NewLead("Lovelace");
  Lead grace = NewLead("Hopper", crm::data::v1::LEAD_STATUS_QUALIFIED);
  Lead alan = NewLead("Turing", crm::data::v1::LEAD_STATUS_CONTACTED);
  Lead love = NewLead("Loveless", crm::data::v1::LEAD_STATUS_QUALIFIED);
  NewLead("Lovelace", crm::data::v1::LEAD_STATUS_NEW, other_token_);

  using Ids = std::set<std::string>;
  EXPECT_EQ((Ids{ada.id()}), LeadIds("last_name = \"Lovelace\""));
  EXPECT_EQ((Ids{ada.id(), love.id()}), LeadIds("last_name:\"Love*\""));
  EXPECT_EQ((Ids{ada.id(), love.id()}), LeadIds("last_name:\"ovel\""));
  EXPECT_EQ((Ids{}), LeadIds("last_name:\"love*\"")) << "text compares case-sensitively";
  EXPECT_EQ((Ids{grace.id(), love.id()}), LeadIds("status = LEAD_STATUS_QUALIFIED"));
  EXPECT_EQ((Ids{ada.id(), alan.id()}), LeadIds("NOT status = LEAD_STATUS_QUALIFIED"));
  EXPECT_EQ((Ids{ada.id(), alan.id()}), LeadIds("-status = LEAD_STATUS_QUALIFIED"));
  // OR binds tighter than AND.
  EXPECT_EQ((Ids{love.id()}),
            LeadIds("status = LEAD_STATUS_QUALIFIED AND last_name = \"Loveless\" OR last_name = \"Turing\""));
  EXPECT_EQ((Ids{love.id(), alan.id()}),
            LeadIds("(status = LEAD_STATUS_QUALIFIED AND last_name = \"Loveless\") OR last_name = \"Turing\""));
  EXPECT_EQ((Ids{grace.id(), alan.id(), love.id()}), LeadIds("id > " + ada.id()));
  EXPECT_EQ((Ids{ada.id(), grace.id(), alan.id(), love.id()}), LeadIds("create_time > \"2000-01-01T00:00:00Z\""));
  EXPECT_EQ((Ids{}), LeadIds("create_time < \"2000-01-01T00:00:00Z\""));
  EXPECT_EQ((Ids{}), LeadIds("converted_account_id:*"));
  EXPECT_EQ((Ids{ada.id(), grace.id(), alan.id(), love.id()}), LeadIds("converted_account_id != 1"))
      << "!= is true for an unset reference";
}

TEST_F(CrmApiTest, FilterTimestampsAndNullableFields) {
  auto create_activity = [&](const std::string& subject, int64_t due_seconds) {
    crm::data::v1::CreateActivityRequest request;
    request.mutable_activity()->set_type(crm::data::v1::ACTIVITY_TYPE_TASK);
    request.mutable_activity()->set_subject(subject);
    if (due_seconds != 0) request.mutable_activity()->mutable_due_time()->set_seconds(due_seconds);
    crm::data::v1::CreateActivityResponse response;
    EXPECT_TRUE(crm().CreateActivity(WithBearer(token_).get(), request, &response).ok());
    return response.activity().id();
  };
  std::string early = create_activity("early", 1735689600);  // 2025-01-01T00:00:00Z
  std::string late = create_activity("late", 1767225600);    // 2026-01-01T00:00:00Z
  std::string unset = create_activity("unset", 0);

  auto ids = [&](const std::string& filter) {
    crm::data::v1::ListActivitiesRequest request;
    request.set_filter(filter);
    crm::data::v1::ListActivitiesResponse response;
    grpc::Status status = crm().ListActivities(WithBearer(token_).get(), request, &response);
    EXPECT_TRUE(status.ok()) << filter << ": " << status.error_message();
    std::set<std::string> found;
    for (const Activity& activity : response.activities()) found.insert(activity.id());
    return found;
  };
  using Ids = std::set<std::string>;
  EXPECT_EQ((Ids{late}), ids("due_time > \"2025-06-01T00:00:00Z\""));
  EXPECT_EQ((Ids{early}), ids("due_time <= \"2025-01-01T01:00:00+01:00\""));
  EXPECT_EQ((Ids{early, unset}), ids("NOT due_time > \"2025-06-01T00:00:00Z\"")) << "NOT is the complement";
  EXPECT_EQ((Ids{early, late}), ids("due_time:*"));
  EXPECT_EQ((Ids{unset}), ids("NOT due_time:*"));
  EXPECT_EQ((Ids{early, late, unset}), ids("type = ACTIVITY_TYPE_TASK AND status = ACTIVITY_STATUS_OPEN"));
}

TEST_F(CrmApiTest, FilterErrorsAreInvalidArgument) {
  struct Case {
    const char* filter;
    const char* message;
  };
  const Case cases[] = {
      {"nope = 1", "at position 1"},
      {"last_name = \"a\" AND", "expected a field name at position 20"},
      {"last_name = \"a", "unterminated string at position 13"},
      {"status = LEAD_STATUS_MAYBE", "status takes a LeadStatus value name"},
      {"((((((((((last_name = 'a'))))))))))", "deeper than 8 levels"},
  };
  for (const Case& c : cases) {
    crm::data::v1::ListLeadsResponse response;
    grpc::Status status = ListLeads(c.filter, "", 0, "", &response);
    EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, status.error_code()) << c.filter;
    EXPECT_NE(status.error_message().find(c.message), std::string::npos) << c.filter << ": " << status.error_message();
  }
  crm::data::v1::ListLeadsResponse response;
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            ListLeads("last_name = \"" + std::string(3000, 'a') + "\"", "", 0, "", &response).error_code());
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, ListLeads("", "first_name", 0, "", &response).error_code())
      << "first_name is filterable but not sortable";
}

// A random filter from the documented grammar, with awkward literals, so
// that valid filters of every shape reach the database.
std::string RandomValidFilter(std::mt19937& random, int depth) {
  const std::vector<std::string> comparisons = {
      "last_name = \"Love'; --\"", "last_name:\"%_\\\\*\"", "email:\"@\"", "company < \"\xC3\xBC\"",
      "status != LEAD_STATUS_NEW", "status >= LEAD_STATUS_CONTACTED", "id > 1", "id = \"18446744073709551615\"",
      "create_time <= \"9999-12-31T23:59:59.999999Z\"", "update_time > \"1000-01-01T00:00:00Z\"",
      "converted_account_id:*", "converted_contact_id != 3", "title:\"\"", "source = ''"};
  if (depth == 0 || random() % 3 == 0) return comparisons[random() % comparisons.size()];
  switch (random() % 4) {
    case 0:
      return "NOT (" + RandomValidFilter(random, depth - 1) + ")";
    case 1:
      return "(" + RandomValidFilter(random, depth - 1) + ")";
    case 2:
      return RandomValidFilter(random, depth - 1) + " AND " + RandomValidFilter(random, depth - 1);
    default:
      return RandomValidFilter(random, depth - 1) + " OR " + RandomValidFilter(random, depth - 1);
  }
}

// Random filters get OK or INVALID_ARGUMENT, never another code:
// grammar-made filters, the same with one random byte changed, random
// sequences of filter pieces, and random printable text.
TEST_F(CrmApiTest, FuzzedFiltersOnlyOkOrInvalidArgument) {
  NewLead("Lovelace");
  std::mt19937 random(7);
  const std::vector<std::string> pieces = {
      "last_name", "status", "create_time", "id", "email", " = ", "!=", "<", ">=", ":", "*", "(", ")", " AND ",
      " OR ", "NOT ", "-", "\"Love\"", "'x*'", "\\", "42", "-1", "LEAD_STATUS_NEW", "\"2025-01-01T00:00:00Z\"",
      "%", "_", "'", "\"", " ", "\xC3\xBC"};
  int ok = 0;
  for (int round = 0; round < 400; ++round) {
    std::string filter;
    switch (round % 4) {
      case 0:
        filter = RandomValidFilter(random, 3);
        break;
      case 1:
        filter = RandomValidFilter(random, 3);
        // Printable ASCII keeps the request valid UTF-8, so it reaches the server.
        filter[random() % filter.size()] = static_cast<char>(32 + random() % 95);
        break;
      case 2:
        for (int i = 1 + static_cast<int>(random() % 10); i > 0; --i) filter += pieces[random() % pieces.size()];
        break;
      default:
        for (int i = 1 + static_cast<int>(random() % 40); i > 0; --i) {
          filter.push_back(static_cast<char>(32 + random() % 95));
        }
        break;
    }
    crm::data::v1::ListLeadsResponse response;
    grpc::Status status = ListLeads(filter, "", 5, "", &response);
    if (status.ok()) ++ok;
    EXPECT_TRUE(status.ok() || status.error_code() == grpc::StatusCode::INVALID_ARGUMENT)
        << filter << ": " << status.error_code() << " " << status.error_message();
    if (round % 4 == 0) {
      EXPECT_TRUE(status.ok()) << filter << ": " << status.error_message();
    }
  }
  EXPECT_GT(ok, 100);
}

TEST_F(CrmApiTest, OrderByIsStableWithIdTieBreaker) {
  std::vector<Lead> leads;
  for (const char* name : {"Baker", "Adams", "Baker", "Clark", "Adams", "Baker", "Clark"}) leads.push_back(NewLead(name));

  std::vector<Lead> expected = leads;
  std::sort(expected.begin(), expected.end(), [](const Lead& a, const Lead& b) {
    if (a.last_name() != b.last_name()) return a.last_name() > b.last_name();
    return IdNumber(a.id()) > IdNumber(b.id());
  });
  EXPECT_EQ(IdsOf(expected), IdsOf(ListAllLeads("", "last_name desc", 2)));

  std::sort(expected.begin(), expected.end(), [](const Lead& a, const Lead& b) {
    if (a.last_name() != b.last_name()) return a.last_name() < b.last_name();
    return IdNumber(a.id()) < IdNumber(b.id());
  });
  EXPECT_EQ(IdsOf(expected), IdsOf(ListAllLeads("", "last_name", 3)));

  // Mixed directions: status descending, then last_name ascending.
  std::vector<Lead> by_id = ListAllLeads("", "id desc", 4);
  ASSERT_EQ(leads.size(), by_id.size());
  EXPECT_EQ(leads.back().id(), by_id.front().id());
  std::vector<Lead> filtered = ListAllLeads("last_name != \"Clark\"", "status desc, last_name", 1);
  ASSERT_EQ(5u, filtered.size());
  EXPECT_EQ("Adams", filtered[0].last_name());
  EXPECT_EQ("Baker", filtered[4].last_name());
  EXPECT_LT(IdNumber(filtered[0].id()), IdNumber(filtered[1].id())) << "ties broken by id ascending";
}

TEST_F(CrmApiTest, OrderByNullableFieldPagesThroughNulls) {
  std::vector<std::pair<int64_t, std::string>> created;  // (due seconds or 0, id)
  for (int64_t due : {1800000000, 0, 1700000000, 0, 1800000000, 0, 1750000000}) {
    crm::data::v1::CreateActivityRequest request;
    request.mutable_activity()->set_type(crm::data::v1::ACTIVITY_TYPE_CALL);
    request.mutable_activity()->set_subject("call");
    if (due != 0) request.mutable_activity()->mutable_due_time()->set_seconds(due);
    crm::data::v1::CreateActivityResponse response;
    ASSERT_TRUE(crm().CreateActivity(WithBearer(token_).get(), request, &response).ok());
    created.emplace_back(due, response.activity().id());
  }
  for (bool descending : {false, true}) {
    std::vector<std::pair<int64_t, std::string>> expected = created;
    std::sort(expected.begin(), expected.end(), [&](const auto& a, const auto& b) {
      // Unset (0 here) sorts first ascending, last descending.
      if (a.first != b.first) return descending ? a.first > b.first : a.first < b.first;
      return descending ? IdNumber(a.second) > IdNumber(b.second) : IdNumber(a.second) < IdNumber(b.second);
    });
    std::vector<std::string> listed;
    std::string page_token;
    for (int page = 0; page < 20; ++page) {
      crm::data::v1::ListActivitiesRequest request;
      request.set_order_by(descending ? "due_time desc" : "due_time");
      request.set_page_size(2);
      request.set_page_token(page_token);
      crm::data::v1::ListActivitiesResponse response;
      grpc::Status status = crm().ListActivities(WithBearer(token_).get(), request, &response);
      ASSERT_TRUE(status.ok()) << status.error_message();
      for (const Activity& activity : response.activities()) listed.push_back(activity.id());
      page_token = response.next_page_token();
      if (page_token.empty()) break;
    }
    std::vector<std::string> expected_ids;
    for (const auto& entry : expected) expected_ids.push_back(entry.second);
    EXPECT_EQ(expected_ids, listed) << (descending ? "due_time desc" : "due_time");
  }
}

TEST_F(CrmApiTest, PageTokenBoundToRequest) {
  for (int i = 0; i < 3; ++i) NewLead("Lovelace");
  crm::data::v1::ListLeadsResponse first;
  ASSERT_TRUE(ListLeads("last_name = \"Lovelace\"", "last_name desc", 1, "", &first).ok());
  const std::string token = first.next_page_token();
  ASSERT_FALSE(token.empty());

  crm::data::v1::ListLeadsResponse response;
  EXPECT_TRUE(ListLeads("last_name = \"Lovelace\"", "last_name desc", 5, token, &response).ok())
      << "page_size may change between pages";
  EXPECT_EQ(2, response.leads_size());
  EXPECT_TRUE(response.next_page_token().empty()) << "empty next_page_token ends the listing";

  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            ListLeads("last_name = \"Turing\"", "last_name desc", 1, token, &response).error_code())
      << "other filter";
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            ListLeads("last_name = \"Lovelace\"", "last_name", 1, token, &response).error_code())
      << "other order_by";
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            ListLeads("last_name = \"Lovelace\"", "last_name desc", 1, token, &response, other_token_).error_code())
      << "other organization";
  std::string tampered = token;
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            ListLeads("last_name = \"Lovelace\"", "last_name desc", 1, tampered, &response).error_code())
      << "tampered";

  crm::data::v1::ListContactsRequest contacts;
  contacts.set_filter("last_name = \"Lovelace\"");
  contacts.set_order_by("last_name desc");
  contacts.set_page_token(token);
  crm::data::v1::ListContactsResponse contacts_response;
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            crm().ListContacts(WithBearer(token_).get(), contacts, &contacts_response).error_code())
      << "other method";
}

// Pages through 1,000 leads while another thread creates and deletes
// leads: every lead that exists for the whole run is returned exactly once,
// and no lead is returned twice, in the default order and sorted by a
// field with many ties.
TEST_F(CrmApiTest, PagingUnderConcurrentWrites) {
  std::set<std::string> seeded;
  const char* names[] = {"Adams", "Baker", "Clark", "Davis", "Evans"};
  for (int i = 0; i < 1000; ++i) seeded.insert(NewLead(names[i % 5]).id());
  ASSERT_EQ(1000u, seeded.size());

  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  int created_by_writer = 0;
  int deleted_by_writer = 0;
  std::thread writer([&] {
    std::mt19937 random(11);
    std::vector<std::string> own;
    // Bounded: at most 3,000 writes, or until the reader is done.
    for (int i = 0; i < 3000 && !stop.load(); ++i) {
      if (own.empty() || random() % 3 != 0) {
        crm::data::v1::CreateLeadRequest create;
        create.mutable_lead()->set_last_name(names[random() % 5]);
        crm::data::v1::CreateLeadResponse created;
        if (crm().CreateLead(WithBearer(token_).get(), create, &created).ok()) {
          own.push_back(created.lead().id());
          ++created_by_writer;
        }
      } else {
        size_t index = random() % own.size();
        crm::data::v1::DeleteLeadRequest remove;
        remove.set_id(own[index]);
        crm::data::v1::DeleteLeadResponse removed;
        if (crm().DeleteLead(WithBearer(token_).get(), remove, &removed).ok()) ++deleted_by_writer;
        own.erase(own.begin() + index);
      }
      ++writes;
    }
  });

  for (const char* order_by : {"", "last_name desc"}) {
    std::set<std::string> seen;
    int repeated = 0;
    std::string page_token;
    int pages = 0;
    do {
      crm::data::v1::ListLeadsResponse response;
      grpc::Status status = ListLeads("", order_by, 37, page_token, &response);
      ASSERT_TRUE(status.ok()) << status.error_message();
      for (const Lead& lead : response.leads()) {
        if (!seen.insert(lead.id()).second) ++repeated;
      }
      page_token = response.next_page_token();
      ++pages;
      // Let the writer interleave with the pages.
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    } while (!page_token.empty() && pages < 500);
    EXPECT_EQ(0, repeated) << "order_by=" << order_by;
    int missing = 0;
    for (const std::string& id : seeded) missing += seen.contains(id) ? 0 : 1;
    EXPECT_EQ(0, missing) << "order_by=" << order_by;
  }
  stop = true;
  writer.join();
  EXPECT_GT(writes.load(), 20) << "the writer must overlap the paging";
  ASSERT_GT(created_by_writer, deleted_by_writer);

  // More than 1,000 leads now exist: a huge page is capped at 1,000, and a
  // missing page_size means 50.
  crm::data::v1::ListLeadsResponse capped;
  ASSERT_TRUE(ListLeads("", "", 5000, "", &capped).ok());
  EXPECT_EQ(1000, capped.leads_size());
  EXPECT_FALSE(capped.next_page_token().empty());
  crm::data::v1::ListLeadsResponse default_page;
  ASSERT_TRUE(ListLeads("", "", 0, "", &default_page).ok());
  EXPECT_EQ(50, default_page.leads_size());
}

TEST_F(CrmApiTest, UpdateChecksEtag) {
  Lead lead = NewLead("Lovelace");
  EXPECT_FALSE(lead.etag().empty());

  crm::data::v1::UpdateLeadRequest update;
  update.mutable_lead()->set_id(lead.id());
  update.mutable_lead()->set_etag(lead.etag());
  update.mutable_lead()->set_title("Countess");
  crm::data::v1::UpdateLeadResponse updated;
  ASSERT_TRUE(crm().UpdateLead(WithBearer(token_).get(), update, &updated).ok());
  EXPECT_NE(lead.etag(), updated.lead().etag());

  // The same etag again is stale now.
  update.mutable_lead()->set_title("Mathematician");
  crm::data::v1::UpdateLeadResponse rejected;
  EXPECT_EQ(grpc::StatusCode::ABORTED, crm().UpdateLead(WithBearer(token_).get(), update, &rejected).error_code());
  crm::data::v1::GetLeadRequest get;
  get.set_id(lead.id());
  crm::data::v1::GetLeadResponse got;
  ASSERT_TRUE(crm().GetLead(WithBearer(token_).get(), get, &got).ok());
  EXPECT_EQ("Countess", got.lead().title()) << "an aborted update changes nothing";
  EXPECT_EQ(updated.lead().etag(), got.lead().etag());

  // Without an etag the last writer wins.
  update.mutable_lead()->clear_etag();
  ASSERT_TRUE(crm().UpdateLead(WithBearer(token_).get(), update, &updated).ok());
  EXPECT_EQ("Mathematician", updated.lead().title());

  update.mutable_lead()->set_etag("W/\"x\"");
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            crm().UpdateLead(WithBearer(token_).get(), update, &rejected).error_code());
  crm::data::v1::UpdateLeadRequest mask_etag;
  mask_etag.mutable_lead()->set_id(lead.id());
  mask_etag.mutable_update_mask()->add_paths("etag");
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            crm().UpdateLead(WithBearer(token_).get(), mask_etag, &rejected).error_code());
}

TEST_F(CrmApiTest, DeleteChecksEtag) {
  Lead lead = NewLead("Lovelace");
  crm::data::v1::UpdateLeadRequest update;
  update.mutable_lead()->set_id(lead.id());
  update.mutable_lead()->set_title("Countess");
  crm::data::v1::UpdateLeadResponse updated;
  ASSERT_TRUE(crm().UpdateLead(WithBearer(token_).get(), update, &updated).ok());

  crm::data::v1::DeleteLeadRequest remove;
  remove.set_id(lead.id());
  remove.set_etag(lead.etag());
  crm::data::v1::DeleteLeadResponse removed;
  EXPECT_EQ(grpc::StatusCode::ABORTED, crm().DeleteLead(WithBearer(token_).get(), remove, &removed).error_code());
  crm::data::v1::GetLeadRequest get;
  get.set_id(lead.id());
  crm::data::v1::GetLeadResponse got;
  EXPECT_TRUE(crm().GetLead(WithBearer(token_).get(), get, &got).ok()) << "a stale delete deletes nothing";

  remove.set_etag(updated.lead().etag());
  EXPECT_TRUE(crm().DeleteLead(WithBearer(token_).get(), remove, &removed).ok());
  EXPECT_EQ(grpc::StatusCode::NOT_FOUND, crm().GetLead(WithBearer(token_).get(), get, &got).error_code());
}

TEST_F(CrmApiTest, ImmutableFieldsCannotChange) {
  crm::data::v1::CreateMessageRequest create;
  Message& message = *create.mutable_message();
  message.set_channel(crm::data::v1::MESSAGE_CHANNEL_EMAIL);
  message.set_direction(crm::data::v1::MESSAGE_DIRECTION_INBOUND);
  message.set_sender("a@example.com");
  message.set_recipient("b@example.com");
  crm::data::v1::CreateMessageResponse created;
  ASSERT_TRUE(crm().CreateMessage(WithBearer(token_).get(), create, &created).ok());

  crm::data::v1::UpdateMessageRequest update;
  update.mutable_message()->set_id(created.message().id());
  update.mutable_message()->set_channel(crm::data::v1::MESSAGE_CHANNEL_SMS);
  update.mutable_update_mask()->add_paths("channel");
  crm::data::v1::UpdateMessageResponse updated;
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            crm().UpdateMessage(WithBearer(token_).get(), update, &updated).error_code());

  // Without a mask the stored value may be repeated but not changed.
  update.clear_update_mask();
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            crm().UpdateMessage(WithBearer(token_).get(), update, &updated).error_code());
  update.mutable_message()->set_channel(crm::data::v1::MESSAGE_CHANNEL_EMAIL);
  update.mutable_message()->set_body("edited");
  EXPECT_TRUE(crm().UpdateMessage(WithBearer(token_).get(), update, &updated).ok());
  EXPECT_EQ("edited", updated.message().body());
}

TEST_F(CrmApiTest, RequestIdMakesCreateIdempotent) {
  const std::string request_id = "7f9c24e5-3b1a-4c8e-9d2f-0a6b5c4d3e21";
  crm::data::v1::CreateLeadRequest create;
  create.mutable_lead()->set_last_name("Lovelace");
  create.set_request_id(request_id);
  crm::data::v1::CreateLeadResponse first;
  ASSERT_TRUE(crm().CreateLead(WithBearer(token_).get(), create, &first).ok());

  crm::data::v1::CreateLeadResponse retry;
  create.set_request_id("7F9C24E5-3B1A-4C8E-9D2F-0A6B5C4D3E21");
  ASSERT_TRUE(crm().CreateLead(WithBearer(token_).get(), create, &retry).ok());
  EXPECT_EQ(first.lead().id(), retry.lead().id());
  EXPECT_EQ(first.lead().SerializeAsString(), retry.lead().SerializeAsString());
  EXPECT_EQ(1u, LeadIds("").size());

  // The same id in another module or organization is another request.
  crm::data::v1::CreateAccountRequest account;
  account.mutable_account()->set_name("Acme");
  account.set_request_id(request_id);
  crm::data::v1::CreateAccountResponse account_created;
  ASSERT_TRUE(crm().CreateAccount(WithBearer(token_).get(), account, &account_created).ok());
  crm::data::v1::CreateLeadResponse other;
  ASSERT_TRUE(crm().CreateLead(WithBearer(other_token_).get(), create, &other).ok());
  EXPECT_NE(first.lead().id(), other.lead().id());

  for (const char* malformed : {"not-a-uuid", "7f9c24e53b1a4c8e9d2f0a6b5c4d3e21", "7f9c24e5-3b1a-4c8e-9d2f-0a6b5c4d3e2g"}) {
    create.set_request_id(malformed);
    EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
              crm().CreateLead(WithBearer(token_).get(), create, &retry).error_code())
        << malformed;
  }
  EXPECT_EQ(1u, LeadIds("").size());
}

TEST_F(CrmApiTest, ConcurrentRetriesCreateOneRecord) {
  const std::string request_id = "0b6e8a52-9c4d-4f1e-8a3b-5d2c7e9f1a04";
  std::vector<std::thread> threads;
  std::vector<std::string> ids(8);
  std::vector<grpc::Status> statuses(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      crm::data::v1::CreateLeadRequest create;
      create.mutable_lead()->set_last_name("Retry");
      create.set_request_id(request_id);
      crm::data::v1::CreateLeadResponse response;
      statuses[i] = crm().CreateLead(WithBearer(token_).get(), create, &response);
      ids[i] = response.lead().id();
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(statuses[i].ok()) << statuses[i].error_code() << " " << statuses[i].error_message();
    EXPECT_EQ(ids[0], ids[i]);
  }
  EXPECT_EQ(1u, LeadIds("").size());
}

TEST(CreateRequestRetention, PurgedRequestIdCreatesAgain) {
  StackOptions options;
  options.adjust_crm_options = [](crm::data::CrmServerOptions& crm) {
    crm.create_request_retention = absl::Seconds(2);
    crm.create_request_purge_interval = absl::ZeroDuration();  // The test purges.
  };
  absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  std::string token = (*stack)->NewApp((*stack)->NewOrganization(), AllScopes()).access_token();
  crm::data::v1::CreateLeadRequest create;
  create.mutable_lead()->set_last_name("Lovelace");
  create.set_request_id("c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f");
  crm::data::v1::CreateLeadResponse first;
  ASSERT_TRUE((*stack)->crm().CreateLead(WithBearer(token).get(), create, &first).ok());

  // Within the retention the id is kept, and a purge leaves it.
  absl::StatusOr<int> purged = (*stack)->crm_server().PurgeCreateRequests();
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 0);
  crm::data::v1::CreateLeadResponse retry;
  ASSERT_TRUE((*stack)->crm().CreateLead(WithBearer(token).get(), create, &retry).ok());
  EXPECT_EQ(retry.lead().id(), first.lead().id());

  absl::SleepFor(absl::Milliseconds(2100));
  purged = (*stack)->crm_server().PurgeCreateRequests();
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 1);
  crm::data::v1::CreateLeadResponse late;
  ASSERT_TRUE((*stack)->crm().CreateLead(WithBearer(token).get(), create, &late).ok());
  EXPECT_NE(late.lead().id(), first.lead().id());
}

TEST_F(CrmApiTest, ReferencesMustNameSameOrganization) {
  Account own = NewAccount("Own");
  Account foreign = NewAccount("Foreign", other_token_);
  // An id that no organization uses: far beyond anything created here.
  const std::string unused = "999999999";

  Contact contact;
  contact.set_last_name("Hopper");
  contact.set_account_id(foreign.id());
  grpc::Status foreign_status = CreateContact(contact);
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, foreign_status.error_code());
  contact.set_account_id(unused);
  grpc::Status unused_status = CreateContact(contact);
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, unused_status.error_code());
  EXPECT_EQ(absl::StrReplaceAll(unused_status.error_message(), {{unused, foreign.id()}}),
            foreign_status.error_message())
      << "a foreign id must read exactly like an unused one";

  contact.set_account_id(own.id());
  Contact created;
  ASSERT_TRUE(CreateContact(contact, &created).ok());

  // Update checks a changed reference too.
  crm::data::v1::UpdateContactRequest update;
  update.mutable_contact()->set_id(created.id());
  update.mutable_contact()->set_account_id(foreign.id());
  crm::data::v1::UpdateContactResponse updated;
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            crm().UpdateContact(WithBearer(token_).get(), update, &updated).error_code());

  crm::data::v1::CreateOpportunityRequest opportunity;
  opportunity.mutable_opportunity()->set_name("Deal");
  opportunity.mutable_opportunity()->set_account_id(foreign.id());
  crm::data::v1::CreateOpportunityResponse opportunity_created;
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            crm().CreateOpportunity(WithBearer(token_).get(), opportunity, &opportunity_created).error_code());

  crm::data::v1::CreateActivityRequest activity;
  activity.mutable_activity()->set_type(crm::data::v1::ACTIVITY_TYPE_CALL);
  activity.mutable_activity()->set_subject("Call");
  activity.mutable_activity()->set_related_id(own.id());
  crm::data::v1::CreateActivityResponse activity_created;
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            crm().CreateActivity(WithBearer(token_).get(), activity, &activity_created).error_code())
      << "related_id without related_module";
  activity.mutable_activity()->set_related_module(crm::auth::v1::MODULE_OPPORTUNITY);
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            crm().CreateActivity(WithBearer(token_).get(), activity, &activity_created).error_code())
      << "the organization has no opportunities";
  activity.mutable_activity()->set_related_module(crm::auth::v1::MODULE_ACCOUNT);
  EXPECT_TRUE(crm().CreateActivity(WithBearer(token_).get(), activity, &activity_created).ok());

  crm::data::v1::CreateMessageRequest message;
  message.mutable_message()->set_channel(crm::data::v1::MESSAGE_CHANNEL_SMS);
  message.mutable_message()->set_direction(crm::data::v1::MESSAGE_DIRECTION_OUTBOUND);
  message.mutable_message()->set_sender("+100");
  message.mutable_message()->set_recipient("+200");
  message.mutable_message()->set_lead_id(NewLead("Foreign lead", crm::data::v1::LEAD_STATUS_NEW, other_token_).id());
  crm::data::v1::CreateMessageResponse message_created;
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            crm().CreateMessage(WithBearer(token_).get(), message, &message_created).error_code());
  message.mutable_message()->set_lead_id(NewLead("Own lead").id());
  message.mutable_message()->set_contact_id(created.id());
  EXPECT_TRUE(crm().CreateMessage(WithBearer(token_).get(), message, &message_created).ok());
}

TEST_F(CrmApiTest, DeleteAppliesReferenceRules) {
  Account account = NewAccount("Acme");
  Contact contact;
  contact.set_last_name("Hopper");
  contact.set_account_id(account.id());
  Contact created_contact;
  ASSERT_TRUE(CreateContact(contact, &created_contact).ok());
  crm::data::v1::CreateOpportunityRequest opportunity;
  opportunity.mutable_opportunity()->set_name("Deal");
  opportunity.mutable_opportunity()->set_account_id(account.id());
  crm::data::v1::CreateOpportunityResponse created_opportunity;
  ASSERT_TRUE(crm().CreateOpportunity(WithBearer(token_).get(), opportunity, &created_opportunity).ok());

  // Opportunity.account_id restricts: the account stays, and so does the
  // contact's reference.
  crm::data::v1::DeleteAccountRequest remove_account;
  remove_account.set_id(account.id());
  crm::data::v1::DeleteAccountResponse removed;
  grpc::Status restricted = crm().DeleteAccount(WithBearer(token_).get(), remove_account, &removed);
  EXPECT_EQ(grpc::StatusCode::FAILED_PRECONDITION, restricted.error_code());
  EXPECT_NE(restricted.error_message().find(created_opportunity.opportunity().id()), std::string::npos)
      << restricted.error_message();
  crm::data::v1::GetContactRequest get_contact;
  get_contact.set_id(created_contact.id());
  crm::data::v1::GetContactResponse got_contact;
  ASSERT_TRUE(crm().GetContact(WithBearer(token_).get(), get_contact, &got_contact).ok());
  EXPECT_EQ(account.id(), got_contact.contact().account_id());

  crm::data::v1::DeleteOpportunityRequest remove_opportunity;
  remove_opportunity.set_id(created_opportunity.opportunity().id());
  crm::data::v1::DeleteOpportunityResponse removed_opportunity;
  ASSERT_TRUE(crm().DeleteOpportunity(WithBearer(token_).get(), remove_opportunity, &removed_opportunity).ok());

  // Contact.account_id clears, in the same transaction as the delete.
  ASSERT_TRUE(crm().DeleteAccount(WithBearer(token_).get(), remove_account, &removed).ok());
  ASSERT_TRUE(crm().GetContact(WithBearer(token_).get(), get_contact, &got_contact).ok());
  EXPECT_EQ("", got_contact.contact().account_id());
  EXPECT_NE(created_contact.etag(), got_contact.contact().etag()) << "a cleared reference is a change";

  // A lead's messages lose lead_id and its activities lose both related fields.
  Lead lead = NewLead("Lovelace");
  crm::data::v1::CreateMessageRequest message;
  message.mutable_message()->set_channel(crm::data::v1::MESSAGE_CHANNEL_EMAIL);
  message.mutable_message()->set_direction(crm::data::v1::MESSAGE_DIRECTION_INBOUND);
  message.mutable_message()->set_sender("a@example.com");
  message.mutable_message()->set_recipient("b@example.com");
  message.mutable_message()->set_lead_id(lead.id());
  crm::data::v1::CreateMessageResponse created_message;
  ASSERT_TRUE(crm().CreateMessage(WithBearer(token_).get(), message, &created_message).ok());
  crm::data::v1::CreateActivityRequest activity;
  activity.mutable_activity()->set_type(crm::data::v1::ACTIVITY_TYPE_CALL);
  activity.mutable_activity()->set_subject("Call");
  activity.mutable_activity()->set_related_module(crm::auth::v1::MODULE_LEAD);
  activity.mutable_activity()->set_related_id(lead.id());
  crm::data::v1::CreateActivityResponse created_activity;
  ASSERT_TRUE(crm().CreateActivity(WithBearer(token_).get(), activity, &created_activity).ok());

  crm::data::v1::DeleteLeadRequest remove_lead;
  remove_lead.set_id(lead.id());
  crm::data::v1::DeleteLeadResponse removed_lead;
  ASSERT_TRUE(crm().DeleteLead(WithBearer(token_).get(), remove_lead, &removed_lead).ok());
  crm::data::v1::GetMessageRequest get_message;
  get_message.set_id(created_message.message().id());
  crm::data::v1::GetMessageResponse got_message;
  ASSERT_TRUE(crm().GetMessage(WithBearer(token_).get(), get_message, &got_message).ok());
  EXPECT_EQ("", got_message.message().lead_id());
  crm::data::v1::GetActivityRequest get_activity;
  get_activity.set_id(created_activity.activity().id());
  crm::data::v1::GetActivityResponse got_activity;
  ASSERT_TRUE(crm().GetActivity(WithBearer(token_).get(), get_activity, &got_activity).ok());
  EXPECT_EQ("", got_activity.activity().related_id());
  EXPECT_EQ(crm::auth::v1::MODULE_UNSPECIFIED, got_activity.activity().related_module());
}

TEST_F(CrmApiTest, ConvertLeadCreatesLinkedRecords) {
  crm::data::v1::CreateLeadRequest create;
  create.mutable_lead()->set_first_name("Ada");
  create.mutable_lead()->set_last_name("Lovelace");
  create.mutable_lead()->set_email("ada@example.com");
  create.mutable_lead()->set_company("Analytical Engines");
  crm::data::v1::CreateLeadResponse created;
  ASSERT_TRUE(crm().CreateLead(WithBearer(token_).get(), create, &created).ok());

  crm::data::v1::ConvertLeadRequest convert;
  convert.set_id(created.lead().id());
  convert.set_etag(created.lead().etag());
  convert.mutable_opportunity()->set_amount_micros(5000000);
  crm::data::v1::ConvertLeadResponse converted;
  grpc::Status status = crm().ConvertLead(WithBearer(token_).get(), convert, &converted);
  ASSERT_TRUE(status.ok()) << status.error_message();

  EXPECT_EQ(crm::data::v1::LEAD_STATUS_CONVERTED, converted.lead().status());
  EXPECT_EQ("Analytical Engines", converted.account().name());
  EXPECT_EQ("ada@example.com", converted.contact().email());
  EXPECT_EQ(converted.account().id(), converted.contact().account_id());
  EXPECT_EQ(converted.account().id(), converted.opportunity().account_id());
  EXPECT_EQ("Analytical Engines", converted.opportunity().name());
  EXPECT_EQ(converted.account().id(), converted.lead().converted_account_id());
  EXPECT_EQ(converted.contact().id(), converted.lead().converted_contact_id());
  EXPECT_EQ(converted.opportunity().id(), converted.lead().converted_opportunity_id());

  crm::data::v1::GetLeadRequest get;
  get.set_id(created.lead().id());
  crm::data::v1::GetLeadResponse got;
  ASSERT_TRUE(crm().GetLead(WithBearer(token_).get(), get, &got).ok());
  EXPECT_EQ(converted.lead().SerializeAsString(), got.lead().SerializeAsString()) << "the stored lead is returned";

  // Converting twice fails and creates nothing.
  convert.clear_etag();
  EXPECT_EQ(grpc::StatusCode::FAILED_PRECONDITION,
            crm().ConvertLead(WithBearer(token_).get(), convert, &converted).error_code());
  crm::data::v1::ListAccountsRequest list_accounts;
  crm::data::v1::ListAccountsResponse accounts;
  ASSERT_TRUE(crm().ListAccounts(WithBearer(token_).get(), list_accounts, &accounts).ok());
  EXPECT_EQ(1, accounts.accounts_size());

  // The lead's converted_* references follow the clear rule.
  crm::data::v1::DeleteOpportunityRequest remove;
  remove.set_id(converted.opportunity().id());
  crm::data::v1::DeleteOpportunityResponse removed;
  ASSERT_TRUE(crm().DeleteOpportunity(WithBearer(token_).get(), remove, &removed).ok());
  ASSERT_TRUE(crm().GetLead(WithBearer(token_).get(), get, &got).ok());
  EXPECT_EQ("", got.lead().converted_opportunity_id());
  EXPECT_EQ(converted.account().id(), got.lead().converted_account_id());
}

TEST_F(CrmApiTest, ConvertLeadIsAtomicAndChecked) {
  Lead lead = NewLead("Hopper");
  crm::data::v1::ConvertLeadRequest convert;
  convert.set_id(lead.id());
  // The contact is valid, the opportunity is not: nothing may be created.
  convert.mutable_opportunity()->set_currency_code("euro");
  crm::data::v1::ConvertLeadResponse converted;
  grpc::Status status = crm().ConvertLead(WithBearer(token_).get(), convert, &converted);
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, status.error_code());
  EXPECT_NE(status.error_message().find("opportunity: currency_code"), std::string::npos) << status.error_message();
  crm::data::v1::ListAccountsRequest list_accounts;
  crm::data::v1::ListAccountsResponse accounts;
  ASSERT_TRUE(crm().ListAccounts(WithBearer(token_).get(), list_accounts, &accounts).ok());
  EXPECT_EQ(0, accounts.accounts_size());
  crm::data::v1::ListContactsRequest list_contacts;
  crm::data::v1::ListContactsResponse contacts;
  ASSERT_TRUE(crm().ListContacts(WithBearer(token_).get(), list_contacts, &contacts).ok());
  EXPECT_EQ(0, contacts.contacts_size());

  // Without an opportunity: the account is named after the person.
  convert.clear_opportunity();
  convert.set_etag("999");
  EXPECT_EQ(grpc::StatusCode::ABORTED, crm().ConvertLead(WithBearer(token_).get(), convert, &converted).error_code());
  convert.clear_etag();
  ASSERT_TRUE(crm().ConvertLead(WithBearer(token_).get(), convert, &converted).ok());
  EXPECT_EQ("Hopper", converted.account().name());
  EXPECT_FALSE(converted.has_opportunity());
  EXPECT_EQ("", converted.lead().converted_opportunity_id());

  // Another organization's lead is not found; three of the four scopes are
  // not enough.
  convert.set_id(NewLead("Foreign", crm::data::v1::LEAD_STATUS_NEW, other_token_).id());
  EXPECT_EQ(grpc::StatusCode::NOT_FOUND, crm().ConvertLead(WithBearer(token_).get(), convert, &converted).error_code());
  std::string admin_key = stack_->NewOrganization("Scoped");
  std::string three_scopes =
      stack_
          ->NewApp(admin_key, {MakeScope(crm::auth::v1::MODULE_LEAD, crm::auth::v1::ACTION_UPDATE),
                               MakeScope(crm::auth::v1::MODULE_ACCOUNT, crm::auth::v1::ACTION_CREATE),
                               MakeScope(crm::auth::v1::MODULE_CONTACT, crm::auth::v1::ACTION_CREATE)})
          .access_token();
  EXPECT_EQ(grpc::StatusCode::PERMISSION_DENIED,
            crm().ConvertLead(WithBearer(three_scopes).get(), convert, &converted).error_code());
}

}  // namespace
}  // namespace crm::testing
