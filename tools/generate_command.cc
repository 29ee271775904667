// `dsv3 generate`: generates tokens in-process (greedy unless sampling flags say otherwise)
// and prints their ids on one stdout line; `--speculative mtp` drafts with the MTP layer.

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "engine/generator.h"
#include "engine/model.h"
#include "tools/command_registry.h"
#include "tools/engine_flags.h"
#include "tools/flag_groups.h"

namespace dsv3::tools {
namespace {

absl::Status Run() {
  engine::GenerateOptions options;
  const std::string speculative = absl::GetFlag(FLAGS_speculative);
  if (!speculative.empty() && speculative != "mtp") {
    return UsageError("--speculative must be empty or 'mtp'");
  }
  options.speculative_mtp = speculative == "mtp";
  options.num_draft_tokens = absl::GetFlag(FLAGS_draft_tokens);
  options.max_new_tokens = absl::GetFlag(FLAGS_max_tokens);
  DSV3_ASSIGN_OR_RETURN(options.sampling, SamplingParamsFromFlags());
  DSV3_ASSIGN_OR_RETURN(engine::LoadOptions load, LoadOptionsFromFlags());
  load.load_mtp = options.speculative_mtp;
  DSV3_ASSIGN_OR_RETURN(auto model, engine::Model::Load(absl::GetFlag(FLAGS_model), load));
  DSV3_ASSIGN_OR_RETURN(std::vector<int32_t> tokens, ParseTokenList(absl::GetFlag(FLAGS_tokens)));
  DSV3_ASSIGN_OR_RETURN(engine::GenerateResult result, engine::Generate(*model, tokens, options));
  std::printf("%s\n", absl::StrJoin(result.token_ids(), " ").c_str());
  if (options.speculative_mtp) {
    std::fprintf(stderr, "speculative: drafted %lld accepted %lld (%.1f%%) main steps %lld\n",
                 static_cast<long long>(result.drafted), static_cast<long long>(result.accepted),
                 result.drafted > 0 ? 100.0 * result.accepted / result.drafted : 0.0,
                 static_cast<long long>(result.main_steps));
  }
  return absl::OkStatus();
}

absl::Status Generate(const std::vector<std::string>& args) {
  if (!args.empty() || absl::GetFlag(FLAGS_model).empty()) {
    return UsageError(
        "usage: dsv3 generate --model DIR --tokens \"0 17 5\" --max-tokens 8 "
        "[--temperature T --top-p P --top-k K --min-p M --seed S] [--speculative mtp "
        "--draft-tokens K]");
  }
  return Run();
}

}  // namespace
}  // namespace dsv3::tools

DSV3_REGISTER_COMMAND(generate, "generate", "generate tokens in-process and print their ids",
                      dsv3::tools::Generate,
                      {"generate", {"tokens", "max_tokens", "speculative", "draft_tokens"}},
                      dsv3::tools::ModelLoadFlags(), dsv3::tools::EngineSamplingFlags());
