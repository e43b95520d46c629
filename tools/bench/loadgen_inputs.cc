// Seed file readers and the client channels of the load generator.
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tools/bench/loadgen_scenario.h"

namespace crm::bench {
namespace {

// Calls `parse` with the space-separated fields of each non-empty line of
// `path`. `parse` returns false for a malformed line.
absl::Status ForEachLine(const std::string& path, const std::function<bool(const std::vector<std::string>&)>& parse) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string line;
  int number = 0;
  while (std::getline(file, line)) {
    ++number;
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty()) continue;
    std::vector<std::string> fields = absl::StrSplit(text, ' ', absl::SkipEmpty());
    if (!parse(fields)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", number, ": malformed line \"", text, "\""));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<AppToken>> ReadTokens(const std::string& path) {
  std::vector<AppToken> tokens;
  absl::Status read = ForEachLine(path, [&](const std::vector<std::string>& fields) {
    AppToken token;
    if (fields.size() != 3 || !absl::SimpleAtoi(fields[0], &token.organization_id)) return false;
    token.app_id = fields[1];
    token.token = fields[2];
    tokens.push_back(std::move(token));
    return true;
  });
  if (!read.ok()) return read;
  return tokens;
}

absl::StatusOr<std::unordered_map<uint64_t, LeadRange>> ReadLeadRanges(const std::string& path) {
  std::unordered_map<uint64_t, LeadRange> ranges;
  absl::Status read = ForEachLine(path, [&](const std::vector<std::string>& fields) {
    uint64_t organization_id = 0;
    LeadRange range;
    if (fields.size() != 3 || !absl::SimpleAtoi(fields[0], &organization_id) ||
        !absl::SimpleAtoi(fields[1], &range.first_id) || !absl::SimpleAtoi(fields[2], &range.count) ||
        range.first_id == 0 || range.count < 0) {
      return false;
    }
    ranges[organization_id] = range;
    return true;
  });
  if (!read.ok()) return read;
  return ranges;
}

absl::StatusOr<std::vector<AdminKey>> ReadAdminKeys(const std::string& path) {
  std::vector<AdminKey> keys;
  absl::Status read = ForEachLine(path, [&](const std::vector<std::string>& fields) {
    AdminKey key;
    if (fields.size() != 2 || !absl::SimpleAtoi(fields[0], &key.organization_id)) return false;
    key.key = fields[1];
    keys.push_back(std::move(key));
    return true;
  });
  if (!read.ok()) return read;
  return keys;
}

Channels::Channels(const std::string& target, int count) : target_(target) {
  for (int i = 0; i < count; ++i) {
    grpc::ChannelArguments arguments;
    // Channels with equal arguments would share one connection.
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    std::shared_ptr<grpc::Channel> channel =
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), arguments);
    crm_.push_back(crm::data::v1::CrmService::NewStub(channel));
    tokens_.push_back(crm::auth::v1::TokenService::NewStub(channel));
    apps_.push_back(crm::auth::v1::PrivateAppService::NewStub(channel));
    channels_.push_back(std::move(channel));
  }
  status_ = crm::data::v1::CrmStatusService::NewStub(channels_.front());
}

absl::Status Channels::WaitForConnected(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  for (const std::shared_ptr<grpc::Channel>& channel : channels_) {
    if (!channel->WaitForConnected(absl::ToChronoTime(deadline))) {
      return absl::UnavailableError(
          absl::StrCat("cannot connect to ", target_, " within ", absl::FormatDuration(timeout)));
    }
  }
  return absl::OkStatus();
}

void SetTimeout(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

}  // namespace crm::bench
