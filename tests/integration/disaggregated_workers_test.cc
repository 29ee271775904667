// Real prefill and decode worker processes on 127.0.0.1, driven over gRPC the way the router
// drives them (Reserve on D, Prefill on P with D's KvDestination or the destination
// following in UpdatePrefill, Decode on D). Checks:
// greedy tokens equal the reference implementation's; the KV rows that land in the decode
// worker's blocks equal, byte for byte, the rows the engine computes for the prompt (read
// back with a one-sided UCX get by this test process); blocks come back; bad input fails
// cleanly. Over tcp and over shared memory.

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

namespace dsv3 {
namespace {

using ::dsv3::testing::BinaryPath;
using ::dsv3::testing::MakeTempDir;
using ::dsv3::testing::Subprocess;
using ::testing::HasSubstr;

const char kModel[] = DSV3_SOURCE_DIR "/tests/data/golden/tiny-v3-bf16";

struct GoldenPrompt {
  std::vector<int32_t> prompt;
  std::vector<int32_t> greedy;
};

std::vector<GoldenPrompt> LoadGolden() {
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
  std::unique_ptr<v1::Worker::Stub> stub;
  std::string address;
};

Worker StartWorker(const std::string& binary, const std::string& dir, const std::string& tls,
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
  w.stub = v1::Worker::NewStub(grpc::CreateChannel(w.address, grpc::InsecureChannelCredentials()));
  return w;
}

template <typename T>
void SetDeadline(grpc::ClientContext& ctx, T seconds) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

v1::LoadReport Load(Worker& worker) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, 5);
  v1::WatchLoadRequest req;
  auto reader = worker.stub->WatchLoad(&ctx, req);
  v1::LoadReport report;
  if (!reader->Read(&report)) report.set_kv_blocks_free(-1);
  ctx.TryCancel();
  return report;
}

int FreeBlocks(Worker& decode) { return Load(decode).kv_blocks_free(); }

// Waits until the prefill worker holds no prompt (queued, computing, or awaiting its
// destination).
bool PrefillIdle(Worker& prefill, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (Load(prefill).queued_prefill_tokens() == 0) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

// Reads `length` bytes at `remote` of the decode worker's pool with a one-sided UCX get.
std::vector<uint8_t> RemoteRead(transport::UcxPeer& peer, ucp_rkey_h rkey, uint64_t remote,
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
    ASSERT_TRUE(decode_.stub && prefill_.stub);
  }

  absl::StatusOr<v1::KvDestination> Reserve(int prompt_tokens, int max_new) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, 10);
    v1::ReserveRequest req;
    req.set_prompt_tokens(prompt_tokens);
    req.set_max_new_tokens(max_new);
    v1::ReserveResponse resp;
    grpc::Status s = decode_.stub->Reserve(&ctx, req, &resp);
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
    grpc::Status s = prefill_.stub->Prefill(&ctx, req, &resp);
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
    auto reader = decode_.stub->Decode(&ctx, req);
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
    return decode_.stub->Release(&ctx, rel, &released).ok() && released.released();
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
          grpc::Status s = prefill.stub->Prefill(&ctx, req, &resp);
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
    grpc::Status s = prefill.stub->UpdatePrefill(&ctx, req, &resp);
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  }

  std::string dir_;
  Worker decode_;
  Worker prefill_;
  std::map<uint64_t, uint64_t> secrets_;  // lease id -> the secret Reserve gave
};

TEST_P(DisaggregatedWorkersTest, GreedyTokensMatchTheReference) {
  const int free_at_start = FreeBlocks(decode_);
  ASSERT_GT(free_at_start, 0);
  for (const GoldenPrompt& g : LoadGolden()) {
    auto d = Reserve(static_cast<int>(g.prompt.size()), 8);
    ASSERT_TRUE(d.ok()) << d.status();
    auto p = Prefill(g.prompt, *d);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->first_token_id(), g.greedy[0]);
    EXPECT_EQ(p->kv_bytes(), static_cast<int64_t>(g.prompt.size()) * d->layout().row_bytes() *
                                 (d->layout().num_layers()));
    v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
    std::vector<int32_t> tokens = Decode(g.prompt, d->lease_id(), p->first_token_id(), 8, &reason);
    EXPECT_EQ(tokens, g.greedy);
    EXPECT_EQ(reason, v1::FINISH_REASON_LENGTH);
  }
  // Every block comes back once the sequences finish.
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (FreeBlocks(decode_) != free_at_start && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(FreeBlocks(decode_), free_at_start);
}

