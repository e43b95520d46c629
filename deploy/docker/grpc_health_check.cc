// grpc_health_check: calls grpc.health.v1.Health/Check and exits 0 only when
// the server reports SERVING. The container images use it as HEALTHCHECK
// because Debian 12 packages no gRPC health probe (no grpc_health_probe, no
// grpcurl).
//
//   grpc_health_check [ADDRESS [SERVICE]]
//
// ADDRESS defaults to 127.0.0.1:50051 and SERVICE to "" (the whole server).
// Exit codes: 0 SERVING, 1 any other status or a failed call, 2 usage error.
//
// The request and response are encoded by hand, so the probe links only
// libgrpc++ and needs no generated code:
//   HealthCheckRequest  { string service = 1; }
//   HealthCheckResponse { ServingStatus status = 1; }  // SERVING is 1
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace {

constexpr char kCheckMethod[] = "/grpc.health.v1.Health/Check";
constexpr auto kDeadline = std::chrono::seconds(3);
constexpr uint64_t kServing = 1;

void AppendVarint(uint64_t value, std::string& out) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

std::optional<uint64_t> ReadVarint(const std::string& in, size_t& pos) {
  uint64_t value = 0;
  for (int shift = 0; shift < 64 && pos < in.size(); shift += 7) {
    uint8_t byte = static_cast<uint8_t>(in[pos++]);
    value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return value;
  }
  return std::nullopt;
}

std::string EncodeRequest(const std::string& service) {
  std::string out;
  if (service.empty()) return out;  // proto3 omits a default string
  out.push_back(0x0a);              // field 1, wire type 2 (length-delimited)
  AppendVarint(service.size(), out);
  out += service;
  return out;
}

// Returns the status field of a HealthCheckResponse, 0 (UNKNOWN) when it is
// absent, or nullopt when the bytes are not a valid message.
std::optional<uint64_t> DecodeStatus(const std::string& in) {
  uint64_t status = 0;
  size_t pos = 0;
  while (pos < in.size()) {
    std::optional<uint64_t> tag = ReadVarint(in, pos);
    if (!tag) return std::nullopt;
    uint64_t field = *tag >> 3;
    switch (*tag & 7) {
      case 0: {  // varint
        std::optional<uint64_t> value = ReadVarint(in, pos);
        if (!value) return std::nullopt;
        if (field == 1) status = *value;
        break;
      }
      case 1:  // 64-bit
        pos += 8;
        break;
      case 2: {  // length-delimited
        std::optional<uint64_t> length = ReadVarint(in, pos);
        if (!length || *length > in.size() - pos) return std::nullopt;
        pos += *length;
        break;
      }
      case 5:  // 32-bit
        pos += 4;
        break;
      default:
        return std::nullopt;
    }
    if (pos > in.size()) return std::nullopt;
  }
  return status;
}

std::string ToString(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const grpc::Slice& slice : slices) out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 3 || (argc > 1 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help"))) {
    std::cerr << "usage: grpc_health_check [ADDRESS [SERVICE]]\n"
                 "  Calls grpc.health.v1.Health/Check on ADDRESS (default 127.0.0.1:50051) for SERVICE\n"
                 "  (default \"\", the whole server) and exits 0 only when the answer is SERVING.\n";
    return 2;
  }
  const std::string address = argc > 1 ? argv[1] : "127.0.0.1:50051";
  const std::string service = argc > 2 ? argv[2] : "";

  std::shared_ptr<grpc::Channel> channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kDeadline);

  std::string request_bytes = EncodeRequest(service);
  grpc::Slice request_slice(request_bytes);
  grpc::ByteBuffer request(&request_slice, 1);
  grpc::ByteBuffer response;

  std::mutex mutex;
  std::condition_variable done_signal;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&context, kCheckMethod, grpc::StubOptions(), &request, &response, [&](grpc::Status result) {
    std::lock_guard<std::mutex> lock(mutex);
    status = std::move(result);
    done = true;
    done_signal.notify_one();
  });
  {
    std::unique_lock<std::mutex> lock(mutex);
    done_signal.wait(lock, [&] { return done; });
  }

  if (!status.ok()) {
    std::cerr << "grpc_health_check: Health/Check on " << address << " failed: code " << status.error_code() << ", "
              << status.error_message() << "\n";
    return 1;
  }
  std::optional<uint64_t> serving_status = DecodeStatus(ToString(response));
  if (!serving_status) {
    std::cerr << "grpc_health_check: invalid HealthCheckResponse from " << address << "\n";
    return 1;
  }
  if (*serving_status != kServing) {
    std::cerr << "grpc_health_check: " << address << " reports status " << *serving_status
              << " (1 is SERVING, 2 NOT_SERVING)\n";
    return 1;
  }
  return 0;
}
