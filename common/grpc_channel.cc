#include "common/grpc_channel.h"

#include <grpcpp/generic/generic_stub.h>

#include <algorithm>
#include <utility>

#include "absl/base/call_once.h"
#include "absl/flags/flag.h"
#include "common/tls_config.h"

ABSL_FLAG(absl::Duration, grpc_keepalive_time, absl::Seconds(10),
          "gRPC between the processes: a keepalive ping after this long without a frame on a "
          "connection (0: none).");
ABSL_FLAG(absl::Duration, grpc_keepalive_timeout, absl::Seconds(5),
          "gRPC between the processes: a connection whose keepalive ping is not answered "
          "within this is dropped, failing its calls with UNAVAILABLE.");

namespace dsv3 {
namespace {

int Millis(absl::Duration d) {
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 1, INT32_MAX));
}

// gRPC 1.51 (Debian's) runs every callback-API call of a process on one shared completion
// queue with threads of its own (its poller has none in the background). The queue goes
// when the last channel that used it goes; when that happens on one of the queue's threads
// (the last call to a worker the router has dropped ends, and its context lets the channel
// go), the queue is freed under the running thread and the process aborts. So a process
// keeps one channel that used the queue for its lifetime, and the queue never goes.
void KeepTheCallbackQueue() {
  static absl::once_flag once;
  absl::call_once(once, [] {
    struct Keeper {
      std::shared_ptr<grpc::Channel> channel;
      grpc::ClientContext context;
      grpc::ByteBuffer request;
      grpc::ByteBuffer response;
    };
    static Keeper* const keeper = new Keeper;  // never freed, and reachable: not a leak
    // A call that goes nowhere and ends at once; making it ties the channel to the queue.
    keeper->channel = grpc::CreateChannel("unix:/dev/null/dsv3-callback-queue-keeper",
                                          grpc::InsecureChannelCredentials());
    keeper->context.set_deadline(std::chrono::system_clock::now());
    grpc::Slice empty("");
    keeper->request = grpc::ByteBuffer(&empty, 1);  // a message, if an empty one
    grpc::GenericStub stub(keeper->channel);
    stub.UnaryCall(&keeper->context, "/dsv3.CallbackQueue/Keep", grpc::StubOptions(),
                   &keeper->request, &keeper->response, [](const grpc::Status&) {});
  });
}

}  // namespace

KeepaliveOptions KeepaliveFromFlags() {
  return {absl::GetFlag(FLAGS_grpc_keepalive_time), absl::GetFlag(FLAGS_grpc_keepalive_timeout)};
}

std::shared_ptr<grpc::Channel> ClusterChannel(const std::string& address) {
  return ClusterChannel(address, KeepaliveFromFlags());
}

std::shared_ptr<grpc::Channel> ClusterChannel(const std::string& address,
                                              const KeepaliveOptions& keepalive) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  if (keepalive.time > absl::ZeroDuration()) {
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, Millis(keepalive.time));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Millis(keepalive.timeout));
    // Idle connections too (a worker's WatchLoad stream may be all there is), and without
    // gRPC's default cap of two pings between data frames.
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  }
  KeepTheCallbackQueue();
  // One set of credentials per process: with TLS it watches the certificate files.
  static const TlsConfig* const tls = new TlsConfig(TlsFromFlags(/*internal_api=*/false));
  static const std::shared_ptr<grpc::ChannelCredentials> credentials = GrpcChannelCredentials(*tls);
  AddTlsChannelArgs(*tls, args);
  return grpc::CreateCustomChannel(address, credentials, args);
}

void ConfigureServerKeepalive(grpc::ServerBuilder& builder, const KeepaliveOptions& keepalive) {
  if (keepalive.time <= absl::ZeroDuration()) return;
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, Millis(keepalive.time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Millis(keepalive.timeout));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // gRPC servers answer pings more often than every 5 minutes with GOAWAY (too_many_pings)
  // by default; ClusterChannel pings every `time`.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             Millis(std::min(keepalive.time, absl::Seconds(1))));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
}

}  // namespace dsv3