TEST_P(DisaggregatedWorkersTest, KvRowsLandByteForByte) {
  const GoldenPrompt g = LoadGolden().back();  // the longest prompt: several blocks
  auto d = Reserve(static_cast<int>(g.prompt.size()), 4);
  ASSERT_TRUE(d.ok()) << d.status();
  auto p = Prefill(g.prompt, *d);
  ASSERT_TRUE(p.ok()) << p.status();
  ExpectRowsLanded(g.prompt, *d);
  EXPECT_TRUE(Release(d->lease_id()));
}

TEST_P(DisaggregatedWorkersTest, BadInputFailsCleanly) {
  // Out-of-range token id: the prefill worker refuses; the lease is released by the caller.
  auto d = Reserve(3, 4);
  ASSERT_TRUE(d.ok());
  auto p = Prefill({0, 99999, 5}, *d);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << p.status();
  // A destination of another model (config hash) is refused before any byte moves.
  v1::KvDestination other = *d;
  other.set_config_hash("0123456789abcdef");
  EXPECT_EQ(Prefill({0, 1, 2}, other).status().code(), absl::StatusCode::kFailedPrecondition);
  // An unknown lease.
  v1::FinishReason reason;
  grpc::ClientContext ctx;
  v1::DecodeRequest req;
  req.set_lease_id(987654);
  auto reader = decode_.stub->Decode(&ctx, req);
  v1::DecodeResponse resp;
  while (reader->Read(&resp)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  (void)reason;
  // More than the context: refused at Reserve.
  EXPECT_EQ(Reserve(2000, 100).status().code(), absl::StatusCode::kInvalidArgument);
  // More than the whole pool can ever hold: INVALID_ARGUMENT (waiting would not help).
  EXPECT_EQ(Reserve(1000, 100).status().code(), absl::StatusCode::kInvalidArgument);
  // More than is free now: RESOURCE_EXHAUSTED; fine again once the blocks come back.
  auto big = Reserve(600, 100);
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(Reserve(600, 100).status().code(), absl::StatusCode::kResourceExhausted);
  {
    grpc::ClientContext ctx;
    v1::ReleaseRequest rel;
    rel.set_lease_id(big->lease_id());
    rel.set_lease_secret(big->lease_secret());
    v1::ReleaseResponse released;
    ASSERT_TRUE(decode_.stub->Release(&ctx, rel, &released).ok());
  }
  auto again = Reserve(600, 100);
  ASSERT_TRUE(again.ok()) << again.status();
  // The workers still serve.
  const GoldenPrompt g = LoadGolden().front();
  auto ok = Reserve(static_cast<int>(g.prompt.size()), 2);
  ASSERT_TRUE(ok.ok());
  auto first = Prefill(g.prompt, *ok);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->first_token_id(), g.greedy[0]);
}

// A lease is taken over or freed only with its secret: a caller who sees or guesses a lease
// id can neither start a Decode on another request's blocks nor release them; and no lease
// lives longer than the worker's cap, whatever lease_ms asks.
TEST_P(DisaggregatedWorkersTest, LeasesNeedTheirSecretAndHaveACappedLifetime) {
  const GoldenPrompt g = LoadGolden().front();
  auto d = Reserve(static_cast<int>(g.prompt.size()), 8);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_NE(d->lease_secret(), 0u);
  auto p = Prefill(g.prompt, *d);
  ASSERT_TRUE(p.ok()) << p.status();
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx, 10);
    v1::ReleaseRequest rel;
    rel.set_lease_id(d->lease_id());
    rel.set_lease_secret(d->lease_secret() + 1);
    v1::ReleaseResponse released;
    ASSERT_TRUE(decode_.stub->Release(&ctx, rel, &released).ok());
    EXPECT_FALSE(released.released());
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx, 10);
    v1::DecodeRequest req;
    req.set_lease_id(d->lease_id());
    req.set_lease_secret(0);
    for (int32_t t : g.prompt) req.add_prompt_token_ids(t);
    req.set_first_token_id(p->first_token_id());
    req.mutable_sampling()->set_max_tokens(8);
    auto reader = decode_.stub->Decode(&ctx, req);
    v1::DecodeResponse resp;
    while (reader->Read(&resp)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  // The lease is intact: its owner decodes the golden tokens.
  v1::FinishReason reason;
  EXPECT_EQ(Decode(g.prompt, d->lease_id(), p->first_token_id(), 8, &reason), g.greedy);
  // A lease asking to live a day lives the worker's cap (2 minutes by default).
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx, 10);
    v1::ReserveRequest req;
    req.set_prompt_tokens(4);
    req.set_max_new_tokens(4);
    req.set_lease_ms(int64_t{24} * 3600 * 1000);
    v1::ReserveResponse resp;
    ASSERT_TRUE(decode_.stub->Reserve(&ctx, req, &resp).ok());
    secrets_[resp.destination().lease_id()] = resp.destination().lease_secret();
    EXPECT_LE(resp.destination().lease_expiry_unix_ms(),
              absl::ToUnixMillis(absl::Now() + absl::Minutes(2) + absl::Seconds(1)));
    EXPECT_TRUE(Release(resp.destination().lease_id()));
  }
}

