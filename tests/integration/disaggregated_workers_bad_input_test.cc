// The decode and prefill workers' gRPC against bad and hostile input: out-of-range ids,
// impossible reservations, a token id outside the vocabulary in one Decode of a batch (it
// fails alone), and leases that only their secret can take over or free, with a capped
// lifetime. Instantiated over tcp and shared memory in disaggregated_workers_test.cc.

#include <thread>

#include "tests/integration/disaggregated_workers_fixture.h"

namespace dsv3::disaggregated {
namespace {

using ::testing::HasSubstr;

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
  auto reader = decode_.decode_stub->Decode(&ctx, req);
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
    ASSERT_TRUE(decode_.decode_stub->Release(&ctx, rel, &released).ok());
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

// Each worker serves its role's calls and the status both share, nothing else: a Reserve
// sent to a prefill worker or a Prefill sent to a decode worker is UNIMPLEMENTED.
TEST_P(DisaggregatedWorkersTest, EachWorkerAnswersOnlyItsOwnRolesCalls) {
  {
    grpc::ClientContext ctx;
    v1::ReserveRequest req;
    req.set_prompt_tokens(3);
    req.set_max_new_tokens(1);
    v1::ReserveResponse resp;
    EXPECT_EQ(prefill_.decode_stub->Reserve(&ctx, req, &resp).error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
  {
    grpc::ClientContext ctx;
    v1::PrefillRequest req;
    req.add_prompt_token_ids(1);
    v1::PrefillResponse resp;
    EXPECT_EQ(decode_.prefill_stub->Prefill(&ctx, req, &resp).error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
  for (Worker* w : {&prefill_, &decode_}) {
    grpc::ClientContext ctx;
    v1::WorkerInfo info;
    ASSERT_TRUE(w->status_stub->GetInfo(&ctx, v1::GetInfoRequest(), &info).ok());
    EXPECT_EQ(info.role(), w == &prefill_ ? v1::WORKER_ROLE_PREFILL : v1::WORKER_ROLE_DECODE);
  }
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
    ASSERT_TRUE(decode_.decode_stub->Release(&ctx, rel, &released).ok());
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
    auto reader = decode_.decode_stub->Decode(&ctx, req);
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
    ASSERT_TRUE(decode_.decode_stub->Reserve(&ctx, req, &resp).ok());
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
    auto reader = decode_.decode_stub->Decode(&ctx, req);
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

// A caller of Prefill cannot point the prefill worker's one-sided writes elsewhere: a
// destination whose base address, pool size, rkey or decode worker differs from what the
// decode worker itself answers (GetInfo) is refused with PERMISSION_DENIED, and the lease it
// was forged from still serves its own request whole.
TEST_P(DisaggregatedWorkersTest, AForgedKvDestinationIsNotWrittenInto) {
  const GoldenPrompt g = LoadGolden().front();
  auto lease = Reserve(static_cast<int>(g.prompt.size()), 8);
  ASSERT_TRUE(lease.ok()) << lease.status();
  std::vector<v1::KvDestination> forged(10, *lease);
  forged[0].set_base_address(lease->base_address() + 4096);
  forged[1].mutable_layout()->set_num_blocks(lease->layout().num_blocks() * 64);
  forged[2].set_rkey(std::string(lease->rkey().size(), '\x5a'));
  forged[3].set_decode_address(prefill_.address);  // a prefill worker has no pool
  forged[4].set_decode_address("");
  // The landing mark, too, goes only into one slot of the decode worker's own table.
  forged[5].mutable_landing()->set_address(lease->landing().address() + (uint64_t{8} << 30));
  forged[6].mutable_landing()->set_address(lease->landing().address() + 4);
  forged[7].mutable_landing()->set_rkey(std::string(lease->landing().rkey().size(), '\x5a'));
  // And a hidden state only where its slot has room for one (this worker's have none).
  forged[8].mutable_landing()->set_hidden_address(lease->landing().address() + 56);
  forged[8].mutable_landing()->set_hidden_bytes(64);
  forged[9].mutable_landing()->set_hidden_address(lease->landing().address() + (uint64_t{1} << 20));
  for (size_t i = 0; i < forged.size(); ++i) {
    auto refused = Prefill(g.prompt, forged[i]);
    ASSERT_FALSE(refused.ok()) << "forged destination " << i;
    EXPECT_TRUE(absl::IsPermissionDenied(refused.status()) ||
                (i == 4 && absl::IsInvalidArgument(refused.status())))
        << i << ": " << refused.status();
  }
  auto prefill = Prefill(g.prompt, *lease);
  ASSERT_TRUE(prefill.ok()) << prefill.status();
  v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
  EXPECT_EQ(Decode(g.prompt, lease->lease_id(), prefill->first_token_id(), 8, &reason), g.greedy);
}

// A Decode that no Prefill preceded is refused (FAILED_PRECONDITION) rather than reading
// the rows an earlier request left in the reused blocks (and naming them in the prefix
// cache): the decode worker starts a lease only once the prefill worker has put the lease's
// landing tag after its last row. The lease is intact: its own prefill and decode follow.
TEST_P(DisaggregatedWorkersTest, ADecodeThatNoPrefillPrecededIsRefused) {
  const GoldenPrompt g = LoadGolden().front();
  // An earlier request leaves its rows in the pool's blocks.
  auto earlier = Reserve(static_cast<int>(g.prompt.size()), 8);
  ASSERT_TRUE(earlier.ok()) << earlier.status();
  auto earlier_prefill = Prefill(g.prompt, *earlier);
  ASSERT_TRUE(earlier_prefill.ok()) << earlier_prefill.status();
  v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
  EXPECT_EQ(Decode(g.prompt, earlier->lease_id(), earlier_prefill->first_token_id(), 8, &reason),
            g.greedy);

  auto lease = Reserve(static_cast<int>(g.prompt.size()), 8);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_NE(lease->landing().tag(), 0u);
  EXPECT_NE(lease->landing().tag(), lease->lease_secret());
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx, 10);
    v1::DecodeRequest req;
    req.set_lease_id(lease->lease_id());
    req.set_lease_secret(lease->lease_secret());  // the caller holds the secret, even
    for (int32_t t : g.prompt) req.add_prompt_token_ids(t);
    req.set_first_token_id(g.greedy[0]);
    req.mutable_sampling()->set_max_tokens(8);
    auto reader = decode_.decode_stub->Decode(&ctx, req);
    v1::DecodeResponse resp;
    int responses = 0;
    while (reader->Read(&resp)) responses += resp.token_ids_size();
    grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("no prefill has landed"));
    EXPECT_EQ(responses, 0);
  }
  auto prefill = Prefill(g.prompt, *lease);
  ASSERT_TRUE(prefill.ok()) << prefill.status();
  EXPECT_EQ(Decode(g.prompt, lease->lease_id(), prefill->first_token_id(), 8, &reason), g.greedy);
}

}  // namespace
}  // namespace dsv3::disaggregated
