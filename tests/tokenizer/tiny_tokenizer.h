#ifndef DSV3_TESTS_TOKENIZER_TINY_TOKENIZER_H_
#define DSV3_TESTS_TOKENIZER_TINY_TOKENIZER_H_

// A small hand-made byte-level BPE tokenizer.json for unit tests that must not depend on the
// real files: the 256 byte tokens (ids 0..255), the given merges (ids from 256 on, in order),
// and a DeepSeek-like pre-tokenizer. Tests edit the returned JSON to probe options.

#include <string>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"

namespace dsv3::tokenizer::testing {

// `merges`: pairs of tokens spelled in the byte-level alphabet (e.g. {"a", "b"}).
nlohmann::json TinyTokenizerJson(const std::vector<std::pair<std::string, std::string>>& merges);

}  // namespace dsv3::tokenizer::testing

#endif  // DSV3_TESTS_TOKENIZER_TINY_TOKENIZER_H_
