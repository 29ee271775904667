// `dsv3 make-model`: writes a synthetic checkpoint in the Hugging Face layout.

#include <cstdio>
#include <filesystem>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/synthetic_checkpoint.h"
#include "tools/command_registry.h"
#include "tools/engine_flags.h"

// --tokenizer (defined by the tokenize command): tokenizer files to copy into the model.
ABSL_DECLARE_FLAG(std::string, tokenizer);
ABSL_FLAG(double, router_skew, 0,
          "dsv3 make-model: skew routed-expert selection Zipf-like (expert of rank k per layer "
          "gets -S*ln(k) added to its e_score_correction_bias); 0: off, the usual checkpoint.");

namespace dsv3::tools {
namespace {

absl::Status MakeModel(const std::vector<std::string>& args) {
  if (!args.empty() || absl::GetFlag(FLAGS_out).empty()) {
    return UsageError(
        "usage: dsv3 make-model --preset tiny|demo|bench --dtype bf16|fp8 --mtp 0|1 "
        "--seed N --out DIR [--tokenizer DIR] [--router_skew S]");
  }
  engine::SyntheticOptions options;
  options.preset = absl::GetFlag(FLAGS_preset);
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  if (dtype != "bf16" && dtype != "fp8") {
    return UsageError(absl::StrCat("--dtype must be bf16 or fp8, got '", dtype, "'"));
  }
  options.fp8 = dtype == "fp8";
  options.mtp_layers = absl::GetFlag(FLAGS_mtp);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.router_skew = absl::GetFlag(FLAGS_router_skew);
  DSV3_RETURN_IF_ERROR(engine::WriteSyntheticCheckpoint(absl::GetFlag(FLAGS_out), options));
  // The tokenizer travels with the model, as in a Hugging Face model directory.
  const std::string tokenizer = absl::GetFlag(FLAGS_tokenizer);
  if (!tokenizer.empty()) {
    for (const char* file : {"tokenizer.json", "tokenizer_config.json"}) {
      std::error_code ec;
      std::filesystem::copy_file(std::filesystem::path(tokenizer) / file,
                                 std::filesystem::path(absl::GetFlag(FLAGS_out)) / file,
                                 std::filesystem::copy_options::overwrite_existing, ec);
      if (ec && std::string(file) == "tokenizer.json") {
        return absl::NotFoundError(
            absl::StrCat("copying ", tokenizer, "/", file, ": ", ec.message()));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace dsv3::tools

DSV3_REGISTER_COMMAND(make_model, "make-model",
                      "write a synthetic DeepSeek-V3 checkpoint (HF layout)",
                      dsv3::tools::MakeModel,
                      {"make-model",
                       {"out", "preset", "dtype", "mtp", "seed", "tokenizer", "router_skew"}});
