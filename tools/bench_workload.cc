#include "tools/bench_workload.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace dsv3::tools::bench {

absl::StatusOr<std::vector<Prompt>> ReadDataset(const std::string& path, int default_max_tokens) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::vector<Prompt> prompts;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    const std::string where = absl::StrCat(path, ":", n, ": ");
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(where + "not a JSON object");
    }
    Prompt p;
    p.max_tokens = default_max_tokens;
    if (j.contains("max_tokens")) {
      if (!j["max_tokens"].is_number_integer()) {
        return absl::InvalidArgumentError(where + "max_tokens must be an integer");
      }
      p.max_tokens = j["max_tokens"].get<int>();
    }
    if (j.contains("prompt") && j["prompt"].is_string()) {
      p.text = j["prompt"].get<std::string>();
    } else if (j.contains("token_ids") && j["token_ids"].is_array()) {
      for (const auto& id : j["token_ids"]) {
        if (!id.is_number_integer()) {
          return absl::InvalidArgumentError(where + "token_ids must be integers");
        }
        p.token_ids.push_back(id.get<int32_t>());
      }
    } else {
      return absl::InvalidArgumentError(where + "needs \"prompt\" (string) or \"token_ids\"");
    }
    if (p.text.empty() && p.token_ids.empty()) {
      return absl::InvalidArgumentError(where + "empty prompt");
    }
    prompts.push_back(std::move(p));
  }
  if (prompts.empty()) return absl::InvalidArgumentError(path + " holds no prompts");
  return prompts;
}

// Request `index` of the run: a dataset line, or random ids drawn from (seed, index) so that
// the same flags give the same prompts whatever order requests finish in.

}  // namespace dsv3::tools::bench
