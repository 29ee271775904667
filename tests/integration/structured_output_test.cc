// Structured outputs and tool calls on a real cluster serving a model with random weights
// and the real DeepSeek-V3 tokenizer, MTP speculation on: the official OpenAI SDK as the
// client (tests/integration/openai_sdk_structured.mjs: json_schema through the SDK's parse
// helper, json_object cut by max_tokens, a forced tool call and its round trip, streamed
// tool-call deltas, 400s), and a real gRPC stub reading the typed tool_calls.

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster_fixture.h"
#include "tests/support/subprocess.h"

namespace dsv3 {
namespace {

using ::dsv3::testing::Cluster;
using ::testing::HasSubstr;

// The demo shape (DeepSeek-V3's vocabulary and tokenizer) with an MTP layer.
std::string DemoModelWithMtp() {
  const char* home = std::getenv("HOME");
  const std::string tok =
      std::getenv("DSV3_TOKENIZER_DIR")
          ? std::getenv("DSV3_TOKENIZER_DIR")
          : absl::StrCat(home ? home : "/root", "/.cache/dsv3/deepseek-v3-tokenizer");
  const std::string out = testing::MakeTempDir("demo-mtp");
  auto [rc, log] = testing::RunCommand(
      absl::StrCat(testing::BinaryPath("dsv3"), " make-model --preset demo --dtype bf16 --mtp 1 ",
                   "--seed 11 --out ", out, " --tokenizer ", tok));
  EXPECT_EQ(rc, 0) << log;
  // Sampling defaults, as real checkpoints ship them (the OpenAI API applies them).
  std::ofstream(out + "/generation_config.json")
      << R"({"do_sample": true, "temperature": 0.7, "top_p": 0.9})";
  return out;
}

TEST(StructuredOutputTest, TheOpenAiSdkGetsValidJsonAndToolCallsFromRandomWeights) {
  const std::string model = DemoModelWithMtp();
  auto cluster = Cluster::Start(model, 1, 1, 18660, 256,
                                {"--speculative=mtp", "--reasoning_parser=deepseek_r1"});
  ASSERT_NE(cluster, nullptr);
  const std::string name = model.substr(model.find_last_of('/') + 1);
  auto [rc, out] = testing::RunCommand(
      absl::StrCat("node " DSV3_SOURCE_DIR "/tests/integration/openai_sdk_structured.mjs http://",
                   cluster->Address("router", "http"), "/v1 ", name, " 2>&1"));
  EXPECT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("all structured-output checks passed"));

  // gRPC: the checkpoint's sampling defaults are the model's.
  auto channel = grpc::CreateChannel(cluster->router(), grpc::InsecureChannelCredentials());
  auto stub = v1::Inference::NewStub(channel);
  {
    grpc::ClientContext context;
    v1::GetModelInfoRequest get;
    v1::ModelInfo info;
    ASSERT_TRUE(stub->GetModelInfo(&context, get, &info).ok());
    EXPECT_FLOAT_EQ(info.default_temperature(), 0.7f);
    EXPECT_FLOAT_EQ(info.default_top_p(), 0.9f);
    EXPECT_FALSE(info.has_default_top_k());
  }

  // gRPC: the same forced call arrives in typed fields.
  v1::GenerateRequest request;
  v1::ChatPrompt* chat = request.mutable_chat();
  v1::ChatMessage* m = chat->add_messages();
  m->set_role("user");
  m->set_content("Time in Tokyo?");
  v1::Tool* tool = chat->add_tools();
  tool->set_type("function");
  tool->set_name("get_time");
  tool->set_parameters_json(
      R"({"type":"object","properties":{"zone":{"type":"string","maxLength":6}},"required":["zone"]})");
  chat->mutable_tool_choice()->set_mode(v1::ToolChoice::TOOL_CHOICE_REQUIRED);
  request.mutable_sampling()->set_max_tokens(120);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = stub->Generate(&context, request);
  v1::GenerateResponse response;
  std::string name_seen, arguments, text;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  while (reader->Read(&response)) {
    text += response.text();
    for (const v1::ToolCallDelta& call : response.tool_calls()) {
      EXPECT_EQ(call.index(), 0);
      if (!call.function_name().empty()) name_seen = call.function_name();
      arguments += call.arguments();
    }
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED)
      finish = response.finish_reason();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(name_seen, "get_time");
  EXPECT_EQ(finish, v1::FINISH_REASON_TOOL_CALLS);
  EXPECT_EQ(text, "") << "the call's markers are not content";
  nlohmann::json args = nlohmann::json::parse(arguments, nullptr, false);
  ASSERT_TRUE(args.is_object()) << arguments;
  EXPECT_TRUE(args["zone"].is_string()) << arguments;
}

}  // namespace
}  // namespace dsv3