// A Decode with a token id outside the vocabulary fails alone: the request decoding beside it
// in the same batch goes on to its end.
TEST_P(DisaggregatedWorkersTest, BadDecodeInputFailsOnlyThatRequest) {
  const GoldenPrompt g = LoadGolden().front();
  auto good_lease = Reserve(static_cast<int>(g.prompt.size()), 700);  // 12 of 16 blocks
  ASSERT_TRUE(good_lease.ok()) << good_lease.status();
  auto good_prefill = Prefill(g.prompt, *good_lease);
  ASSERT_TRUE(good_prefill.ok()) << good_prefill.status();
  std::vector<int32_t> good;
  v1::FinishReason good_reason = v1::FINISH_REASON_UNSPECIFIED;
  std::thread decoding([&] {
    good =
        Decode(g.prompt, good_lease->lease_id(), good_prefill->first_token_id(), 700, &good_reason);
  });
  for (int32_t bad_first : {99999, -1}) {
    auto lease = Reserve(static_cast<int>(g.prompt.size()), 8);
    ASSERT_TRUE(lease.ok()) << lease.status();
    ASSERT_TRUE(Prefill(g.prompt, *lease).ok());
    grpc::ClientContext ctx;
    SetDeadline(ctx, 30);
    v1::DecodeRequest req;
    req.set_lease_id(lease->lease_id());
    req.set_lease_secret(lease->lease_secret());
    for (int32_t t : g.prompt) req.add_prompt_token_ids(t);
    req.set_first_token_id(bad_first);
    req.mutable_sampling()->set_max_tokens(8);
    auto reader = decode_.stub->Decode(&ctx, req);
    v1::DecodeResponse resp;
    while (reader->Read(&resp)) {
    }
    grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad_first;
    EXPECT_THAT(s.error_message(), ::testing::HasSubstr("outside the vocabulary")) << bad_first;
  }
  decoding.join();
  ASSERT_EQ(good.size(), 700u);  // max_tokens counts the first token
  EXPECT_EQ(std::vector<int32_t>(good.begin(), good.begin() + 8), g.greedy);
  EXPECT_EQ(good_reason, v1::FINISH_REASON_LENGTH);
}

