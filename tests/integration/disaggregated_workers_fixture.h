#ifndef DSV3_TESTS_INTEGRATION_DISAGGREGATED_WORKERS_FIXTURE_H_
#define DSV3_TESTS_INTEGRATION_DISAGGREGATED_WORKERS_FIXTURE_H_

// Real prefill and decode worker processes on 127.0.0.1, driven over gRPC the way the router
// drives them (Reserve on D, Prefill on P with D's KvDestination or the destination
// following in UpdatePrefill, Decode on D), over the UCX transports the test is
// instantiated with (disaggregated_workers_test.cc). Shared by the tests of the normal path
// and of bad input and lease security (disaggregated_workers_bad_input_test.cc).

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "dsv3/v1/worker.grpc.pb.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "nlohmann/json.hpp"
#include "tests/support/subprocess.h"
#include "transport/ucx/ucx_context.h"
#include "transport/ucx/ucx_peer.h"

namespace dsv3::disaggregated {

using ::dsv3::testing::BinaryPath;
using ::dsv3::testing::MakeTempDir;
using ::dsv3::testing::Subprocess;
using ::testing::HasSubstr;

inline constexpr char kModel[] = DSV3_SOURCE_DIR "/tests/data/golden/tiny-v3-bf16";

struct GoldenPrompt {
  std::vector<int32_t> prompt;
  std::vector<int32_t> greedy;
};

inline std::vector<GoldenPrompt> LoadGolden() {
  std::ifstream in(std::string(kModel) + "/golden.json");
  nlohmann::json j = nlohmann::json::parse(in);
  std::vector<GoldenPrompt> out;
  for (const auto& p : j["prompts"]) {
    out.push_back(
        {p["prompt"].get<std::vector<int32_t>>(), p["greedy_tokens"].get<std::vector<int32_t>>()});
  }
  return out;
}

struct Worker {
  std::optional<Subprocess> process;
  std::unique_ptr<v1::WorkerStatus::Stub> status_stub;
  std::unique_ptr<v1::PrefillWorker::Stub> prefill_stub;  // a prefill worker's
  std::unique_ptr<v1::DecodeWorker::Stub> decode_stub;    // a decode worker's
  std::string address;
  std::string metrics;  // host:port serving /metrics
};

inline Worker StartWorker(const std::string& binary, const std::string& dir, const std::string& tls,
                          const std::vector<std::string>& extra = {}) {
  Worker w;
  std::string ready = dir + "/" + binary + ".ready";
  std::vector<std::string> argv = {BinaryPath(binary),      std::string("--model=") + kModel,
                                   "--ready_file=" + ready, "--kv_blocks=64",
                                   "--kv_block_size=16",    "--ucx_tls=" + tls};
  if (tls == "tcp") argv.push_back("--ucx_net_devices=lo");
  // Over shared memory the decode pool is allocated by UCX (as `dsv3 cluster` runs it).
  if (tls != "tcp" && binary == "dsv3-decode") argv.push_back("--kv_pool_memory=ucx");
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto p = Subprocess::Start(argv, dir + "/" + binary + ".log");
  EXPECT_TRUE(p.ok()) << p.status();
  w.process.emplace(std::move(*p));
  auto info = testing::WaitForReadyFile(ready, *w.process, absl::Seconds(60));
  EXPECT_TRUE(info.ok()) << info.status();
  if (!info.ok()) return w;
  w.address = info->grpc;
  w.metrics = info->metrics;
  auto channel = grpc::CreateChannel(w.address, grpc::InsecureChannelCredentials());
  w.status_stub = v1::WorkerStatus::NewStub(channel);
  w.prefill_stub = v1::PrefillWorker::NewStub(channel);
  w.decode_stub = v1::DecodeWorker::NewStub(channel);
  return w;
}

template <typename T>
void SetDeadline(grpc::ClientContext& ctx, T seconds) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

inline v1::LoadReport Load(Worker& worker) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, 5);
  v1::WatchLoadRequest req;
  auto reader = worker.status_stub->WatchLoad(&ctx, req);
  v1::LoadReport report;
  if (!reader->Read(&report)) report.set_kv_blocks_free(-1);
  ctx.TryCancel();
  return report;
}

inline int FreeBlocks(Worker& decode) { return Load(decode).kv_blocks_free(); }

