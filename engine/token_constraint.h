#ifndef DSV3_ENGINE_TOKEN_CONSTRAINT_H_
#define DSV3_ENGINE_TOKEN_CONSTRAINT_H_

// What a request's sampler asks of a structured-output constraint (a grammar the output
// must follow, structured_output/grammar_constraint.h): which tokens may come next, and
// the token that came. The engine knows nothing of grammars.

#include <cstdint>
#include <span>

#include "absl/status/status.h"

namespace dsv3::engine {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // Sets the logits of the tokens that may not come next to -infinity. `tokens_left`: how
  // many tokens may still be generated, this one included (the constraint keeps room to
  // finish). An error ends the request (e.g. an earlier token broke the grammar).
  virtual absl::Status Mask(std::span<float> logits, int64_t tokens_left) = 0;
  // The next token of the output (sampled here, or elsewhere and replayed).
  virtual absl::Status Accept(int32_t token) = 0;
};

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_TOKEN_CONSTRAINT_H_
