#include "bench/engine_bench_roles.h"

#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/engine_bench_machine.h"
#include "engine/model.h"

namespace dsv3::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

absl::StatusOr<engine::LoadOptions> ParseRole(std::string spec) {
  engine::LoadOptions o;
  if (absl::EndsWith(spec, "+noprefault")) {
    o.prefault = false;
    spec.resize(spec.size() - std::string("+noprefault").size());
  }
  if (spec == "everything") return o;
  if (spec == "attention") {
    o.role = engine::LoadRole::kAttentionSide;
    return o;
  }
  std::vector<std::string> parts = absl::StrSplit(spec, absl::ByAnyChar(":-"));
  int64_t first, last;
  if (parts.size() != 3 || parts[0] != "experts" || !absl::SimpleAtoi(parts[1], &first) ||
      !absl::SimpleAtoi(parts[2], &last)) {
    return absl::InvalidArgumentError(absl::StrCat("bad role '", spec, "'"));
  }
  o.role = engine::LoadRole::kRoutedExperts;
  for (int64_t e = first; e <= last; ++e) o.expert_ids.push_back(e);
  return o;
}

}  // namespace

int RunRoleChild(const std::string& dir, const std::string& spec, int threads) {
  auto options = ParseRole(spec);
  if (!options.ok()) {
    std::fprintf(stderr, "%s\n", options.status().ToString().c_str());
    return 2;
  }
  options->num_threads = threads;
  options->progress = engine::ProgressMode::kOff;
  nlohmann::json j;
  j["role"] = spec;
  j["rss_before_bytes"] = ReadMemoryUsage().rss_bytes;
  auto t0 = Clock::now();
  auto model = engine::Model::Load(dir, *options);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  j["load_s"] = Seconds(t0);
  j["held_bytes"] = (*model)->weights().bytes;
  MemoryUsage mem = ReadMemoryUsage();
  j["rss_bytes"] = mem.rss_bytes;
  j["rss_file_bytes"] = mem.rss_file_bytes;
  j["rss_anon_bytes"] = mem.rss_anon_bytes;
  if ((*model)->CheckCanForward().ok() && options->role == engine::LoadRole::kEverything) {
    // The first request: 32-token prompt, then 16 decode steps (touches most experts).
    auto pool = engine::KvCachePool::Create((*model)->KvLayout(1));
    std::vector<int32_t> tokens(32);
    for (int i = 0; i < 32; ++i) tokens[i] = 1000 + 37 * i;
    engine::KvSequence seq;
    t0 = Clock::now();
    for (int step = 0; step < 17; ++step) {
      engine::SequenceInput in{tokens, &seq, false};
      auto out = (*model)->Forward({&in, 1}, **pool);
      if (!out.ok()) return 1;
      tokens = {static_cast<int32_t>(step * 7919 % 129280)};
    }
    j["first_request_s"] = Seconds(t0);
    j["rss_after_request_bytes"] = ReadMemoryUsage().rss_bytes;
  }
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

absl::StatusOr<nlohmann::json> MeasureRoles(const std::string& self, const std::string& dir,
                                            int threads) {
  const char* kRoles[] = {"everything", "everything+noprefault", "attention", "experts:0-31",
                          "experts:0-7"};
  nlohmann::json all = nlohmann::json::array();
  std::printf("%-24s %10s %10s %10s %8s %8s %s\n", "role", "held GB", "RSS GB", "RSS-base GB",
              "ratio", "load s", "first request (prompt 32 + 16 decode)");
  for (const char* role : kRoles) {
    const std::string cmd = absl::StrCat("'", self, "' --role_child='", role, "' --model='", dir,
                                         "' --threads=", threads);
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(cmd.c_str(), "r"), ::pclose);
    if (pipe == nullptr) return absl::InternalError("popen failed");
    std::string out;
    char buf[4096];
    while (std::fgets(buf, sizeof(buf), pipe.get()) != nullptr) out += buf;
    nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
    if (j.is_discarded())
      return absl::InternalError(absl::StrCat("role child '", role, "' failed"));
    const double held = j["held_bytes"].get<double>();
    const double rss = j["rss_bytes"].get<double>();
    const double base = j["rss_before_bytes"].get<double>();
    j["rss_minus_base_ratio"] = (rss - base) / held;
    std::printf("%-24s %10.3f %10.3f %10.3f %8.3f %8.2f %s\n", role, held / 1e9, rss / 1e9,
                (rss - base) / 1e9, (rss - base) / held, j["load_s"].get<double>(),
                j.contains("first_request_s")
                    ? absl::StrCat(j["first_request_s"].get<double>(), " s, RSS after ",
                                   j["rss_after_request_bytes"].get<double>() / 1e9, " GB")
                          .c_str()
                    : "-");
    all.push_back(j);
  }
  return all;
}

}  // namespace dsv3::bench
