// `dsv3 chat --router ADDR`: an interactive, streaming chat through a router's gRPC API.
//
// Each line read from stdin is a user turn; the whole conversation goes to the router as
// ChatMessages (it renders the model's chat template), and the assistant's text is printed
// as it streams, then kept as the assistant turn. `/reset` starts a new conversation,
// `/quit` or end of input ends. On a terminal a prompt and per-turn timing go to stderr; with
// stdin a pipe, stdout holds only the replies, one per user line, each ended by a newline.

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "common/grpc_status.h"
#include "common/tls_config.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "tools/command_registry.h"
#include "tools/engine_flags.h"
#include "tools/flag_groups.h"
#include "tools/router_client.h"

// Defined by complete_command.cc.
ABSL_DECLARE_FLAG(std::string, router);
ABSL_DECLARE_FLAG(std::vector<std::string>, stop);
ABSL_DECLARE_FLAG(int, timeout_s);

ABSL_FLAG(std::string, chat_system, "",
          "dsv3 chat: a system message that opens every conversation.");

namespace dsv3::tools {
namespace {

// Whether a flag differs from its default (Abseil 20220623 keeps "specified on the command
// line" private).
bool FlagChanged(absl::string_view name) {
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  return flag != nullptr && flag->CurrentValue() != flag->DefaultValue();
}

v1::SamplingParams SamplingFromFlags() {
  v1::SamplingParams s;
  // --max_tokens left at its default: the router's default, not the engine commands' 16.
  if (FlagChanged("max_tokens"))
    s.set_max_tokens(static_cast<int32_t>(absl::GetFlag(FLAGS_max_tokens)));
  s.set_temperature(static_cast<float>(absl::GetFlag(FLAGS_temperature)));
  s.set_top_p(static_cast<float>(absl::GetFlag(FLAGS_top_p)));
  s.set_top_k(absl::GetFlag(FLAGS_top_k));
  s.set_min_p(static_cast<float>(absl::GetFlag(FLAGS_min_p)));
  s.set_repetition_penalty(static_cast<float>(absl::GetFlag(FLAGS_repetition_penalty)));
  s.set_presence_penalty(static_cast<float>(absl::GetFlag(FLAGS_presence_penalty)));
  s.set_frequency_penalty(static_cast<float>(absl::GetFlag(FLAGS_frequency_penalty)));
  if (absl::GetFlag(FLAGS_seed) != 0) s.set_seed(absl::GetFlag(FLAGS_seed));
  for (const auto& stop : absl::GetFlag(FLAGS_stop)) s.add_stop(stop);
  return s;
}

void ResetConversation(v1::ChatPrompt* chat) {
  chat->clear_messages();
  const std::string system = absl::GetFlag(FLAGS_chat_system);
  if (system.empty()) return;
  v1::ChatMessage* m = chat->add_messages();
  m->set_role("system");
  m->set_content(system);
}

// One assistant turn: streams the reply to stdout as it arrives, returns its text.
grpc::Status StreamReply(v1::Inference::Stub& stub, const v1::GenerateRequest& request,
                         std::string* reply, int* tokens) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::seconds(absl::GetFlag(FLAGS_timeout_s)));
  AddApiKey(ctx);
  auto reader = stub.Generate(&ctx, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    *tokens += response.token_ids_size();
    if (response.text().empty()) continue;
    reply->append(response.text());
    std::fwrite(response.text().data(), 1, response.text().size(), stdout);
    std::fflush(stdout);
  }
  return reader->Finish();
}

absl::Status RunChat(const std::vector<std::string>&) {
  const bool interactive = isatty(STDIN_FILENO);
  auto stub = v1::Inference::NewStub(ClientChannel(absl::GetFlag(FLAGS_router)));
  v1::GenerateRequest request;
  request.set_model(absl::GetFlag(FLAGS_model));
  *request.mutable_sampling() = SamplingFromFlags();
  v1::ChatPrompt* chat = request.mutable_chat();
  ResetConversation(chat);
  if (interactive) {
    std::fprintf(stderr, "dsv3 chat: %s. /reset starts over, /quit or Ctrl-D ends.\n",
                 absl::GetFlag(FLAGS_router).c_str());
  }

  std::string line;
  while (true) {
    if (interactive) std::fputs("\n> ", stderr);
    if (!std::getline(std::cin, line)) break;
    const absl::string_view input = absl::StripAsciiWhitespace(line);
    if (input.empty()) continue;
    if (input == "/quit" || input == "/exit") break;
    if (input == "/reset") {
      ResetConversation(chat);
      if (interactive) std::fputs("(new conversation)\n", stderr);
      continue;
    }
    v1::ChatMessage* user = chat->add_messages();
    user->set_role("user");
    user->set_content(std::string(input));

    const auto start = std::chrono::steady_clock::now();
    std::string reply;
    int tokens = 0;
    grpc::Status status = StreamReply(*stub, request, &reply, &tokens);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    if (!status.ok()) {
      // The failed turn is dropped so the user can retry it.
      chat->mutable_messages()->RemoveLast();
      // Interactive, the user may retry; a script's conversation ends here.
      if (!interactive) return FromGrpcStatus(status);
      std::fprintf(stderr, "dsv3 chat: %s (%s)\n", status.error_message().c_str(),
                   absl::StatusCodeToString(FromGrpcStatus(status).code()).c_str());
      continue;
    }
    v1::ChatMessage* assistant = chat->add_messages();
    assistant->set_role("assistant");
    assistant->set_content(reply);
    if (interactive) {
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::fprintf(stderr, "[%d tokens, %.2f s]\n", tokens, s);
    }
  }
  if (interactive) std::fputs("\n", stderr);
  return absl::OkStatus();
}

}  // namespace

DSV3_REGISTER_COMMAND(chat, "chat", "interactive streaming chat through a router (--router ADDR)",
                      RunChat, {"chat", {"chat_system", "model"}},
                      {"sampling",
                       {"max_tokens", "temperature", "top_p", "top_k", "min_p",
                        "repetition_penalty", "presence_penalty", "frequency_penalty", "seed",
                        "stop"}},
                      RouterClientFlags());

}  // namespace dsv3::tools
