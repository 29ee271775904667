// `dsv3 make-model`: writes a synthetic checkpoint in the Hugging Face layout.

#include <cstdio>

#include "absl/flags/flag.h"
#include "engine/synthetic_checkpoint.h"
#include "tools/command_registry.h"
#include "tools/engine_flags.h"

namespace dsv3::tools {
namespace {

int MakeModel(const std::vector<std::string>& args) {
  if (!args.empty() || absl::GetFlag(FLAGS_out).empty()) {
    std::fprintf(stderr,
                 "usage: dsv3 make-model --preset tiny|bench --dtype bf16|fp8 --mtp 0|1 "
                 "--seed N --out DIR\n");
    return 2;
  }
  engine::SyntheticOptions options;
  options.preset = absl::GetFlag(FLAGS_preset);
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  if (dtype != "bf16" && dtype != "fp8") {
    std::fprintf(stderr, "dsv3 make-model: --dtype must be bf16 or fp8, got '%s'\n", dtype.c_str());
    return 2;
  }
  options.fp8 = dtype == "fp8";
  options.mtp_layers = absl::GetFlag(FLAGS_mtp);
  options.seed = absl::GetFlag(FLAGS_seed);
  const absl::Status status = engine::WriteSyntheticCheckpoint(absl::GetFlag(FLAGS_out), options);
  if (!status.ok()) {
    std::fprintf(stderr, "dsv3 make-model: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace dsv3::tools

DSV3_REGISTER_COMMAND(make_model, "make-model",
                      "write a synthetic DeepSeek-V3 checkpoint (HF layout)",
                      dsv3::tools::MakeModel);
