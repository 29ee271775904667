// expert_dispatch_bench: the UCX expert all-to-all's cost per MoE layer (dispatch + combine,
// expert computation excluded) between two processes on this machine, beside a raw UCX
// active-message ping-pong of the same bytes in the same run (issue 6, RESULTS.md).
//
//   expert_dispatch_bench [--tokens 1,8,64] [--hidden 7168] [--top_k 8] [--transports tcp,shm]
//
// The target process is an expert worker's transport end (UcxExpertServer + a compute
// thread that answers every dispatch with ready outputs) and a raw echo handler; the
// initiator runs UcxExpertClient::Exchange + SlotOutputRows (what an attention worker does per
// layer) and, alternating with it, the raw ping-pong: an active message of the dispatch's
// bytes answered, from the UCX callback, by one of the combine's bytes.

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "bench/kv_transfer_bench_proc.h"
#include "common/mutex_mode.h"
#include "experts/dispatch_plan.h"
#include "experts/expert_placement.h"
#include "transport/ucx/ucx_expert_client.h"
#include "transport/ucx/ucx_expert_server.h"
#include "transport/ucx/ucx_peer.h"

ABSL_FLAG(std::string, role, "initiator", "initiator (default) or target (internal)");
ABSL_FLAG(std::string, tokens, "1,8,64", "tokens per MoE layer exchange");
ABSL_FLAG(int, hidden, 7168, "hidden size (DeepSeek-V3: 7168)");
ABSL_FLAG(int, top_k, 8, "experts per token (DeepSeek-V3: 8), all on the one expert worker");
ABSL_FLAG(std::string, transports, "tcp,shm", "tcp (loopback sockets) and/or shm");
ABSL_FLAG(int, rounds, 5, "rounds, ours and raw alternating");
ABSL_FLAG(double, seconds_per_round, 0.4, "time per configuration per round");
ABSL_FLAG(std::string, tls, "", "target: UCX_TLS");
ABSL_FLAG(std::string, net_devices, "", "target: UCX_NET_DEVICES");
ABSL_FLAG(bool, peer_error_handling, true, "target: UcxOptions.peer_error_handling");

namespace dsv3::bench {
namespace {

constexpr unsigned kRawRequestAm = 24;
constexpr unsigned kRawReplyAm = 25;

struct RawHeader {
  uint64_t seq = 0;
  uint64_t reply_bytes = 0;
};

void FreeRequest(void* request, ucs_status_t, void*) { ucp_request_free(request); }

// ---- target -------------------------------------------------------------------------------

struct RawEcho {
  transport::UcxContext* ucx = nullptr;
  std::shared_ptr<transport::UcxPeer> client;  // set once the initiator joined
  std::vector<char> reply;                     // the bytes every answer carries
  std::vector<char> scratch;                   // where rendezvous requests land
};

void SendRawReply(RawEcho* echo, const RawHeader& h) {
  if (echo->reply.size() < h.reply_bytes) echo->reply.resize(h.reply_bytes);
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK;
  p.cb.send = FreeRequest;
  // The header must outlive the send: keep one per sequence number in a static ring.
  static RawHeader ring[64];
  RawHeader* hdr = &ring[h.seq % 64];
  *hdr = h;
  (void)echo->client->Post([&](ucp_ep_h ep) {
    return ucp_am_send_nbx(ep, kRawReplyAm, hdr, sizeof(*hdr), echo->reply.data(), h.reply_bytes,
                           &p);
  });
}

ucs_status_t OnRawRequest(void* arg, const void* header, size_t, void* data, size_t length,
                          const ucp_am_recv_param_t* param) {
  auto* echo = static_cast<RawEcho*>(arg);
  RawHeader h;
  std::memcpy(&h, header, sizeof(h));
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) == 0) {
    SendRawReply(echo, h);
    return UCS_OK;
  }
  if (echo->scratch.size() < length) echo->scratch.resize(length);
  echo->ucx->ReceiveAmData(data, echo->scratch.data(), length, [echo, h](absl::Status status) {
    if (status.ok()) SendRawReply(echo, h);
  });
  return UCS_OK;
}

