// `dsv3 complete --router ADDR`: one request through a router's gRPC API, printed as it
// streams. With --tokens it prints the generated ids on one line, exactly as
// `dsv3 generate` does, so the two can be compared.

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/grpc_status.h"
#include "common/tls_config.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "tools/command_registry.h"
#include "tools/engine_flags.h"
#include "tools/flag_groups.h"
#include "tools/router_client.h"

ABSL_FLAG(std::string, router, "127.0.0.1:50051", "Router gRPC address (host:port).");
ABSL_FLAG(std::string, prompt, "", "Prompt text (tokenized by the router).");
ABSL_FLAG(bool, chat, false, "Send --prompt as one user message through the chat template.");
ABSL_FLAG(std::vector<std::string>, stop, {}, "Stop strings.");
ABSL_FLAG(int, timeout_s, 600, "Request deadline in seconds.");

namespace dsv3::tools {
namespace {

absl::Status RunComplete(const std::vector<std::string>&) {
  v1::GenerateRequest request;
  const std::string tokens = absl::GetFlag(FLAGS_tokens);
  const bool ids_mode = !tokens.empty();
  if (ids_mode) {
    for (absl::string_view t : absl::StrSplit(tokens, ' ', absl::SkipEmpty())) {
      int32_t id;
      if (!absl::SimpleAtoi(t, &id)) {
        return UsageError(absl::StrCat("'", t, "' is not a token id"));
      }
      request.mutable_token_ids()->add_ids(id);
    }
  } else if (absl::GetFlag(FLAGS_chat)) {
    v1::ChatMessage* m = request.mutable_chat()->add_messages();
    m->set_role("user");
    m->set_content(absl::GetFlag(FLAGS_prompt));
  } else {
    request.set_text(absl::GetFlag(FLAGS_prompt));
  }
  v1::SamplingParams* s = request.mutable_sampling();
  s->set_max_tokens(static_cast<int32_t>(absl::GetFlag(FLAGS_max_tokens)));
  s->set_temperature(absl::GetFlag(FLAGS_temperature));
  s->set_top_p(absl::GetFlag(FLAGS_top_p));
  s->set_top_k(absl::GetFlag(FLAGS_top_k));
  s->set_min_p(absl::GetFlag(FLAGS_min_p));
  if (absl::GetFlag(FLAGS_seed) != 0) s->set_seed(absl::GetFlag(FLAGS_seed));
  for (const auto& stop : absl::GetFlag(FLAGS_stop)) s->add_stop(stop);
  // Token-id mode mirrors `dsv3 generate`: no EOS stop, ids only.
  if (ids_mode) {
    s->set_ignore_eos(true);
    request.set_return_text(false);
  }

  auto stub = v1::Inference::NewStub(ClientChannel(absl::GetFlag(FLAGS_router)));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::seconds(absl::GetFlag(FLAGS_timeout_s)));
  AddApiKey(ctx);
  auto reader = stub->Generate(&ctx, request);
  v1::GenerateResponse response;
  std::vector<int32_t> ids;
  while (reader->Read(&response)) {
    ids.insert(ids.end(), response.token_ids().begin(), response.token_ids().end());
    if (!ids_mode) {
      std::cout << response.text() << std::flush;
    }
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) {
    std::fputc('\n', stderr);  // after the text streamed so far
    return FromGrpcStatus(status);
  }
  if (ids_mode) {
    std::cout << absl::StrJoin(ids, " ") << "\n";
  } else {
    std::cout << "\n";
  }
  return absl::OkStatus();
}

}  // namespace

DSV3_REGISTER_COMMAND(complete, "complete",
                      "one request through a router (--prompt TEXT or --tokens \"ids\")",
                      RunComplete, {"request", {"prompt", "tokens", "chat"}},
                      {"sampling",
                       {"max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop"}},
                      RouterClientFlags());

}  // namespace dsv3::tools
