#include "worker_common/structured_outputs.h"

#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "tokenizer/tokenizer.h"

ABSL_DECLARE_FLAG(std::string, model);

namespace dsv3::worker {

absl::StatusOr<std::shared_ptr<structured_output::StructuredOutputs>> LoadStructuredOutputs(
    const engine::Model& model) {
  const std::string dir = absl::GetFlag(FLAGS_model);
  if (!std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json")) {
    DSV3_LOG(INFO) << "no tokenizer.json in " << dir << ": structured outputs are off";
    return nullptr;
  }
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok = tokenizer::Tokenizer::Load(dir);
  if (!tok.ok()) {
    return absl::Status(
        tok.status().code(),
        absl::StrCat("the tokenizer (for structured outputs): ", tok.status().message()));
  }
  std::vector<int32_t> end_ids = {static_cast<int32_t>(model.config().eos_token_id)};
  if ((*tok)->eos_id().has_value()) end_ids.push_back(*(*tok)->eos_id());
  return std::make_shared<structured_output::StructuredOutputs>(
      structured_output::VocabularyFromTokenizer(**tok, model.config().vocab_size,
                                                 std::move(end_ids)));
}

absl::StatusOr<std::unique_ptr<engine::TokenConstraint>> ConstraintFor(
    structured_output::StructuredOutputs* outputs, const v1::SamplingParams& sampling) {
  if (!sampling.has_grammar()) return nullptr;
  if (outputs == nullptr) {
    return absl::FailedPreconditionError(
        "structured output needs the model's tokenizer, and this worker's model has none");
  }
  return outputs->NewConstraint(sampling.grammar());
}

}  // namespace dsv3::worker