TEST_P(DisaggregatedWorkersTest, ExpiredLeaseFreesItsBlocks) {
  // A short lease on a second decode worker.
  const std::string dir = MakeTempDir("lease");
  Worker decode = StartWorker("dsv3-decode", dir, GetParam(), {"--lease_timeout=300ms"});
  ASSERT_TRUE(decode.stub);
  const int free_at_start = FreeBlocks(decode);
  grpc::ClientContext ctx;
  v1::ReserveRequest req;
  req.set_prompt_tokens(40);
  req.set_max_new_tokens(8);
  v1::ReserveResponse resp;
  ASSERT_TRUE(decode.stub->Reserve(&ctx, req, &resp).ok());
  EXPECT_LT(FreeBlocks(decode), free_at_start);
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (FreeBlocks(decode) != free_at_start && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(FreeBlocks(decode), free_at_start);
  EXPECT_THAT(decode.process->ReadLog(), HasSubstr("lease expired"));
}

// The router's way: a Prefill with a job id and no destination, sent while the decode
// worker reserves; UpdatePrefill brings the destination. Whether it arrives before the
// prompt computes, mid-prompt (two-token steps: 17 steps for 33 tokens) or after it, every
// row lands byte for byte and the tokens are the reference's.
TEST_P(DisaggregatedWorkersTest, DestinationThatFollowsThePromptGetsEveryRow) {
  Worker prefill =
      StartWorker("dsv3-prefill", MakeTempDir("late"), GetParam(), {"--prefill_chunk_tokens=2"});
  ASSERT_TRUE(prefill.stub);
  const int free_at_start = FreeBlocks(decode_);
  const GoldenPrompt g = LoadGolden().back();
  const int n = static_cast<int>(g.prompt.size());
  uint64_t job_id = 1000;
  for (absl::Duration delay : {absl::ZeroDuration(), absl::Milliseconds(2), absl::Milliseconds(10),
                               absl::Milliseconds(400)}) {
    SCOPED_TRACE(absl::StrCat("destination after ", absl::FormatDuration(delay)));
    ++job_id;
    auto call = PrefillJob(prefill, g.prompt, job_id, std::nullopt);
    absl::SleepFor(delay);
    auto d = Reserve(n, 8);
    ASSERT_TRUE(d.ok()) << d.status();
    ASSERT_TRUE(Update(prefill, job_id, &*d).ok());
    auto p = call.get();
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->first_token_id(), g.greedy[0]);
    EXPECT_EQ(p->kv_bytes(),
              static_cast<int64_t>(n) * d->layout().row_bytes() * d->layout().num_layers());
    // 400 ms is long after the prompt computed: the job waited for its destination.
    if (delay == absl::Milliseconds(400)) {
      EXPECT_GT(p->destination_wait_ns(), 0);
    }
    ExpectRowsLanded(g.prompt, *d, 2);
    v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
    EXPECT_EQ(Decode(g.prompt, d->lease_id(), p->first_token_id(), 8, &reason), g.greedy);
  }
  // The update may even overtake its Prefill (separate calls).
  ++job_id;
  auto d = Reserve(n, 4);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE(Update(prefill, job_id, &*d).ok());
  auto p = PrefillJob(prefill, g.prompt, job_id, std::nullopt).get();
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->first_token_id(), g.greedy[0]);
  ExpectRowsLanded(g.prompt, *d, 2);
  EXPECT_TRUE(Release(d->lease_id()));
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (FreeBlocks(decode_) != free_at_start && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(FreeBlocks(decode_), free_at_start);
  EXPECT_TRUE(PrefillIdle(prefill, absl::Seconds(5)));
}

// A job ends early when cancelled (after its in-flight writes), at its deadline when its
// destination never comes, and with the destination's error when that is unusable; the
// worker lets every such job go and keeps serving.
TEST_P(DisaggregatedWorkersTest, CancelledTimedOutAndRefusedJobsEndAndLeaveTheWorkerFree) {
  Worker prefill =
      StartWorker("dsv3-prefill", MakeTempDir("cancel"), GetParam(), {"--prefill_chunk_tokens=2"});
  ASSERT_TRUE(prefill.stub);
  // 900 tokens at two per step: hundreds of steps, cancelled a few steps in.
  std::vector<int32_t> long_prompt(900);
  for (size_t i = 0; i < long_prompt.size(); ++i) long_prompt[i] = static_cast<int32_t>(i % 1000);
  auto d = Reserve(static_cast<int>(long_prompt.size()), 4);
  ASSERT_TRUE(d.ok()) << d.status();
  auto call = PrefillJob(prefill, long_prompt, 77, *d);
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_TRUE(Update(prefill, 77, nullptr, "the test cancels").ok());
  auto cancelled = call.get();
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled) << cancelled.status();
  EXPECT_THAT(cancelled.status().message(), HasSubstr("the test cancels"));
  EXPECT_TRUE(PrefillIdle(prefill, absl::Seconds(5)));
  EXPECT_TRUE(Release(d->lease_id()));

  // No destination before the deadline: DEADLINE_EXCEEDED, and the worker drops the job.
  const GoldenPrompt g = LoadGolden().back();
  auto late = PrefillJob(prefill, g.prompt, 78, std::nullopt, absl::Milliseconds(300)).get();
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded) << late.status();
  EXPECT_TRUE(PrefillIdle(prefill, absl::Seconds(5)));

  // Malformed: no job id, empty update.
  auto d2 = Reserve(static_cast<int>(g.prompt.size()), 4);
  ASSERT_TRUE(d2.ok()) << d2.status();
  EXPECT_EQ(PrefillJob(prefill, g.prompt, 0, std::nullopt).get().status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Update(prefill, 0, &*d2).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Update(prefill, 79, nullptr).code(), absl::StatusCode::kInvalidArgument);
  // A destination of another model: refused, and its job ends with the same error.
  auto refused = PrefillJob(prefill, g.prompt, 80, std::nullopt);
  v1::KvDestination other = *d2;
  other.set_config_hash("0123456789abcdef");
  EXPECT_EQ(Update(prefill, 80, &other).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.get().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(PrefillIdle(prefill, absl::Seconds(5)));

  // A cancel is not undone by a destination that comes after it (separate calls: here both
  // even overtake their Prefill).
  ASSERT_TRUE(Update(prefill, 82, nullptr, "cancelled first").ok());
  ASSERT_TRUE(Update(prefill, 82, &*d2).ok());
  auto after_cancel = PrefillJob(prefill, g.prompt, 82, std::nullopt).get();
  EXPECT_EQ(after_cancel.status().code(), absl::StatusCode::kCancelled) << after_cancel.status();

  // Still serving, correctly.
  auto ok = PrefillJob(prefill, g.prompt, 81, std::nullopt);
  ASSERT_TRUE(Update(prefill, 81, &*d2).ok());
  auto p = ok.get();
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->first_token_id(), g.greedy[0]);
  EXPECT_TRUE(Release(d2->lease_id()));
}

