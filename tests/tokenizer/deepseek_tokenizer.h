#ifndef DSV3_TESTS_TOKENIZER_DEEPSEEK_TOKENIZER_H_
#define DSV3_TESTS_TOKENIZER_DEEPSEEK_TOKENIZER_H_

// Test access to the real DeepSeek-V3 tokenizer that scripts/install-npm-deps.sh installs, and
// to the reference files the CTest fixture (node scripts in this folder) writes. Missing files
// are test failures that name the install script, never skips.

#include <string>

#include "tokenizer/tokenizer.h"

namespace dsv3::tokenizer::testing {

// $DSV3_TOKENIZER_DIR, else ${DSV3_CACHE_DIR:-$HOME/.cache/dsv3}/deepseek-v3-tokenizer.
std::string DeepSeekTokenizerDir();

// Loaded once per process; records a test failure and returns nullptr when it cannot load.
const Tokenizer* DeepSeekTokenizer();

// Path of a reference file written by the fixture into the test build folder.
std::string ReferencePath(const std::string& name);

// Reads a file; records a test failure (naming the fixture) and returns "" when missing.
std::string ReadReferenceFile(const std::string& name);

}  // namespace dsv3::tokenizer::testing

#endif  // DSV3_TESTS_TOKENIZER_DEEPSEEK_TOKENIZER_H_
