// The whole cluster as a user runs it: `dsv3 cluster` starts real router, prefill and decode
// processes on 127.0.0.1; requests go through the router's gRPC and OpenAI HTTP APIs.
// Outputs are compared with `dsv3 generate` (the single-process engine) and with the
// reference implementation's golden tokens. Failures are in cluster_failure_test.cc.

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "dsv3/v1/worker.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster_fixture.h"
#include "tests/support/subprocess.h"

namespace dsv3 {
namespace {

using ::dsv3::testing::BinaryPath;
using ::dsv3::testing::Cluster;
using ::dsv3::testing::Generate;
using ::dsv3::testing::GenerateGrpc;
using ::dsv3::testing::Golden;
using ::dsv3::testing::GoldenCases;
using ::dsv3::testing::GrpcResult;
using ::dsv3::testing::IdsRequest;
using ::dsv3::testing::ParseIds;
using Proc = ::dsv3::testing::ClusterProc;
using ::dsv3::testing::MakeTempDir;
using ::dsv3::testing::RunCommand;
using ::testing::HasSubstr;

using ::dsv3::testing::kGolden;

// A synthetic model with the real DeepSeek-V3 tokenizer (the run command's default model).
std::string DemoModel() {
  static std::string dir = [] {
    const char* home = std::getenv("HOME");
    std::string tok =
        std::getenv("DSV3_TOKENIZER_DIR")
            ? std::getenv("DSV3_TOKENIZER_DIR")
            : absl::StrCat(home ? home : "/root", "/.cache/dsv3/deepseek-v3-tokenizer");
    std::string out = MakeTempDir("demo-model");
    auto [rc, log] = RunCommand(absl::StrCat(BinaryPath("dsv3"),
                                             " make-model --preset demo --dtype bf16 --mtp 0 "
                                             "--seed 3 --out ",
                                             out, " --tokenizer ", tok));
    EXPECT_EQ(rc, 0) << log << " (is the tokenizer installed? scripts/install-npm-deps.sh)";
    return out;
  }();
  return dir;
}

// --- Equality with the single-process engine and the reference ---------------------------

class GoldenClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::vector<std::string> extra;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    // Sanitized processes on 2 cores under 64 streams can send a load report more than the
    // default 1.2s late; the router would then take a busy (not a hung) worker down.
    extra.push_back("--worker_down_after=6s");
#endif
    cluster_ = Cluster::Start(kGolden, 1, 1, 17300, 128, extra).release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  static Cluster* cluster_;
};
Cluster* GoldenClusterTest::cluster_ = nullptr;

TEST_F(GoldenClusterTest, GreedyOverGrpcEqualsGenerateAndTheReference) {
  ASSERT_NE(cluster_, nullptr);
  for (const Golden& g : GoldenCases()) {
    GrpcResult r = GenerateGrpc(cluster_->router(), IdsRequest(g.prompt, 8));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids, g.greedy);
    EXPECT_EQ(r.ids, Generate(kGolden, g.prompt, 8));
    EXPECT_EQ(r.finish, v1::FINISH_REASON_LENGTH);
  }
}

TEST_F(GoldenClusterTest, CompleteCliPrintsWhatGeneratePrints) {
  ASSERT_NE(cluster_, nullptr);
  const Golden g = GoldenCases()[1];
  const std::string tokens = absl::StrJoin(g.prompt, " ");
  auto [rc, out] =
      RunCommand(absl::StrCat(BinaryPath("dsv3"), " complete --router ", cluster_->router(),
                              " --tokens \"", tokens, "\" --max-tokens 8"));
  ASSERT_EQ(rc, 0) << out;
  auto [grc, gout] =
      RunCommand(absl::StrCat(BinaryPath("dsv3"), " generate --model ", kGolden, " --tokens \"",
                              tokens, "\" --max-tokens 8 2>/dev/null"));
  ASSERT_EQ(grc, 0);
  EXPECT_EQ(out, gout);
}

