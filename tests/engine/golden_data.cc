#include "tests/engine/golden_data.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "nlohmann/json.hpp"

namespace dsv3::engine::testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<float> Slice(const std::string& bin, const nlohmann::json& ref) {
  const int64_t offset = ref["offset"].get<int64_t>();
  int64_t n = 1;
  for (const auto& d : ref["shape"]) n *= d.get<int64_t>();
  std::vector<float> out(static_cast<size_t>(n));
  if (offset + n * 4 > static_cast<int64_t>(bin.size())) {
    ADD_FAILURE() << "golden.bin too short";
    return {};
  }
  std::memcpy(out.data(), bin.data() + offset, static_cast<size_t>(n) * 4);
  return out;
}

}  // namespace

std::string GoldenDir(const std::string& name) {
  return std::string(DSV3_SOURCE_DIR) + "/tests/data/golden/" + name;
}

GoldenCase LoadGolden(const std::string& name) {
  GoldenCase g;
  g.name = name;
  g.dir = GoldenDir(name);
  const std::string bin = ReadFile(g.dir + "/golden.bin");
  auto j = nlohmann::json::parse(ReadFile(g.dir + "/golden.json"), nullptr, false);
  auto cfg = nlohmann::json::parse(ReadFile(g.dir + "/config.json"), nullptr, false);
  if (j.is_discarded() || cfg.is_discarded() || bin.empty()) {
    ADD_FAILURE() << "cannot read golden case " << g.dir;
    return g;
  }
  g.vocab = cfg["vocab_size"].get<int64_t>();
  for (const auto& p : j["prompts"]) {
    GoldenPrompt gp;
    gp.prompt = p["prompt"].get<std::vector<int32_t>>();
    gp.logits = Slice(bin, p["logits"]);
    gp.greedy_tokens = p["greedy_tokens"].get<std::vector<int32_t>>();
    gp.greedy_step_logits = Slice(bin, p["greedy_step_logits"]);
    gp.final_hidden_l2 = p["final_hidden_l2"].get<std::vector<double>>();
    for (auto it = p["routing"].begin(); it != p["routing"].end(); ++it) {
      gp.routing_experts[std::stoll(it.key())] =
          (*it)["experts"].get<std::vector<std::vector<int32_t>>>();
    }
    if (p.contains("mtp_logits")) gp.mtp_logits = Slice(bin, p["mtp_logits"]);
    g.prompts.push_back(std::move(gp));
  }
  return g;
}

Diff Compare(const float* got, const float* want, int64_t n) {
  Diff d;
  for (int64_t i = 0; i < n; ++i) {
    d.max_abs_diff = std::max(d.max_abs_diff, std::fabs(static_cast<double>(got[i]) - want[i]));
    d.max_abs_ref = std::max(d.max_abs_ref, std::fabs(static_cast<double>(want[i])));
    if (std::isnan(got[i])) d.max_abs_diff = INFINITY;
  }
  return d;
}

}  // namespace dsv3::engine::testing
