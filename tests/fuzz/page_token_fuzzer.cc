// Fuzzes the page token codec in common/page_token.h.
//
// Properties checked on every input:
//   - Decoding the input itself, as either token form, fails, or the
//     decoded value re-encodes to exactly the input.
//   - Tokens built from the input's request scope, id and position decode
//     to the same values for the same scope only, and each form is
//     rejected by the other form's decoder.
//   - An edited token (a character replaced, inserted or removed, or the
//     token cut short, as the input directs) never decodes: no two texts
//     decode to the same position, so a token cannot be altered to pass.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/page_token.h"
#include "tests/fuzz/fuzz_check.h"

namespace crm {
namespace {

// Reads the input front to back. Past the end every read returns zeros or
// an empty string, so any input is a complete set of choices.
class InputReader {
 public:
  explicit InputReader(absl::string_view input) : input_(input) {}

  uint8_t Byte() {
    if (input_.empty()) return 0;
    uint8_t byte = static_cast<uint8_t>(input_[0]);
    input_.remove_prefix(1);
    return byte;
  }

  uint64_t Uint64() {
    uint64_t value = 0;
    for (int i = 0; i < 8; ++i) value = (value << 8) | Byte();
    return value;
  }

  // A string of up to `max_bytes`, its length given by the next byte.
  std::string String(size_t max_bytes) {
    size_t length = std::min<size_t>(Byte(), max_bytes);
    length = std::min(length, input_.size());
    std::string text(input_.substr(0, length));
    input_.remove_prefix(length);
    return text;
  }

  std::string Rest() { return std::string(input_); }

 private:
  absl::string_view input_;
};

const PageTokenCodec& Codec() {
  static const PageTokenCodec* codec = new PageTokenCodec(std::string(32, '\x5a'));
  return *codec;
}

void CheckRawInput(absl::string_view input, absl::string_view scope) {
  if (absl::StatusOr<uint64_t> id = Codec().Decode(scope, input); id.ok()) {
    FUZZ_CHECK(Codec().Encode(scope, *id) == input, "a decoded page token re-encodes differently");
  }
  if (absl::StatusOr<std::string> position = Codec().DecodePosition(scope, input); position.ok()) {
    FUZZ_CHECK(Codec().EncodePosition(scope, *position) == input, "a decoded position token re-encodes differently");
  }
}

// Applies one edit chosen by the reader to `token`.
std::string Edit(const std::string& token, InputReader& reader) {
  std::string edited = token;
  size_t at = token.empty() ? 0 : (static_cast<size_t>(reader.Byte()) << 8 | reader.Byte()) % token.size();
  char c = static_cast<char>(reader.Byte());
  switch (reader.Byte() % 4) {
    case 0:
      if (!edited.empty()) edited[at] = c;
      break;
    case 1:
      edited.insert(edited.begin() + at, c);
      break;
    case 2:
      if (!edited.empty()) edited.erase(at, 1);
      break;
    default:
      edited.resize(at);
      break;
  }
  return edited;
}

void CheckRoundTrips(InputReader& reader) {
  std::string scope = reader.String(64);
  uint64_t id = reader.Uint64();
  std::string position = reader.String(255);
  std::string other_scope = scope + "\x01";

  std::string id_token = Codec().Encode(scope, id);
  absl::StatusOr<uint64_t> decoded_id = Codec().Decode(scope, id_token);
  FUZZ_CHECK(decoded_id.ok() && *decoded_id == id, "an id token does not decode to its id");
  FUZZ_CHECK(!Codec().Decode(other_scope, id_token).ok(), "an id token decodes for another request");
  FUZZ_CHECK(!Codec().DecodePosition(scope, id_token).ok(), "an id token decodes as a position token");

  std::string position_token = Codec().EncodePosition(scope, position);
  absl::StatusOr<std::string> decoded_position = Codec().DecodePosition(scope, position_token);
  FUZZ_CHECK(decoded_position.ok() && *decoded_position == position,
             "a position token does not decode to its position");
  FUZZ_CHECK(!Codec().DecodePosition(other_scope, position_token).ok(),
             "a position token decodes for another request");
  FUZZ_CHECK(!Codec().Decode(scope, position_token).ok(), "a position token decodes as an id token");

  std::string edited_id_token = Edit(id_token, reader);
  if (edited_id_token != id_token) {
    FUZZ_CHECK(!Codec().Decode(scope, edited_id_token).ok(),
               absl::StrCat("an edited id token decodes: ", id_token, " -> ", edited_id_token));
  }
  std::string edited_position_token = Edit(position_token, reader);
  if (edited_position_token != position_token) {
    FUZZ_CHECK(!Codec().DecodePosition(scope, edited_position_token).ok(),
               absl::StrCat("an edited position token decodes: ", position_token, " -> ", edited_position_token));
  }
}

}  // namespace
}  // namespace crm

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view input(reinterpret_cast<const char*>(data), size);
  crm::CheckRawInput(input, "crm.data.v1.CrmService/ListLeads");
  crm::InputReader reader(input);
  crm::CheckRoundTrips(reader);
  return 0;
}