TEST_F(GoldenClusterTest, HttpCompletionsStreamingAndNotReturnTheSameTokens) {
  ASSERT_NE(cluster_, nullptr);
  const Golden g = GoldenCases()[2];
  httplib::Client http = cluster_->Http();
  nlohmann::json body = {{"prompt", g.prompt},
                         {"max_tokens", 8},
                         {"ignore_eos", true},
                         {"return_token_ids", true},
                         {"temperature", 0}};
  auto res = http.Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  nlohmann::json j = nlohmann::json::parse(res->body);
  EXPECT_EQ(j["choices"][0]["token_ids"].get<std::vector<int32_t>>(), g.greedy) << res->body;
  EXPECT_EQ(j["usage"]["completion_tokens"], 8);
  EXPECT_EQ(j["usage"]["prompt_tokens"], g.prompt.size());

  body["stream"] = true;
  res = http.Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  std::vector<int32_t> streamed;
  bool done = false;
  for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
    if (!absl::ConsumePrefix(&line, "data: ")) continue;
    if (line == "[DONE]") {
      done = true;
      continue;
    }
    nlohmann::json chunk = nlohmann::json::parse(line);
    for (const auto& c : chunk["choices"]) {
      if (c.contains("token_ids")) {
        for (int32_t id : c["token_ids"]) streamed.push_back(id);
      }
    }
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(streamed, g.greedy);
}

// Sum of a metric family's samples on a process's /metrics.
double ScrapeSum(const std::string& http_address, const std::string& family) {
  std::vector<std::string> hp = absl::StrSplit(http_address, ':');
  httplib::Client client(hp[0], std::stoi(hp[1]));
  auto res = client.Get("/metrics");
  if (!res || res->status != 200) return -1;
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
    if (!absl::StartsWith(line, family + "{") && !absl::StartsWith(line, family + " ")) continue;
    double v = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) sum += v;
  }
  return sum;
}

TEST_F(GoldenClusterTest, ColocatedWorkersCountTheTokensOfEachExpert) {
  const Proc& prefill = cluster_->Get("prefill");
  const Proc& decode = cluster_->Get("decode");
  const double p0 = ScrapeSum(prefill.http, "dsv3_expert_tokens_total");
  const double d0 = ScrapeSum(decode.http, "dsv3_expert_tokens_total");
  const Golden g = GoldenCases()[1];
  GrpcResult r = GenerateGrpc(cluster_->router(), IdsRequest(g.prompt, 6));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  // 2 MoE layers x top-4: the prompt's tokens in prefill, the 5 fed-back tokens in decode.
  EXPECT_EQ(ScrapeSum(prefill.http, "dsv3_expert_tokens_total") - p0,
            static_cast<double>(g.prompt.size() * 2 * 4));
  EXPECT_EQ(ScrapeSum(decode.http, "dsv3_expert_tokens_total") - d0, 5.0 * 2 * 4);
}

