#ifndef DSV3_WORKER_COMMON_STRUCTURED_OUTPUTS_H_
#define DSV3_WORKER_COMMON_STRUCTURED_OUTPUTS_H_

// The prefill and decode workers' structured outputs: the vocabulary of the --model
// directory's tokenizer, and the constraint a request's wire grammar becomes.

#include <memory>

#include "absl/status/statusor.h"
#include "dsv3/v1/common.pb.h"
#include "engine/model.h"
#include "engine/token_constraint.h"
#include "structured_output/grammar_constraint.h"

namespace dsv3::worker {

// From the --model directory. Null when it has no tokenizer.json (requests with a grammar then fail
// with FAILED_PRECONDITION); an error when it has one that does not load.
absl::StatusOr<std::shared_ptr<structured_output::StructuredOutputs>> LoadStructuredOutputs(
    const engine::Model& model);

// The request's constraint, or null when its sampling carries no grammar.
absl::StatusOr<std::unique_ptr<engine::TokenConstraint>> ConstraintFor(
    structured_output::StructuredOutputs* outputs, const v1::SamplingParams& sampling);

}  // namespace dsv3::worker

#endif  // DSV3_WORKER_COMMON_STRUCTURED_OUTPUTS_H_
