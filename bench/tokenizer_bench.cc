// C++ side of the tokenizer bench: encode/decode throughput on the corpus file written by
// tokenizer_bench.mjs (one JSON string per line), single thread, and the time to tokenize one
// ~100k-token prompt. usage: tokenizer_bench TOKENIZER_DIR CORPUS_FILE

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s TOKENIZER_DIR CORPUS_FILE\n", argv[0]);
    return 2;
  }
  auto tok = dsv3::tokenizer::Tokenizer::Load(argv[1]);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", tok.status().ToString().c_str());
    return 1;
  }
  std::vector<std::string> docs;
  std::ifstream in(argv[2]);
  std::string line;
  size_t bytes = 0;
  while (std::getline(in, line)) {
    docs.push_back(nlohmann::json::parse(line).get<std::string>());
    bytes += docs.back().size();
  }
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point a) {
    return std::chrono::duration<double>(Clock::now() - a).count();
  };
  std::vector<std::vector<int32_t>> all(docs.size());
  size_t tokens = 0;
  auto t0 = Clock::now();
  for (size_t i = 0; i < docs.size(); ++i) {
    all[i] = (*tok)->Encode(docs[i], {.add_special_tokens = false}).value();
    tokens += all[i].size();
  }
  const double encode_s = seconds(t0);
  t0 = Clock::now();
  size_t decoded = 0;
  for (const auto& ids : all) decoded += (*tok)->Decode(ids).value().size();
  const double decode_s = seconds(t0);

  // One long prompt: concatenated corpus documents up to ~100k tokens; fresh word cache is
  // not possible per call, so report the first (cold) and a repeated (warm) run.
  std::string prompt;
  for (size_t i = docs.size() / 2, n = 0; n < 100000 && i < docs.size(); ++i) {
    prompt += docs[i];
    prompt += "\n";
    n += all[i].size() + 1;
  }
  t0 = Clock::now();
  const size_t prompt_tokens = (*tok)->Encode(prompt).value().size();
  const double prompt_s = seconds(t0);
  std::printf(
      "{\"impl\": \"c++ dsv3_tokenizer\", \"docs\": %zu, \"bytes\": %zu, \"tokens\": %zu, "
      "\"encode_mb_s\": %.2f, \"decode_mb_s\": %.2f, \"prompt_tokens\": %zu, "
      "\"prompt_ms\": %.2f}\n",
      docs.size(), bytes, tokens, bytes / 1e6 / encode_s, decoded / 1e6 / decode_s, prompt_tokens,
      prompt_s * 1e3);
  return 0;
}