TEST_F(GoldenClusterTest, SixtyFourConcurrentStreamsAllCorrect) {
  ASSERT_NE(cluster_, nullptr);
  const std::vector<Golden> cases = GoldenCases();
  // Mixed lengths: the golden prompts, and prefixes of them with their own references.
  struct Job {
    std::vector<int32_t> prompt;
    int max_tokens;
    std::vector<int32_t> expected;
  };
  std::vector<Job> kinds;
  for (const Golden& g : cases) kinds.push_back({g.prompt, 8, g.greedy});
  for (int len : {2, 5, 20}) {
    std::vector<int32_t> p(cases.back().prompt.begin(), cases.back().prompt.begin() + len);
    kinds.push_back({p, 3 + len % 7, Generate(kGolden, p, 3 + len % 7)});
  }
  std::vector<GrpcResult> results(64);
  std::vector<std::thread> threads;
  for (int i = 0; i < 64; ++i) {
    threads.emplace_back([&, i] {
      const Job& job = kinds[i % kinds.size()];
      results[i] = GenerateGrpc(cluster_->router(), IdsRequest(job.prompt, job.max_tokens), 120);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << i << ": " << results[i].status.error_message();
    EXPECT_EQ(results[i].ids, kinds[i % kinds.size()].expected) << "stream " << i;
  }
}

TEST_F(GoldenClusterTest, BadInputGetsAClearErrorAndTheClusterKeepsServing) {
  ASSERT_NE(cluster_, nullptr);
  GrpcResult r = GenerateGrpc(cluster_->router(), IdsRequest({0, 5000}, 4));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r.status.error_message(), HasSubstr("outside the vocabulary"));
  r = GenerateGrpc(cluster_->router(), IdsRequest(std::vector<int32_t>(2100, 7), 4));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  r = GenerateGrpc(cluster_->router(), IdsRequest({0, 1}, 5000));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Limits on what costs time or memory per request, each a clear INVALID_ARGUMENT.
  v1::GenerateRequest limited = IdsRequest({0, 1}, 4);
  limited.mutable_sampling()->add_stop(std::string(1025, 'x'));
  r = GenerateGrpc(cluster_->router(), limited);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r.status.error_message(), HasSubstr("stop strings are at most 1024 bytes"));
  limited = IdsRequest({0, 1}, 4);
  for (int i = 0; i < 65; ++i) limited.mutable_sampling()->add_stop_token_ids(i);
  r = GenerateGrpc(cluster_->router(), limited);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r.status.error_message(), HasSubstr("at most 64 stop_token_ids"));
  limited = IdsRequest({0, 1}, 4);
  limited.set_n(5);
  r = GenerateGrpc(cluster_->router(), limited);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::GenerateRequest text;
  text.set_text("no tokenizer here");
  r = GenerateGrpc(cluster_->router(), text);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  httplib::Client http = cluster_->Http();
  auto res =
      http.Post("/v1/completions", "{\"prompt\": [0, 1], \"max_tokens\": -3}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  res = http.Post("/v1/completions", "{not json", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  res = http.Post("/v1/completions", "{\"prompt\": [0, 99999]}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  // Still serving, correctly.
  const Golden g = GoldenCases()[0];
  r = GenerateGrpc(cluster_->router(), IdsRequest(g.prompt, 8));
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.ids, g.greedy);
}

// --- Text, with the real tokenizer -------------------------------------------------------

TEST(TextClusterTest, ChatAndTextMatchTheEngineAndStopStringsCutText) {
  const std::string model = DemoModel();
  auto cluster = Cluster::Start(model, 1, 1, 17340);
  ASSERT_NE(cluster, nullptr);
  // The router's tokenization of a chat equals `dsv3 tokenize`'s; its text equals the
  // detokenized output of `dsv3 generate` on those ids.
  const std::string chat_line =
      R"({"messages": [{"role": "user", "content": "Hello, wie geht's? 你好"}], "add_generation_prompt": true})";
  const std::string input = MakeTempDir("chat") + "/in.jsonl";
  std::ofstream(input) << chat_line << "\n";
  auto [trc, tout] =
      RunCommand(absl::StrCat(BinaryPath("dsv3"), " tokenize --tokenizer ", model, " < ", input));
  ASSERT_EQ(trc, 0) << tout;
  std::vector<int32_t> prompt = nlohmann::json::parse(tout)["ids"].get<std::vector<int32_t>>();
  std::vector<int32_t> expected = Generate(model, prompt, 12);
  ASSERT_EQ(expected.size(), 12u);
  auto [drc, dout] =
      RunCommand(absl::StrCat("echo '{\"ids\": ", nlohmann::json(expected).dump(), "}' | ",
                              BinaryPath("dsv3"), " detokenize --tokenizer ", model));
  ASSERT_EQ(drc, 0) << dout;
  const std::string expected_text = nlohmann::json::parse(dout)["text"];

  httplib::Client http = cluster->Http();
  // At most 128 tools: each is rendered into the prompt.
  nlohmann::json tools = nlohmann::json::array();
  for (int i = 0; i < 129; ++i) {
    tools.push_back(
        {{"type", "function"}, {"function", {{"name", absl::StrCat("f", i)}, {"parameters", {}}}}});
  }
  nlohmann::json too_many = {{"messages", {{{"role", "user"}, {"content", "hi"}}}},
                             {"tools", tools}};
  auto refused = http.Post("/v1/chat/completions", too_many.dump(), "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400);
  EXPECT_THAT(refused->body, HasSubstr("at most 128 tools"));
  nlohmann::json body = {{"messages", {{{"role", "user"}, {"content", "Hello, wie geht's? 你好"}}}},
                         {"max_tokens", 12},
                         {"temperature", 0},
                         {"ignore_eos", true},
                         {"skip_special_tokens", false}};
  auto res = http.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  nlohmann::json j = nlohmann::json::parse(res->body);
  EXPECT_EQ(j["choices"][0]["message"]["content"], expected_text);
  EXPECT_EQ(j["usage"]["prompt_tokens"], prompt.size());

  // Streaming gives the same text, chunk by chunk.
  body["stream"] = true;
  res = http.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(res) << "httplib error " << static_cast<int>(res.error());
  std::string streamed;
  for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
    if (!absl::ConsumePrefix(&line, "data: ") || line == "[DONE]") continue;
    nlohmann::json chunk = nlohmann::json::parse(line);
    for (const auto& c : chunk["choices"]) {
      if (c["delta"].contains("content")) streamed += c["delta"]["content"].get<std::string>();
    }
  }
  EXPECT_EQ(streamed, expected_text);

  // A stop string taken from the middle of the expected text ends the text just before it.
  if (expected_text.size() > 8) {
    const std::string stop = expected_text.substr(expected_text.size() / 2, 3);
    body["stream"] = false;
    body["stop"] = {stop};
    res = http.Post("/v1/chat/completions", body.dump(), "application/json");
    ASSERT_TRUE(res);
    nlohmann::json s = nlohmann::json::parse(res->body);
    EXPECT_EQ(s["choices"][0]["message"]["content"],
              expected_text.substr(0, expected_text.find(stop)));
    EXPECT_EQ(s["choices"][0]["finish_reason"], "stop");
  }
}

// --- Transports ---------------------------------------------------------------------------

// `dsv3 cluster` moves the KV over shared memory unless told otherwise (and over TCP with
// expert workers); the same answers over loopback TCP, as pods on different nodes use it.
TEST(TcpClusterTest, GreedyOverTcpEqualsTheReference) {
  auto cluster = Cluster::Start(kGolden, 1, 1, 17480, 128, {"--ucx_transports=tcp"});
  ASSERT_NE(cluster, nullptr);
  std::vector<std::thread> clients;
  std::vector<GrpcResult> results(GoldenCases().size() * 3);
  for (size_t i = 0; i < results.size(); ++i) {
    clients.emplace_back([&, i] {
      const Golden g = GoldenCases()[i % GoldenCases().size()];
      results[i] = GenerateGrpc(cluster->router(), IdsRequest(g.prompt, 8));
    });
  }
  for (auto& c : clients) c.join();
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    EXPECT_EQ(results[i].ids, GoldenCases()[i % GoldenCases().size()].greedy);
  }
  std::stringstream log;
  log << std::ifstream(cluster->dir() + "/prefill-0.log").rdbuf();
  EXPECT_THAT(log.str(), HasSubstr("UCX transports: tcp, devices lo"));
}

