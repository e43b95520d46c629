#include "common/tls.h"

#include <grpcpp/grpcpp.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace crm {
namespace {

absl::StatusOr<std::string> ReadPem(absl::string_view flag, const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot read ", flag, " ", path));
  std::stringstream contents;
  contents << file.rdbuf();
  if (contents.str().find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, " contains no PEM block"));
  }
  return contents.str();
}

// Removes the port from "host:port" or "[v6]:port"; leaves a bare host.
absl::string_view HostOfAddress(absl::string_view address) {
  if (absl::StartsWith(address, "[")) {
    size_t end = address.find(']');
    return end == absl::string_view::npos ? address : address.substr(1, end - 1);
  }
  // More than one colon without brackets is a bare IPv6 address.
  size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || address.find(':') != colon) return address;
  return address.substr(0, colon);
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const TlsServerFiles& files) {
  if (files.cert_file.empty() != files.key_file.empty()) {
    return absl::InvalidArgumentError("set both --tls_cert_file and --tls_key_file, or neither");
  }
  if (files.cert_file.empty()) {
    if (!files.client_ca_file.empty()) {
      return absl::InvalidArgumentError("--tls_client_ca_file needs --tls_cert_file and --tls_key_file");
    }
    return grpc::InsecureServerCredentials();
  }
  absl::StatusOr<std::string> cert = ReadPem("--tls_cert_file", files.cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem("--tls_key_file", files.key_file);
  if (!key.ok()) return key.status();

  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_key_cert_pairs.push_back({*std::move(key), *std::move(cert)});
  if (!files.client_ca_file.empty()) {
    absl::StatusOr<std::string> client_ca = ReadPem("--tls_client_ca_file", files.client_ca_file);
    if (!client_ca.ok()) return client_ca.status();
    options.pem_root_certs = *std::move(client_ca);
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(const TlsChannelFiles& files) {
  if (files.cert_file.empty() != files.key_file.empty()) {
    return absl::InvalidArgumentError("set both --auth_tls_cert_file and --auth_tls_key_file, or neither");
  }
  if (files.ca_file.empty()) {
    if (!files.cert_file.empty() || !files.server_name.empty()) {
      return absl::InvalidArgumentError(
          "--auth_tls_cert_file, --auth_tls_key_file and --auth_tls_server_name need --auth_tls_ca_file");
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions options;
  absl::StatusOr<std::string> ca = ReadPem("--auth_tls_ca_file", files.ca_file);
  if (!ca.ok()) return ca.status();
  options.pem_root_certs = *std::move(ca);
  if (!files.cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPem("--auth_tls_cert_file", files.cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPem("--auth_tls_key_file", files.key_file);
    if (!key.ok()) return key.status();
    options.pem_cert_chain = *std::move(cert);
    options.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(options);
}

bool IsLoopbackHost(absl::string_view host) {
  host = absl::StripPrefix(absl::StripSuffix(host, "]"), "[");
  if (host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1") return true;
  std::vector<absl::string_view> octets = absl::StrSplit(host, '.');
  if (octets.size() != 4) return false;
  for (absl::string_view octet : octets) {
    int value = 0;
    if (octet.empty() || !absl::SimpleAtoi(octet, &value) || value < 0 || value > 255) return false;
  }
  return octets[0] == "127";
}

bool IsLoopbackTarget(absl::string_view target) {
  absl::string_view addresses = target;
  if (absl::ConsumePrefix(&addresses, "dns:///") || absl::ConsumePrefix(&addresses, "ipv4:") ||
      absl::ConsumePrefix(&addresses, "ipv6:")) {
    // One of the schemes that name hosts; the rest is a list of addresses.
  } else if (absl::StartsWith(addresses, "unix:")) {
    return true;  // A unix socket never leaves the machine.
  } else if (addresses.find("://") != absl::string_view::npos) {
    return false;
  }
  if (addresses.empty()) return false;
  for (absl::string_view address : absl::StrSplit(addresses, ',')) {
    if (!IsLoopbackHost(HostOfAddress(address))) return false;
  }
  return true;
}

absl::Status CheckPlaintextAllowed(absl::string_view what, bool loopback, bool allow_insecure_plaintext) {
  if (loopback || allow_insecure_plaintext) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      what, " would use plaintext on a non-loopback address; configure TLS (see the --tls_* flags) or set "
            "--allow_insecure_plaintext if the network is protected otherwise"));
}

}  // namespace crm
