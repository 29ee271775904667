#include "router/generation_config.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace dsv3::router {

absl::StatusOr<GenerationDefaults> LoadGenerationDefaults(const std::string& dir) {
  GenerationDefaults defaults;
  const std::string path = dir + "/generation_config.json";
  std::ifstream in(path);
  if (!in) return defaults;
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, false);
  if (!j.is_object()) return absl::InvalidArgumentError(path + " is not a JSON object");
  auto number = [&](const char* key, double lo,
                    double hi) -> absl::StatusOr<std::optional<double>> {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::optional<double>();
    if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() < lo ||
        it->get<double>() > hi) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": '", key, "' must be a number in [", lo, ", ", hi, "]"));
    }
    return std::optional<double>(it->get<double>());
  };
  absl::StatusOr<std::optional<double>> temperature = number("temperature", 0, 2);
  absl::StatusOr<std::optional<double>> top_p = number("top_p", 0, 1);
  absl::StatusOr<std::optional<double>> top_k = number("top_k", 0, 1 << 30);
  for (const auto* s : {&temperature, &top_p, &top_k}) {
    if (!s->ok()) return s->status();
  }
  if (temperature->has_value()) defaults.temperature = static_cast<float>(**temperature);
  if (top_p->has_value() && **top_p > 0) defaults.top_p = static_cast<float>(**top_p);
  if (top_k->has_value()) defaults.top_k = static_cast<int32_t>(**top_k);
  // transformers' do_sample: false means greedy whatever the temperature says.
  if (auto s = j.find("do_sample"); s != j.end() && s->is_boolean() && !s->get<bool>()) {
    defaults.temperature = 0.0f;
  }
  return defaults;
}

}  // namespace dsv3::router