// --- MTP speculative decoding ------------------------------------------------------------

TEST(SpeculativeClusterTest, MtpSpeculativeGreedyEqualsPlainGreedy) {
  const std::string model = DSV3_SOURCE_DIR "/tests/data/golden/tiny-v3-mtp";
  auto cluster = Cluster::Start(model, 1, 1, 17440, 128, {"--speculative=mtp"});
  ASSERT_NE(cluster, nullptr);
  int drafted = 0;
  for (const Golden& g : GoldenCases(model)) {
    GrpcResult r = GenerateGrpc(cluster->router(), IdsRequest(g.prompt, 8));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids, g.greedy);
    EXPECT_EQ(r.ids, Generate(model, g.prompt, 8));
    EXPECT_LE(r.usage.accepted_draft_tokens(), r.usage.draft_tokens());
    drafted += r.usage.draft_tokens();
    // The single-process speculative loop drafts and accepts exactly as many: the MTP rows
    // the prefill worker sent and the decode worker's drafts are the same computation.
    auto [src, sout] = RunCommand(absl::StrCat(BinaryPath("dsv3"), " generate --model ", model,
                                               " --tokens \"", absl::StrJoin(g.prompt, " "),
                                               "\" --max-tokens 8 --speculative mtp"));
    ASSERT_EQ(src, 0) << sout;
    EXPECT_THAT(sout, HasSubstr(absl::StrCat("drafted ", r.usage.draft_tokens(), " accepted ",
                                             r.usage.accepted_draft_tokens())));
    // Longer, with sampling: speculation must not change what a seed gives either.
    v1::GenerateRequest sampled = IdsRequest(g.prompt, 24);
    sampled.mutable_sampling()->set_temperature(0.8f);
    sampled.mutable_sampling()->set_seed(42);
    GrpcResult a = GenerateGrpc(cluster->router(), sampled);
    ASSERT_TRUE(a.status.ok()) << a.status.error_message();
    auto [rc, out] =
        RunCommand(absl::StrCat(BinaryPath("dsv3"), " generate --model ", model, " --tokens \"",
                                absl::StrJoin(g.prompt, " "),
                                "\" --max-tokens 24 --temperature 0.8 --seed 42 2>/dev/null"));
    ASSERT_EQ(rc, 0);
    EXPECT_EQ(a.ids, ParseIds(out));
  }
  EXPECT_GT(drafted, 0) << "no draft was proposed: speculation did not run";
  // Accepted drafts through the cluster: with random weights the MTP head rarely agrees with
  // the model, but on these prompts the single-process loop accepts one draft each within
  // 48 tokens; the cluster must give the same tokens and accept exactly as many.
  int accepted = 0;
  for (const std::vector<int32_t>& prompt :
       std::vector<std::vector<int32_t>>{{0, 23}, {0, 24}, {0, 30}}) {
    GrpcResult r = GenerateGrpc(cluster->router(), IdsRequest(prompt, 48));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids, Generate(model, prompt, 48));
    auto [src, sout] = RunCommand(absl::StrCat(BinaryPath("dsv3"), " generate --model ", model,
                                               " --tokens \"", absl::StrJoin(prompt, " "),
                                               "\" --max-tokens 48 --speculative mtp"));
    ASSERT_EQ(src, 0) << sout;
    EXPECT_THAT(sout, HasSubstr(absl::StrCat("drafted ", r.usage.draft_tokens(), " accepted ",
                                             r.usage.accepted_draft_tokens())));
    accepted += r.usage.accepted_draft_tokens();
  }
  EXPECT_GT(accepted, 0) << "no draft was accepted: the accepted path did not run";
}