int RunTarget() {
  transport::UcxOptions options;
  options.transports = absl::GetFlag(FLAGS_tls);
  options.net_devices = absl::GetFlag(FLAGS_net_devices);
  options.peer_error_handling = absl::GetFlag(FLAGS_peer_error_handling);
  auto ucx = transport::UcxContext::Create(options);
  if (!ucx.ok()) return 1;
  auto server = transport::UcxExpertServer::Create(**ucx, 0);
  if (!server.ok()) return 1;
  RawEcho echo;
  echo.ucx = ucx->get();
  if (!(*ucx)->SetAmHandler(kRawRequestAm, OnRawRequest, &echo).ok()) return 1;
  std::printf("READY %s\n", absl::BytesToHexString((*ucx)->worker_address()).c_str());
  std::fflush(stdout);
  std::string line;
  if (!std::getline(std::cin, line)) return 1;
  const std::string client_address = absl::HexStringToBytes(line);
  auto member = (*server)->AddMember(client_address);
  transport::UcxPeerCache peers(**ucx);
  auto peer = peers.Get(client_address);
  if (!member.ok() || !peer.ok()) return 1;
  echo.client = *peer;
  std::printf("MEMBER %u\n", *member);
  std::fflush(stdout);
  // The expert worker's compute thread, minus the computation: answer with ready outputs.
  std::atomic<bool> stop{false};
  std::thread loop([&] {
    auto outputs = std::make_shared<std::vector<float>>();
    while (!stop.load()) {
      for (auto& d : (*server)->Take(absl::Milliseconds(50))) {
        const size_t n = static_cast<size_t>(d->pairs * d->hidden);
        if (outputs->size() < n) outputs = std::make_shared<std::vector<float>>(n, 0.5f);
        (*server)->Reply(*d, absl::OkStatus(), outputs, outputs->data(), 1);
      }
    }
  });
  while (std::getline(std::cin, line)) {
  }
  stop.store(true);
  loop.join();
  return 0;
}

// ---- initiator ----------------------------------------------------------------------------

struct RawClient {
  transport::UcxContext* ucx = nullptr;
  absl::Mutex mu;
  uint64_t done_seq ABSL_GUARDED_BY(mu) = 0;
  std::vector<char> inbox;
};

void MarkDone(RawClient* c, uint64_t seq) {
  absl::MutexLock lock(&c->mu);
  c->done_seq = seq;
}

ucs_status_t OnRawReply(void* arg, const void* header, size_t, void* data, size_t length,
                        const ucp_am_recv_param_t* param) {
  auto* c = static_cast<RawClient*>(arg);
  RawHeader h;
  std::memcpy(&h, header, sizeof(h));
  if (c->inbox.size() < length) c->inbox.resize(length);
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) == 0) {
    std::memcpy(c->inbox.data(), data, length);  // as the expert client copies its answer
    MarkDone(c, h.seq);
    return UCS_OK;
  }
  c->ucx->ReceiveAmData(data, c->inbox.data(), length, [c, seq = h.seq](absl::Status status) {
    if (status.ok()) MarkDone(c, seq);
  });
  return UCS_OK;
}

struct Stats {
  std::vector<double> us;
  double Percentile(double q) {
    std::sort(us.begin(), us.end());
    return us.empty() ? 0 : us[static_cast<size_t>(q * static_cast<double>(us.size() - 1))];
  }
};

