// libFuzzer target: a checkpoint's config.json through ParseModelConfig. An accepted config
// must be one the engine can size buffers from (every dimension it multiplies positive, the
// products within int64), else an INVALID_ARGUMENT; never a crash.
//
//   model_config_fuzzer -max_total_time=60 CORPUS_DIR tests/fuzz/model_config

#include <cstdint>

#include "engine/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto config =
      dsv3::engine::ParseModelConfig(absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!config.ok()) {
    if (config.status().code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
    return 0;
  }
  if (config->hidden_size <= 0 || config->vocab_size <= 0 || config->num_hidden_layers <= 0 ||
      config->num_attention_heads <= 0) {
    __builtin_trap();
  }
  int64_t embedding = 0;
  if (__builtin_mul_overflow(static_cast<int64_t>(config->hidden_size),
                             static_cast<int64_t>(config->vocab_size), &embedding)) {
    __builtin_trap();
  }
  return 0;
}