TEST(SpeculativeClusterTest, SeveralDraftsPerStepDraftAndAcceptAsTheGeneratorDoes) {
  // --draft_tokens 3: the decode worker chains three MTP drafts per step, batched over its
  // sequences (engine/speculative.h), exactly as the single-process loop does for one.
  const std::string model = DSV3_SOURCE_DIR "/tests/data/golden/tiny-v3-mtp";
  auto cluster = Cluster::Start(model, 1, 1, 17450, 128, {"--speculative=mtp", "--draft_tokens=3"});
  ASSERT_NE(cluster, nullptr);
  const std::vector<std::vector<int32_t>> prompts = {{0, 23}, {0, 24}, {0, 30}, {0, 17, 5}};
  std::vector<GrpcResult> results(prompts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i) {
    threads.emplace_back(
        [&, i] { results[i] = GenerateGrpc(cluster->router(), IdsRequest(prompts[i], 40)); });
  }
  for (auto& t : threads) t.join();
  int drafted = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const GrpcResult& r = results[i];
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids, Generate(model, prompts[i], 40));
    auto [src, sout] = RunCommand(absl::StrCat(
        BinaryPath("dsv3"), " generate --model ", model, " --tokens \"",
        absl::StrJoin(prompts[i], " "), "\" --max-tokens 40 --speculative mtp --draft_tokens 3"));
    ASSERT_EQ(src, 0) << sout;
    EXPECT_THAT(sout, HasSubstr(absl::StrCat("drafted ", r.usage.draft_tokens(), " accepted ",
                                             r.usage.accepted_draft_tokens())));
    drafted += r.usage.draft_tokens();
  }
  // Three drafts a step: more than one draft per token verified would be impossible with one.
  int completion = 0;
  for (const GrpcResult& r : results) completion += r.usage.completion_tokens();
  EXPECT_GT(drafted, completion) << "fewer drafts than steps: the chain did not run";
}

