#ifndef DSV3_ROUTER_GENERATION_CONFIG_H_
#define DSV3_ROUTER_GENERATION_CONFIG_H_

// A checkpoint's generation_config.json: the sampling defaults its authors chose
// (DeepSeek-V3: temperature 0.6, top_p 0.95), which the OpenAI API applies to requests that
// leave them out.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace dsv3::router {

struct GenerationDefaults {
  std::optional<float> temperature;  // 0 when the file says do_sample: false
  std::optional<float> top_p;
  std::optional<int32_t> top_k;
};

// DIR/generation_config.json; no defaults when there is none. INVALID_ARGUMENT naming the
// field for a file that does not parse or a value out of range.
absl::StatusOr<GenerationDefaults> LoadGenerationDefaults(const std::string& dir);

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_GENERATION_CONFIG_H_