// A decode worker killed while a prompt's KV is on its way: the prefill ends with
// ABORTED (the caller resumes the request on another decode worker) naming it within a few
// seconds (over TCP UCX notices the dead peer; over shared
// memory, which does not, the flush sees the decode worker's gRPC port refuse connections),
// not at its 10 s transfer timeout, and the prefill worker serves the next request. The pool
// is the engine's own memory here: over shared memory its puts complete only when the decode
// worker's progress thread takes them, the case that would wait for a dead target.
TEST_P(DisaggregatedWorkersTest, DecodeWorkerKilledDuringTheTransferFailsThePrefillPromptly) {
  const std::string dir = MakeTempDir("killdecode");
  Worker decode = StartWorker("dsv3-decode", dir, GetParam(), {"--kv_pool_memory=engine"});
  // One token per step: the prompt takes many steps, so the kill lands mid-transfer.
  Worker prefill = StartWorker("dsv3-prefill", dir, GetParam(), {"--prefill_chunk_tokens=1"});
  ASSERT_TRUE(decode.stub && prefill.stub);
  std::vector<int32_t> prompt(1000);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 7) % 1000);
  grpc::ClientContext ctx;
  SetDeadline(ctx, 10);
  v1::ReserveRequest req;
  req.set_prompt_tokens(static_cast<int32_t>(prompt.size()));
  req.set_max_new_tokens(4);
  v1::ReserveResponse reserved;
  ASSERT_TRUE(decode.stub->Reserve(&ctx, req, &reserved).ok());
  auto call = PrefillJob(prefill, prompt, 91, reserved.destination());
  // Kill as soon as the prompt is in the prefill worker: its first rows are on their way.
  const absl::Time wait_until = absl::Now() + absl::Seconds(5);
  while (Load(prefill).queued_prefill_tokens() == 0 && absl::Now() < wait_until) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  decode.process->Signal(SIGKILL);
  const absl::Time killed = absl::Now();
  auto result = call.get();
  const absl::Duration took = absl::Now() - killed;
  EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr(decode.address));
  EXPECT_LT(took, absl::Seconds(5)) << "the prefill waited for the dead decode worker";
  // The prefill worker is free and serves the next request (on the fixture's decode worker).
  EXPECT_TRUE(PrefillIdle(prefill, absl::Seconds(5)));
  const GoldenPrompt g = LoadGolden().back();
  auto d = Reserve(static_cast<int>(g.prompt.size()), 4);
  ASSERT_TRUE(d.ok()) << d.status();
  auto p = PrefillJob(prefill, g.prompt, 92, *d).get();
  if (!p.ok() && p.status().code() == absl::StatusCode::kAborted) {
    // Once in CI under load (shared memory), the first UCX wire-up to the live decode worker
    // right after the kill missed its 5 s ping; the router resumes such a request, so one
    // more try stands for it here. A second failure is a failure.
    std::fprintf(stderr, "retrying once: %s\n", p.status().ToString().c_str());
    p = PrefillJob(prefill, g.prompt, 93, *d).get();
  }
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->first_token_id(), g.greedy[0]);
  EXPECT_TRUE(Release(d->lease_id()));
}

INSTANTIATE_TEST_SUITE_P(Transports, DisaggregatedWorkersTest,
                         ::testing::Values("tcp", "posix,cma,self"), [](const auto& info) {
                           return info.param == "tcp" ? std::string("tcp")
                                                      : std::string("shared_memory");
                         });

}  // namespace
}  // namespace dsv3
