// Records the CrmService calls made with an app's token and sends them to
// the auth service's API call log (TokenService.ReportApiCalls), which
// PrivateAppService.ListApiCalls lists.
//
// Record() runs as a call finishes and only appends to an in-memory buffer
// under a mutex: the request path never waits for the network or the
// database. The buffer holds at most kMaxBufferedCalls calls; a call
// recorded while it is full is dropped and counted (dropped(), the metric
// crm_api_call_log_dropped_total and a warning at the next flush), so an
// unreachable auth service neither blocks callers nor grows memory without
// bound.
//
// A background thread sends the buffer in reports of at most
// kMaxCallsPerReport calls every flush interval (1 second by default), and
// at once when kFlushThreshold calls wait. A failed report goes back to the
// front of the buffer and is retried at the next flush. The destructor
// stops the thread and sends what is left, waiting at most 2 seconds, so a
// graceful shutdown loses no calls while the auth service answers. Calls
// still buffered when the process crashes are lost, and a report whose
// response is lost after it was stored is stored again by the retry.
#ifndef CRM_SERVICES_CRM_API_CALL_LOG_H_
#define CRM_SERVICES_CRM_API_CALL_LOG_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/periodic_task.h"
#include "crm/auth/v1/token_service.grpc.pb.h"

namespace crm::data {

// One finished call made with an app's token.
struct RecordedApiCall {
  uint64_t organization_id = 0;
  uint64_t app_id = 0;
  // Full gRPC method name; must outlive the recorder (CrmServiceImpl's
  // method specs do).
  absl::string_view method;
  // A grpc::StatusCode value.
  int code = 0;
  // When the call arrived.
  absl::Time call_time;
  absl::Duration latency;
  // The client's IP address without port, such as "127.0.0.1".
  std::string peer_address;
};

class ApiCallRecorder {
 public:
  // Calls the buffer holds; more are dropped until a report makes room.
  // At about 150 bytes per call, at most about 15 MB.
  static constexpr size_t kMaxBufferedCalls = 100000;
  // Buffered calls that wake the thread before the interval ends.
  static constexpr size_t kFlushThreshold = 1000;
  // Calls per ReportApiCalls request; the auth service accepts no more.
  static constexpr size_t kMaxCallsPerReport = 1000;

  // `flush_interval` of zero or less sends reports only through Flush()
  // and at destruction.
  ApiCallRecorder(std::shared_ptr<grpc::Channel> auth_channel, absl::Duration flush_interval);
  ~ApiCallRecorder();

  ApiCallRecorder(const ApiCallRecorder&) = delete;
  ApiCallRecorder& operator=(const ApiCallRecorder&) = delete;

  void Start();

  // Buffers `call`, or drops and counts it when the buffer is full.
  void Record(RecordedApiCall call);

  // Sends every buffered call now, in reports of kMaxCallsPerReport, all
  // within `timeout`. On the first failed report, keeps that report and
  // the rest for the next flush and returns UNAVAILABLE.
  absl::Status Flush(absl::Duration timeout = absl::Seconds(10));

  int64_t dropped() const;
  int64_t reported() const;
  size_t buffered() const;

 private:
  // The flush thread's task: reports, and logs failures and new drops.
  void ReportPending();
  // Sends `calls` in one ReportApiCalls request.
  grpc::Status Send(const std::vector<RecordedApiCall>& calls, absl::Time deadline);

  std::unique_ptr<crm::auth::v1::TokenService::Stub> stub_;
  const absl::Duration flush_interval_;

  mutable absl::Mutex mu_;
  std::vector<RecordedApiCall> pending_ ABSL_GUARDED_BY(mu_);
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t reported_ ABSL_GUARDED_BY(mu_) = 0;
  // Drops already logged; read and written by the flush thread only.
  int64_t logged_drops_ = 0;
  // Serializes the flush thread's reports with those of Flush() callers,
  // so a failed report is put back before the next report starts.
  absl::Mutex flush_mu_;
  // Last, so that its thread stops before the members it uses go.
  PeriodicTask flusher_;
};

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_API_CALL_LOG_H_
