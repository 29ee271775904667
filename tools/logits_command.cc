// `dsv3 logits`: one forward pass over the given tokens; writes the logits (and optionally the
// first MTP layer's) as little-endian float32 rows of vocab_size.

#include <cstdio>
#include <memory>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/model.h"
#include "engine/mtp.h"
#include "tools/command_registry.h"
#include "tools/engine_flags.h"
#include "tools/flag_groups.h"

namespace dsv3::tools {
namespace {

absl::Status WriteFloats(const std::string& path, const std::vector<float>& v) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) return absl::InternalError(absl::StrCat(path, ": cannot create"));
  if (std::fwrite(v.data(), sizeof(float), v.size(), f.get()) != v.size()) {
    return absl::InternalError(absl::StrCat(path, ": write failed"));
  }
  return absl::OkStatus();
}

absl::Status Run() {
  const std::string mtp_output = absl::GetFlag(FLAGS_mtp_output);
  DSV3_ASSIGN_OR_RETURN(engine::LoadOptions load, LoadOptionsFromFlags());
  load.load_mtp = !mtp_output.empty();
  DSV3_ASSIGN_OR_RETURN(auto model, engine::Model::Load(absl::GetFlag(FLAGS_model), load));
  DSV3_ASSIGN_OR_RETURN(std::vector<int32_t> tokens, ParseTokenList(absl::GetFlag(FLAGS_tokens)));
  DSV3_RETURN_IF_ERROR(model->ValidateTokens(tokens, 0));
  const int64_t n = static_cast<int64_t>(tokens.size());
  DSV3_ASSIGN_OR_RETURN(auto pool, engine::KvCachePool::Create(model->KvLayout((n + 63) / 64)));
  engine::KvSequence seq;
  engine::SequenceInput in{tokens, &seq, /*all_logits=*/true};
  engine::ForwardOptions options;
  options.return_hidden = !mtp_output.empty();
  DSV3_ASSIGN_OR_RETURN(engine::ForwardResult out, model->Forward({&in, 1}, *pool, options));
  DSV3_RETURN_IF_ERROR(WriteFloats(absl::GetFlag(FLAGS_output), out.logits));
  if (mtp_output.empty()) return absl::OkStatus();
  if (!model->has_mtp()) {
    return absl::FailedPreconditionError("--mtp-output: the model has no MTP layer");
  }
  std::vector<float> mtp_logits;
  if (n > 1) {
    const int64_t h = model->config().hidden_size;
    engine::MtpInput mtp;
    mtp.hidden = std::span<const float>(out.hidden).subspan(0, (n - 1) * h);
    mtp.next_tokens = std::span<const int32_t>(tokens).subspan(1);
    mtp.kv = &seq;
    mtp.all_logits = true;
    DSV3_ASSIGN_OR_RETURN(engine::ForwardResult m, engine::MtpForward(*model, {&mtp, 1}, *pool));
    mtp_logits = std::move(m.logits);
  }
  return WriteFloats(mtp_output, mtp_logits);
}

absl::Status Logits(const std::vector<std::string>& args) {
  if (!args.empty() || absl::GetFlag(FLAGS_model).empty() || absl::GetFlag(FLAGS_output).empty()) {
    return UsageError(
        "usage: dsv3 logits --model DIR --tokens \"0 17 5\" --output FILE "
        "[--mtp-output FILE]");
  }
  return Run();
}

}  // namespace
}  // namespace dsv3::tools

DSV3_REGISTER_COMMAND(logits, "logits", "write the logits of one forward pass (float32 LE)",
                      dsv3::tools::Logits, {"logits", {"tokens", "output", "mtp_output"}},
                      dsv3::tools::ModelLoadFlags());
