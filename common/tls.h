// TLS settings of both servers: server credentials for the listeners,
// channel credentials for the CRM server's connection to the auth server,
// and the rule that plaintext is accepted only on loopback addresses unless
// the operator allows it explicitly.
//
// Files are PEM. Certificates are read once at start-up.
// TODO: reload certificates when their files change; today a renewed
// certificate takes effect only after a restart.
#ifndef CRM_COMMON_TLS_H_
#define CRM_COMMON_TLS_H_

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace crm {

// Files of a TLS listener. An empty cert_file means plaintext.
struct TlsServerFiles {
  std::string cert_file;  // Certificate chain, leaf first.
  std::string key_file;   // Private key of the leaf certificate.
  // CA bundle that client certificates must chain to. When set, the
  // listener requires and verifies a client certificate (mutual TLS).
  std::string client_ca_file;
};

// Files of a TLS client channel. An empty ca_file means plaintext.
struct TlsChannelFiles {
  std::string ca_file;    // CA bundle that the server certificate must chain to.
  std::string cert_file;  // Client certificate chain, for mutual TLS.
  std::string key_file;   // Private key of the client certificate.
  // Name to verify the server certificate against instead of the host in
  // the target, for targets such as ipv4:10.0.0.1:50053.
  std::string server_name;
};

// Builds listener credentials: insecure ones for an empty cert_file, TLS
// otherwise, with client certificates required and verified when
// client_ca_file is set. INVALID_ARGUMENT when key_file or cert_file is
// missing while the other is set, or when client_ca_file is set without a
// certificate; NOT_FOUND naming the path when a file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const TlsServerFiles& files);

// Builds channel credentials: insecure ones for an empty ca_file, TLS
// otherwise, presenting the client certificate when cert_file is set. The
// caller applies server_name (grpc::ChannelArguments::SetSslTargetNameOverride).
// INVALID_ARGUMENT for an incomplete set of files, NOT_FOUND for an
// unreadable one.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(const TlsChannelFiles& files);

// True for 127.0.0.0/8, ::1 and "localhost", with or without IPv6
// brackets.
bool IsLoopbackHost(absl::string_view host);

// True when every address in a gRPC target is a loopback address: forms
// such as "127.0.0.1:50053", "localhost:50053", "[::1]:50053" and
// "ipv4:127.0.0.1:50053,127.0.0.1:50063". DNS names other than localhost
// and unknown schemes are not loopback.
bool IsLoopbackTarget(absl::string_view target);

// Returns FAILED_PRECONDITION naming `what` and the flags to set when a
// plaintext endpoint is not loopback and `allow_insecure_plaintext` is
// false; OK otherwise.
absl::Status CheckPlaintextAllowed(absl::string_view what, bool loopback, bool allow_insecure_plaintext);

}  // namespace crm

#endif  // CRM_COMMON_TLS_H_