// --- Capacity ------------------------------------------------------------------------------

TEST(ClusterCapacityTest, RequestsWaitForKvBlocksAndImpossibleOnesFailAtOnce) {
  // A decode pool of 4 blocks x 64 tokens: two requests of 100 tokens fit at a time.
  auto cluster = Cluster::Start(kGolden, 1, 1, 17420, /*kv_blocks=*/4);
  ASSERT_NE(cluster, nullptr);
  std::vector<GrpcResult> results(6);
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      results[i] = GenerateGrpc(cluster->router(), IdsRequest({0, 17, 5}, 97), 120);
    });
  }
  for (auto& t : threads) t.join();
  const std::vector<int32_t> expected = Generate(kGolden, {0, 17, 5}, 97);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << i << ": " << results[i].status.error_message();
    EXPECT_EQ(results[i].ids, expected) << i;
  }
  // Never fits: refused at once instead of waiting.
  const absl::Time start = absl::Now();
  GrpcResult r = GenerateGrpc(cluster->router(), IdsRequest({0, 17, 5}, 400));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << r.status.error_message();
  EXPECT_THAT(r.status.error_message(), HasSubstr("KV pool"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

// --- Batch invariance ----------------------------------------------------------------------

TEST(BatchInvariantClusterTest, ConcurrentRequestsGetTheTokensOfOneAlone) {
  // With bf16 activations, rounding makes the last bit of every sum count: when the batch-1
  // kernel still kept f32 activations, of three identical requests sent at once one left the
  // others at its 20th token (RESULTS.md, session 26). Now every BF16 projection that rounds runs
  // one kernel at every row count, by itself and with --batch_invariant: every request gets what
  // the single process gives, whatever its decode steps shared.
  int port = 18720;
  for (const std::string flags : {"--bf16_activations --batch_invariant", "--bf16_activations"}) {
    auto cluster = Cluster::Start(kGolden, 1, 1, port, 128, absl::StrSplit(flags, ' '));
    port += 10;
    ASSERT_NE(cluster, nullptr) << flags;
    const std::vector<int32_t> expected = Generate(kGolden, {0, 17, 5}, 32, flags);
    ASSERT_EQ(expected.size(), 32u);
    std::vector<GrpcResult> results(8);
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
      threads.emplace_back([&, i] {
        results[i] = GenerateGrpc(cluster->router(), IdsRequest({0, 17, 5}, 32));
      });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < 8; ++i) {
      ASSERT_TRUE(results[i].status.ok()) << i << ": " << results[i].status.error_message();
      EXPECT_EQ(results[i].ids, expected) << flags << ", request " << i;
    }
  }
}

}  // namespace
}  // namespace dsv3
