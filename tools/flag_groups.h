#ifndef DSV3_TOOLS_FLAG_GROUPS_H_
#define DSV3_TOOLS_FLAG_GROUPS_H_

// Flag groups that more than one `dsv3` command reads, for their --help and for refusing a
// flag a command does not take. The flags themselves are defined once (engine_flags.cc,
// complete_command.cc).

#include "common/cli.h"

namespace dsv3::tools {

// generate, logits: the checkpoint and the engine's threads.
inline FlagGroup ModelLoadFlags() {
  return {
      "model loading",
      {"model", "threads", "weights", "int8_activations", "bf16_activations", "batch_invariant"}};
}

// generate: sampling in the in-process engine (SamplingParamsFromFlags).
inline FlagGroup EngineSamplingFlags() {
  return {"sampling",
          {"temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
           "frequency_penalty", "seed", "stop_token_ids"}};
}

// complete, chat, bench: the router they talk to.
inline FlagGroup RouterClientFlags() {
  return {"router connection",
          {"router", "timeout_s", "api_key", "tls_ca", "tls_cert", "tls_key", "tls_server_name"}};
}

}  // namespace dsv3::tools

#endif  // DSV3_TOOLS_FLAG_GROUPS_H_