// Waits until the prefill worker holds no prompt (queued, computing, or awaiting its
// destination).
inline bool PrefillIdle(Worker& prefill, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (Load(prefill).queued_prefill_tokens() == 0) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

// Reads `length` bytes at `remote` of the decode worker's pool with a one-sided UCX get.
inline std::vector<uint8_t> RemoteRead(transport::UcxPeer& peer, ucp_rkey_h rkey, uint64_t remote,
                                       size_t length) {
  std::vector<uint8_t> out(length);
  ucp_request_param_t param{};
  auto posted = peer.Post(
      [&](ucp_ep_h ep) { return ucp_get_nbx(ep, out.data(), length, remote, rkey, &param); });
  EXPECT_TRUE(posted.ok());
  ucs_status_ptr_t r = *posted;
  if (r != nullptr && !UCS_PTR_IS_ERR(r)) {
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (ucp_request_check_status(r) == UCS_INPROGRESS && absl::Now() < deadline) {
      peer.context().Wake();
      absl::SleepFor(absl::Microseconds(200));
    }
    EXPECT_EQ(ucp_request_check_status(r), UCS_OK);
    ucp_request_free(r);
  } else {
    EXPECT_FALSE(UCS_PTR_IS_ERR(r));
  }
  return out;
}

class DisaggregatedWorkersTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("pd");
    decode_ = StartWorker("dsv3-decode", dir_, GetParam());
    prefill_ = StartWorker("dsv3-prefill", dir_, GetParam());
    ASSERT_TRUE(decode_.decode_stub && prefill_.prefill_stub);
  }

  absl::StatusOr<v1::KvDestination> Reserve(int prompt_tokens, int max_new) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, 10);
    v1::ReserveRequest req;
    req.set_prompt_tokens(prompt_tokens);
    req.set_max_new_tokens(max_new);
    v1::ReserveResponse resp;
    grpc::Status s = decode_.decode_stub->Reserve(&ctx, req, &resp);
    if (!s.ok())
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
    secrets_[resp.destination().lease_id()] = resp.destination().lease_secret();
    return resp.destination();
  }

  absl::StatusOr<v1::PrefillResponse> Prefill(const std::vector<int32_t>& prompt,
                                              const v1::KvDestination& d) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, 30);
    v1::PrefillRequest req;
    for (int32_t t : prompt) req.add_prompt_token_ids(t);
    *req.mutable_destination() = d;
    v1::PrefillResponse resp;
    grpc::Status s = prefill_.prefill_stub->Prefill(&ctx, req, &resp);
    if (!s.ok())
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
    return resp;
  }

  std::vector<int32_t> Decode(const std::vector<int32_t>& prompt, uint64_t lease, int32_t first,
                              int max_tokens, v1::FinishReason* reason) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, 30);
    v1::DecodeRequest req;
    req.set_lease_id(lease);
    req.set_lease_secret(secrets_[lease]);
    for (int32_t t : prompt) req.add_prompt_token_ids(t);
    req.set_first_token_id(first);
    req.mutable_sampling()->set_max_tokens(max_tokens);
    req.mutable_sampling()->set_ignore_eos(true);
    auto reader = decode_.decode_stub->Decode(&ctx, req);
    std::vector<int32_t> tokens = {first};
    v1::DecodeResponse resp;
    while (reader->Read(&resp)) {
      tokens.insert(tokens.end(), resp.token_ids().begin(), resp.token_ids().end());
      if (resp.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) *reason = resp.finish_reason();
    }
    grpc::Status s = reader->Finish();
    EXPECT_TRUE(s.ok()) << s.error_message();
    return tokens;
  }

  // The rows the engine computes for `prompt` (in steps of `chunk` tokens, as the prefill
  // worker did: the kernels' rounding depends on the step's shape) equal, byte for byte,
  // what is in the decode worker's blocks of `d` (read back with one-sided UCX gets).
  void ExpectRowsLanded(const std::vector<int32_t>& prompt, const v1::KvDestination& d,
                        size_t chunk = 512) {
    auto model = engine::Model::Load(kModel);
    ASSERT_TRUE(model.ok()) << model.status();
    auto pool = engine::KvCachePool::Create((*model)->KvLayout(64, 16));
    ASSERT_TRUE(pool.ok());
    engine::KvSequence seq;
    for (size_t begin = 0; begin < prompt.size(); begin += chunk) {
      std::span<const int32_t> part =
          std::span<const int32_t>(prompt).subspan(begin, std::min(chunk, prompt.size() - begin));
      ASSERT_TRUE((*pool)->Reserve(seq, static_cast<int64_t>(begin + part.size())).ok());
      engine::SequenceInput in{part, &seq, false};
      ASSERT_TRUE((*model)->Forward({&in, 1}, **pool).ok());
    }

    transport::UcxOptions options;
    options.transports = GetParam();
    if (GetParam() == "tcp") options.net_devices = "lo";
    options.peer_error_handling = GetParam() == "tcp";
    auto ucx = transport::UcxContext::Create(options);
    ASSERT_TRUE(ucx.ok()) << ucx.status();
    transport::UcxPeerCache peers(**ucx);
    auto peer = peers.Get(d.ucx_worker_address());
    ASSERT_TRUE(peer.ok()) << peer.status();
    auto rkey = (*peer)->Rkey(d.rkey());
    ASSERT_TRUE(rkey.ok());
    const v1::KvLayout& l = d.layout();
    int compared_rows = 0;
    for (int layer = 0; layer < l.num_layers(); ++layer) {
      for (size_t t = 0; t < prompt.size(); ++t) {
        const int block = d.block_ids(static_cast<int>(t / l.block_size()));
        const uint64_t remote = d.base_address() + layer * l.layer_stride_bytes() +
                                block * l.block_stride_bytes() +
                                (t % l.block_size()) * l.row_bytes();
        std::vector<uint8_t> got = RemoteRead(**peer, *rkey, remote, l.row_bytes());
        const float* want = (*pool)->Row(layer, seq, static_cast<int64_t>(t));
        ASSERT_EQ(std::memcmp(got.data(), want, l.row_bytes()), 0)
            << "layer " << layer << " token " << t;
        ++compared_rows;
      }
    }
    EXPECT_EQ(compared_rows, l.num_layers() * static_cast<int>(prompt.size()));
  }

  bool Release(uint64_t lease_id) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, 5);
    v1::ReleaseRequest rel;
    rel.set_lease_id(lease_id);
    rel.set_lease_secret(secrets_[lease_id]);
    v1::ReleaseResponse released;
    return decode_.decode_stub->Release(&ctx, rel, &released).ok() && released.released();
  }

  // A Prefill with a job id and (when given) a destination, on its own thread.
  std::future<absl::StatusOr<v1::PrefillResponse>> PrefillJob(
      Worker& prefill, std::vector<int32_t> prompt, uint64_t job_id,
      std::optional<v1::KvDestination> d, absl::Duration deadline = absl::Seconds(30)) {
    return std::async(
        std::launch::async,
        [&prefill, prompt, job_id, d, deadline]() -> absl::StatusOr<v1::PrefillResponse> {
          grpc::ClientContext ctx;
          ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
          v1::PrefillRequest req;
          for (int32_t t : prompt) req.add_prompt_token_ids(t);
          req.set_job_id(job_id);
          if (d.has_value()) *req.mutable_destination() = *d;
          v1::PrefillResponse resp;
          grpc::Status s = prefill.prefill_stub->Prefill(&ctx, req, &resp);
          if (!s.ok()) {
            return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
          }
          return resp;
        });
  }

  // UpdatePrefill with a destination, or (d == nullptr) a cancellation.
  absl::Status Update(Worker& prefill, uint64_t job_id, const v1::KvDestination* d,
                      const std::string& cancel_reason = "") {
    grpc::ClientContext ctx;
    SetDeadline(ctx, 5);
    v1::UpdatePrefillRequest req;
    req.set_job_id(job_id);
    if (d != nullptr) {
      *req.mutable_destination() = *d;
    } else if (!cancel_reason.empty()) {
      req.set_cancel_reason(cancel_reason);
    }
    v1::UpdatePrefillResponse resp;
    grpc::Status s = prefill.prefill_stub->UpdatePrefill(&ctx, req, &resp);
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  }

  std::string dir_;
  Worker decode_;
  Worker prefill_;
  std::map<uint64_t, uint64_t> secrets_;  // lease id -> the secret Reserve gave
};

}  // namespace dsv3::disaggregated

#endif  // DSV3_TESTS_INTEGRATION_DISAGGREGATED_WORKERS_FIXTURE_H_
