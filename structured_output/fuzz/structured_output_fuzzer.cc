// libFuzzer target: what reaches a grammar from outside. Input that parses as JSON is a
// JSON Schema (response_format, a tool's parameters): the builder either refuses it with
// INVALID_ARGUMENT or makes a grammar that must compile. Other input is a wire
// dsv3.v1.Grammar (a prefill or decode worker's request): compiled, or INVALID_ARGUMENT.
// Either way a compiled grammar then matches the input's bytes as an output, its shortest
// completion and end state queried at every byte; never a crash, a hang or a deep stack.
//
//   structured_output_fuzzer -max_total_time=60 CORPUS_DIR tests/fuzz/structured_output

#include <cstdint>

#include "nlohmann/json.hpp"
#include "structured_output/grammar_builder.h"
#include "structured_output/grammar_matcher.h"

using dsv3::structured_output::CompiledGrammar;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  dsv3::v1::Grammar grammar;
  auto schema = nlohmann::ordered_json::parse(data, data + size, nullptr, false);
  const bool from_schema = !schema.is_discarded();
  if (from_schema) {
    auto built = dsv3::structured_output::JsonSchemaGrammar(schema);
    if (!built.ok()) {
      if (built.status().code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
      return 0;
    }
    grammar = *std::move(built);
  } else if (!grammar.ParseFromArray(data, static_cast<int>(size))) {
    return 0;
  }
  auto compiled = CompiledGrammar::Compile(grammar);
  if (!compiled.ok()) {
    // What the builder makes always compiles; a wire grammar may be refused.
    if (from_schema || compiled.status().code() != absl::StatusCode::kInvalidArgument) {
      __builtin_trap();
    }
    return 0;
  }
  const CompiledGrammar& g = **compiled;
  dsv3::structured_output::MatchState state = g.Start();
  if (g.MinRemainingBytes(state) < 0) __builtin_trap();
  for (size_t i = 0; i < size; ++i) {
    if (!g.Advance(state, data[i])) break;
    if (state.stack.size() > CompiledGrammar::kMaxDepth) __builtin_trap();
    (void)g.CanEnd(state);
    if (g.MinRemainingBytes(state) < 0) __builtin_trap();
  }
  return 0;
}
