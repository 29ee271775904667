#ifndef DSV3_TOKENIZER_NORMALIZER_H_
#define DSV3_TOKENIZER_NORMALIZER_H_

// The normalizer of a tokenizer.json. Only normalizers that leave the text unchanged are
// implemented (none, or an empty Sequence, which is what DeepSeek-V3/R1/V3.1 ship); Unicode
// normalization forms, Lowercase, Replace, Prepend ... make loading fail with UNIMPLEMENTED
// instead of tokenizing un-normalized text in silence.

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace dsv3::tokenizer {

// OK when `normalizer` (the tokenizer.json "normalizer" value) is the identity.
[[nodiscard]] absl::Status CheckIdentityNormalizer(const nlohmann::json& normalizer);

}  // namespace dsv3::tokenizer

#endif  // DSV3_TOKENIZER_NORMALIZER_H_