int RunInitiator(const char* self) {
  std::vector<int> token_counts;
  for (absl::string_view t : absl::StrSplit(absl::GetFlag(FLAGS_tokens), ',')) {
    int n = 0;
    if (absl::SimpleAtoi(t, &n) && n > 0) token_counts.push_back(n);
  }
  const int hidden = absl::GetFlag(FLAGS_hidden);
  const int top_k = absl::GetFlag(FLAGS_top_k);
  std::printf(
      "# expert dispatch+combine per MoE layer vs raw UCX AM ping-pong of the same "
      "bytes; hidden %d, top-%d, 1 expert worker (another process); microseconds\n",
      hidden, top_k);
  std::printf("%-5s %6s %12s %12s | %10s %10s | %10s %10s | %6s\n", "tls", "tokens", "dispatch_B",
              "combine_B", "ours_p50", "ours_p90", "raw_p50", "raw_p90", "ratio");
  for (absl::string_view name : absl::StrSplit(absl::GetFlag(FLAGS_transports), ',')) {
    transport::UcxOptions options;
    if (name == "tcp") {
      options.transports = "tcp";
      options.net_devices = "lo";
    } else {
      options.transports = "posix,cma,self";
      options.peer_error_handling = false;
    }
    auto target =
        ChildProcess::Start({self, "--role=target", "--tls=" + options.transports,
                             "--net_devices=" + options.net_devices,
                             absl::StrCat("--peer_error_handling=", options.peer_error_handling)},
                            {});
    if (!target.ok()) return 1;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    auto ready = target->ReadLine(deadline);
    if (!ready.ok()) return 1;
    const std::string target_address = absl::HexStringToBytes(std::string(*ready).substr(6));
    auto ucx = transport::UcxContext::Create(options);
    if (!ucx.ok()) return 1;
    auto client = transport::UcxExpertClient::Create(**ucx);
    if (!client.ok()) return 1;
    RawClient raw;
    raw.ucx = ucx->get();
    if (!(*ucx)->SetAmHandler(kRawReplyAm, OnRawReply, &raw).ok()) return 1;
    if (!target->WriteLine(absl::BytesToHexString((*ucx)->worker_address())).ok()) return 1;
    auto member_line = target->ReadLine(deadline);
    uint32_t member = 0;
    if (!member_line.ok() || !absl::SimpleAtoi(member_line->substr(7), &member)) return 1;
    if (!(*client)->Connect(0, target_address, member).ok()) return 1;
    transport::UcxPeerCache peers(**ucx);
    auto peer = peers.Get(target_address);
    if (!peer.ok()) return 1;

    for (int tokens : token_counts) {
      const int64_t num_experts = 256;
      experts::ExpertPlacement placement = experts::DefaultExpertPlacement({3}, num_experts, 8, 1);
      std::vector<int32_t> experts(static_cast<size_t>(tokens * top_k));
      for (int t = 0; t < tokens; ++t) {
        for (int i = 0; i < top_k; ++i) experts[t * top_k + i] = (t * 37 + i * 29) % 256;
      }
      std::vector<float> x(static_cast<size_t>(tokens) * hidden, 0.25f);
      std::vector<const float*> slots(static_cast<size_t>(tokens) * top_k);
      auto plan = experts::PlanDispatch(placement.layers[0], experts.data(), tokens, top_k, 1, {});
      const int64_t dispatch_bytes =
          experts::DispatchPayloadBytes(tokens, plan->destinations[0].num_pairs(), hidden);
      const int64_t combine_bytes =
          plan->destinations[0].num_pairs() * hidden * static_cast<int64_t>(sizeof(float));
      std::vector<char> raw_payload(static_cast<size_t>(dispatch_bytes));
      Stats ours, rawstats;
      uint64_t seq = 0;
      auto exchange = [&] {
        transport::ExchangeRequest req;
        req.layer = 3;
        req.placement_version = 1;
        req.plan = &*plan;
        req.x = x.data();
        req.hidden = hidden;
        req.deadline = absl::Now() + absl::Seconds(10);
        const absl::Time start = absl::Now();
        transport::ExchangeResult r = (*client)->Exchange(req, [] {});
        if (!r.status.ok()) return false;
        experts::SlotOutputRows(*plan, {r.outputs[0].data()}, hidden, slots.data());
        for (experts::FloatBuffer& b : r.outputs) (*client)->pool()->Give(std::move(b));
        ours.us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
        return true;
      };
      auto ping = [&] {
        const absl::Time start = absl::Now();
        RawHeader h{++seq, static_cast<uint64_t>(combine_bytes)};
        (*ucx)->BeginOperation();  // poll while the answer is due, as Exchange does
        ucp_request_param_t p{};
        auto r = (*peer)->Post([&](ucp_ep_h ep) {
          return ucp_am_send_nbx(ep, kRawRequestAm, &h, sizeof(h), raw_payload.data(),
                                 raw_payload.size(), &p);
        });
        bool ok = r.ok() && !UCS_PTR_IS_ERR(*r);
        {
          absl::MutexLock lock(&raw.mu);
          auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(raw.mu) { return raw.done_seq >= seq; };
          ok = ok && raw.mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(10));
        }
        (*ucx)->EndOperation();
        if (r.ok() && *r != nullptr && !UCS_PTR_IS_ERR(*r)) {
          while (ucp_request_check_status(*r) == UCS_INPROGRESS) {
          }
          ucp_request_free(*r);
        }
        rawstats.us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
        return ok;
      };
      for (int i = 0; i < 5; ++i) {  // warm-up (connections, buffers)
        if (!exchange() || !ping()) {
          std::fprintf(stderr, "warm-up failed\n");
          return 1;
        }
      }
      ours.us.clear();
      rawstats.us.clear();
      const absl::Duration per = absl::Seconds(absl::GetFlag(FLAGS_seconds_per_round));
      for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
        for (absl::Time until = absl::Now() + per; absl::Now() < until;) {
          if (!exchange()) return 1;
        }
        for (absl::Time until = absl::Now() + per; absl::Now() < until;) {
          if (!ping()) return 1;
        }
      }
      const double o50 = ours.Percentile(0.5), o90 = ours.Percentile(0.9);
      const double r50 = rawstats.Percentile(0.5), r90 = rawstats.Percentile(0.9);
      std::printf("%-5s %6d %12" PRId64 " %12" PRId64 " | %10.1f %10.1f | %10.1f %10.1f | %6.2f\n",
                  std::string(name).c_str(), tokens, dispatch_bytes, combine_bytes, o50, o90, r50,
                  r90, o50 / r50);
      std::fflush(stdout);
    }
    target->CloseStdin();
    target->Wait(absl::Now() + absl::Seconds(10)).IgnoreError();
  }
  return 0;
}

}  // namespace
}  // namespace dsv3::bench

int main(int argc, char** argv) {
  dsv3::DisableMutexDeadlockDetection();  // as the servers run
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_role) == "target") return dsv3::bench::RunTarget();
  return dsv3::bench::RunInitiator(argv[0]);
}
