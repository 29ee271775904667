// The real Prometheus server (Debian package `prometheus`) on 127.0.0.1, configured with the
// shipped deploy/prometheus/prometheus.yml and dsv3-rules.yml, scraping the real dsv3
// binaries found through the file_sd targets that file_sd_from_status.mjs writes from the
// launcher's status file. Checks series present and moving, then evaluates every PromQL
// expression of the rules and the Grafana dashboard against it.

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "tests/deploy/promql_names.h"
#include "tests/support/subprocess.h"

namespace dsv3 {
namespace {

using ::dsv3::testing::BinaryPath;
using ::dsv3::testing::MakeTempDir;
using ::dsv3::testing::MetricNamesInPromQL;
using ::dsv3::testing::ReadyInfo;
using ::dsv3::testing::RunCommand;
using ::dsv3::testing::Subprocess;
using ::testing::HasSubstr;
using json = nlohmann::json;

const std::string kSourceDir = DSV3_SOURCE_DIR;
// Workers first: the router is pointed at them.
// Expert first: the prefill and decode workers run their routed experts on it.
const std::vector<std::string> kRoles = {"expert", "prefill", "decode", "router"};
// The flags each role needs to start (beyond --host and --ready_file); `started` holds the
// ready files of the roles started before it.
std::vector<std::string> RoleFlags(const std::string& role,
                                   const std::map<std::string, ReadyInfo>& started) {
  const std::string model = kSourceDir + "/tests/data/golden/tiny-v3-bf16";
  if (role == "expert") return {"--model=" + model, "--ucx_tls=tcp", "--ucx_net_devices=lo"};
  if (role == "prefill" || role == "decode") {
    return {"--model=" + model, "--ucx_tls=tcp", "--ucx_net_devices=lo",
            "--expert_workers=" + started.at("expert").grpc};
  }
  if (role == "router") {
    return {"--prefill=" + started.at("prefill").grpc, "--decode=" + started.at("decode").grpc};
  }
  return {};
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A port that was free a moment ago on 127.0.0.1.
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::pair<std::string, int> SplitHostPort(const std::string& address) {
  std::vector<std::string> parts = absl::StrSplit(address, ':');
  return {parts.at(0), std::stoi(parts.at(1))};
}

// Prometheus' HTTP API: the `data` of a successful answer, or the error it gave.
absl::StatusOr<json> ApiGet(httplib::Client& client, const std::string& path,
                            const httplib::Params& params = {}) {
  httplib::Result res =
      params.empty() ? client.Get(path.c_str()) : client.Post(path.c_str(), params);
  if (!res) return absl::UnavailableError(absl::StrCat("no answer to ", path));
  json body = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    return absl::InternalError(absl::StrCat(path, ": not JSON: ", res->body));
  }
  if (body.value("status", "") != "success") {
    return absl::InvalidArgumentError(
        absl::StrCat(body.value("errorType", "?"), ": ", body.value("error", res->body)));
  }
  return body["data"];
}

absl::StatusOr<json> Query(httplib::Client& client, const std::string& promql) {
  return ApiGet(client, "/api/v1/query", {{"query", promql}});
}

class PrometheusScrapeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("prometheus-e2e");
    ASSERT_FALSE(dir_.empty());

    // The cluster: one process per role, as the launcher starts them.
    json status = json::array();
    std::map<std::string, ReadyInfo> started;
    for (const std::string& role : kRoles) {
      std::string ready = absl::StrCat(dir_, "/", role, ".ready.json");
      std::vector<std::string> argv = {BinaryPath("dsv3-" + role), "--host=127.0.0.1",
                                       "--ready_file=" + ready, "--drain_timeout=2s"};
      for (const std::string& flag : RoleFlags(role, started)) argv.push_back(flag);
      auto process = Subprocess::Start(argv, absl::StrCat(dir_, "/", role, ".log"));
      ASSERT_TRUE(process.ok()) << process.status();
      processes_.push_back(std::move(*process));
      auto info = testing::WaitForReadyFile(ready, processes_.back(), absl::Seconds(30));
      ASSERT_TRUE(info.ok()) << info.status() << "\n" << processes_.back().ReadLog();
      infos_.push_back(*info);
      started[role] = *info;
      status.push_back(json::parse(ReadFile(ready)));
    }
    // The launcher's status file, turned into file_sd targets by the shipped script.
    std::ofstream(dir_ + "/status.json") << status.dump(2);
    ASSERT_EQ(mkdir((dir_ + "/targets").c_str(), 0755), 0);
    auto [sd_rc, sd_out] =
        RunCommand(absl::StrCat("node ", kSourceDir, "/deploy/prometheus/file_sd_from_status.mjs ",
                                dir_, "/status.json ", dir_, "/targets/dsv3.json"));
    ASSERT_EQ(sd_rc, 0) << sd_out;

    // The shipped configuration and rules, unchanged.
    for (const char* file : {"prometheus.yml", "dsv3-rules.yml"}) {
      std::ofstream(absl::StrCat(dir_, "/", file))
          << ReadFile(absl::StrCat(kSourceDir, "/deploy/prometheus/", file));
    }
    for (int attempt = 0; attempt < 3 && !prometheus_; ++attempt) StartPrometheus();
    ASSERT_TRUE(prometheus_.has_value()) << "Prometheus did not start; see " << dir_;
  }

  void StartPrometheus() {
    // Subprocess does not search PATH.
    auto [which_rc, which] = RunCommand("command -v prometheus");
    ASSERT_EQ(which_rc, 0) << "prometheus not installed (scripts/install-deps.sh)";
    std::string binary(absl::StripTrailingAsciiWhitespace(which));
    int port = FreePort();
    ASSERT_GT(port, 0);
    auto process = Subprocess::Start(
        {binary, "--config.file=" + dir_ + "/prometheus.yml",
         absl::StrCat("--web.listen-address=127.0.0.1:", port),
         absl::StrCat("--storage.tsdb.path=", dir_, "/data-", port), "--log.level=warn"},
        absl::StrCat(dir_, "/prometheus-", port, ".log"));
    ASSERT_TRUE(process.ok()) << process.status();
    client_ = std::make_unique<httplib::Client>("127.0.0.1", port);
    client_->set_connection_timeout(2);
    client_->set_read_timeout(10);
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline && process->Running()) {
      httplib::Result res = client_->Get("/-/ready");
      if (res && res->status == 200) {
        prometheus_.emplace(std::move(*process));
        prometheus_port_ = port;
        return;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    // Port taken in the meantime, or a start-up error: say why, let the caller retry.
    std::cerr << "prometheus on port " << port << " not ready:\n" << process->ReadLog();
  }

  void TearDown() override {
    if (prometheus_) {
      prometheus_->Signal(SIGTERM);
      auto code = prometheus_->Wait(absl::Seconds(15));
      EXPECT_TRUE(code.ok()) << code.status();
    }
    for (Subprocess& p : processes_) p.Signal(SIGTERM);
    for (Subprocess& p : processes_) {
      auto code = p.Wait(absl::Seconds(10));
      EXPECT_TRUE(code.ok() && *code == 0) << p.ReadLog();
    }
  }

  // Sample names the dsv3 processes can expose (from their /metrics # TYPE lines, so
  // families without samples count), plus Prometheus' own series.
  std::set<std::string> KnownNames() {
    std::set<std::string> names = {"up",
                                   "scrape_duration_seconds",
                                   "scrape_samples_scraped",
                                   "scrape_samples_post_metric_relabeling",
                                   "scrape_series_added",
                                   "ALERTS",
                                   "ALERTS_FOR_STATE"};
    for (const ReadyInfo& info : infos_) {
      auto [host, port] = SplitHostPort(info.http);
      httplib::Client c(host, port);
      c.set_connection_timeout(2);
      httplib::Result res = c.Get("/metrics");
      EXPECT_TRUE(res && res->status == 200) << info.http;
      if (!res) continue;
      // Every binary exposes the serving catalog, whatever its role.
      EXPECT_THAT(res->body, HasSubstr("# TYPE dsv3_time_to_first_token_seconds histogram\n"))
          << info.role;
      for (const std::string& n : testing::SampleNamesFromExposition(res->body)) names.insert(n);
    }
    return names;
  }

  // Evaluates `expr` on the running Prometheus and checks its metric names; `where` names
  // the expression in failure messages.
  void EvaluateAndCheckNames(const std::string& where, const std::string& expr,
                             const std::set<std::string>& known) {
    auto result = Query(*client_, expr);
    EXPECT_TRUE(result.ok()) << where << ": " << result.status() << "\n  " << expr;
    std::vector<std::string> names = MetricNamesInPromQL(expr);
    EXPECT_FALSE(names.empty()) << where << ": selects no metric\n  " << expr;
    for (const std::string& name : names) {
      EXPECT_TRUE(known.count(name)) << where << ": unknown metric " << name << "\n  " << expr;
    }
    ++evaluated_;
  }

  std::string dir_;
  std::vector<Subprocess> processes_;
  std::vector<ReadyInfo> infos_;
  std::optional<Subprocess> prometheus_;
  int prometheus_port_ = 0;
  std::unique_ptr<httplib::Client> client_;
  int evaluated_ = 0;
};

TEST_F(PrometheusScrapeTest, ScrapesEveryProcessAndSeriesMove) {
  // Every process becomes an up target with its component label (first scrape ~5 s).
  std::map<std::string, double> uptime;  // instance -> first scraped value
  const absl::Time deadline = absl::Now() + absl::Seconds(25);
  while (absl::Now() < deadline && uptime.size() < kRoles.size()) {
    auto data = Query(*client_, "dsv3_uptime_seconds");
    ASSERT_TRUE(data.ok()) << data.status();
    uptime.clear();
    for (const json& series : (*data)["result"]) {
      uptime[series["metric"]["instance"]] = std::stod(series["value"][1].get<std::string>());
    }
    if (uptime.size() < kRoles.size()) absl::SleepFor(absl::Milliseconds(250));
  }
  ASSERT_EQ(uptime.size(), kRoles.size()) << "not every process scraped in time; see " << dir_;

  auto up = Query(*client_, "up{job=\"dsv3\"}");
  ASSERT_TRUE(up.ok()) << up.status();
  std::set<std::string> components;
  for (const json& series : (*up)["result"]) {
    components.insert(series["metric"].value("component", ""));
    EXPECT_EQ(series["value"][1], "1") << series.dump();
  }
  EXPECT_EQ(components, std::set<std::string>(kRoles.begin(), kRoles.end()));

  // dsv3_build_info's own role label matches the component target label (no clash).
  auto build = Query(*client_, "dsv3_build_info");
  ASSERT_TRUE(build.ok()) << build.status();
  ASSERT_EQ((*build)["result"].size(), kRoles.size());
  for (const json& series : (*build)["result"]) {
    EXPECT_EQ(series["metric"]["role"], series["metric"]["component"]) << series.dump();
  }

  // Moving: every process's uptime grows between two scrapes (interval 5 s).
  std::set<std::string> moved;
  const absl::Time move_deadline = absl::Now() + absl::Seconds(15);
  json last;
  while (absl::Now() < move_deadline && moved.size() < kRoles.size()) {
    auto data = Query(*client_, "dsv3_uptime_seconds");
    ASSERT_TRUE(data.ok()) << data.status();
    last = *data;
    for (const json& series : (*data)["result"]) {
      std::string instance = series["metric"]["instance"];
      if (std::stod(series["value"][1].get<std::string>()) > uptime[instance])
        moved.insert(instance);
    }
    if (moved.size() < kRoles.size()) absl::SleepFor(absl::Milliseconds(250));
  }
  EXPECT_EQ(moved.size(), kRoles.size()) << last.dump();
  std::cout << "query dsv3_uptime_seconds -> " << last["result"].dump() << "\n";

  // rate() over real samples: CPU time of the router is a counter Prometheus can rate.
  auto cpu = Query(*client_, "rate(dsv3_process_cpu_seconds_total{component=\"router\"}[1m])");
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ((*cpu)["result"].size(), 1u) << cpu->dump();

  // By now (two scrapes, evaluation interval 5 s) every rule has been evaluated cleanly.
  auto rules = ApiGet(*client_, "/api/v1/rules");
  ASSERT_TRUE(rules.ok()) << rules.status();
  int rules_ok = 0;
  for (const json& group : (*rules)["groups"]) {
    for (const json& rule : group["rules"]) {
      EXPECT_NE(rule.value("health", ""), "err") << rule.dump();
      rules_ok += rule.value("health", "") == "ok";
    }
  }
  EXPECT_GT(rules_ok, 0) << rules->dump();

  auto targets = ApiGet(*client_, "/api/v1/targets");
  ASSERT_TRUE(targets.ok()) << targets.status();
  int healthy = 0;
  for (const json& t : (*targets)["activeTargets"]) healthy += t["health"] == "up";
  EXPECT_EQ(healthy, static_cast<int>(kRoles.size())) << targets->dump();
}

// Load through the router's real request path: the serving series appear in Prometheus
// with the counts the requests imply.
TEST_F(PrometheusScrapeTest, ServingSeriesFollowRealRequests) {
  const ReadyInfo& router = infos_.back();
  ASSERT_EQ(router.role, "router");
  auto stub = dsv3::v1::Inference::NewStub(
      grpc::CreateChannel(router.grpc, grpc::InsecureChannelCredentials()));
  // The router needs a load report from each worker before it serves.
  const absl::Time ready_deadline = absl::Now() + absl::Seconds(10);
  constexpr int kRequests = 6;
  constexpr int kMaxTokens = 5;
  int ok = 0;
  while (ok < kRequests && absl::Now() < ready_deadline + absl::Seconds(20)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    dsv3::v1::GenerateRequest request;
    for (int t : {0, 17, 5, 99}) request.mutable_token_ids()->add_ids(t);
    request.mutable_sampling()->set_max_tokens(kMaxTokens);
    request.mutable_sampling()->set_ignore_eos(true);
    auto reader = stub->Generate(&ctx, request);
    dsv3::v1::GenerateResponse response;
    while (reader->Read(&response)) {
    }
    grpc::Status status = reader->Finish();
    if (status.ok()) {
      ++ok;
    } else {
      ASSERT_LT(absl::Now(), ready_deadline) << status.error_message();
      absl::SleepFor(absl::Milliseconds(200));
    }
  }
  ASSERT_EQ(ok, kRequests);

  // Wait for a scrape after the load (interval 5 s), then read the series back.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  double requests = 0;
  while (absl::Now() < deadline) {
    auto data = Query(*client_, "sum(dsv3_requests_total{status=\"ok\"})");
    ASSERT_TRUE(data.ok()) << data.status();
    if (!(*data)["result"].empty()) {
      requests = std::stod((*data)["result"][0]["value"][1].get<std::string>());
    }
    if (requests >= kRequests) break;
    absl::SleepFor(absl::Milliseconds(250));
  }
  EXPECT_EQ(requests, kRequests);
  // Each process is scraped on its own schedule: poll until the value is what the load
  // implies (or the deadline), then check it.
  auto scalar = [&](const std::string& promql, std::function<bool(double)> good) -> double {
    double value = -1;
    const absl::Time until = absl::Now() + absl::Seconds(15);
    while (absl::Now() < until) {
      auto data = Query(*client_, promql);
      EXPECT_TRUE(data.ok()) << promql << ": " << data.status();
      if (!data.ok()) return -1;
      if (!(*data)["result"].empty()) {
        value = std::stod((*data)["result"][0]["value"][1].get<std::string>());
        if (good(value)) {
          std::cout << "query " << promql << " -> " << (*data)["result"].dump() << "\n";
          break;
        }
      }
      absl::SleepFor(absl::Milliseconds(250));
    }
    return value;
  };
  auto equals = [](double want) { return [want](double v) { return v == want; }; };
  auto positive = [](double v) { return v > 0; };
  EXPECT_EQ(scalar("sum(dsv3_generation_tokens_total)", equals(kRequests * kMaxTokens)),
            kRequests * kMaxTokens);
  EXPECT_EQ(scalar("sum(dsv3_prompt_tokens_total)", equals(kRequests * 4)), kRequests * 4);
  EXPECT_EQ(scalar("sum(dsv3_time_to_first_token_seconds_count)", equals(kRequests)), kRequests);
  EXPECT_EQ(scalar("sum(dsv3_e2e_request_latency_seconds_count)", equals(kRequests)), kRequests);
  // The routed experts ran on the expert worker: each of the 4 prompt tokens (prefill) and
  // the kMaxTokens - 1 fed-back tokens (decode) chose 4 experts in each of 2 MoE layers.
  const double pairs = kRequests * (4 + kMaxTokens - 1) * 2 * 4;
  EXPECT_EQ(scalar("sum(dsv3_expert_tokens_total)", equals(pairs)), pairs);
  EXPECT_GT(scalar("sum(dsv3_expert_dispatch_seconds_count{backend=\"ucx\"})", positive), 0);
  // Each request moved 4 prompt rows of 3 layers x (64 + 16) floats into the decode pool.
  EXPECT_EQ(scalar("sum(dsv3_kv_transfer_bytes_total{component=\"prefill\"})",
                   equals(kRequests * 4 * 3 * 80 * 4)),
            kRequests * 4 * 3 * 80 * 4);
  EXPECT_GT(scalar("sum(dsv3_decode_batch_size_count{component=\"decode\"})", positive), 0);
  EXPECT_EQ(scalar("sum(dsv3_worker_up{component=\"router\"})", equals(2)), 2);
  EXPECT_GT(scalar("histogram_quantile(0.5, sum by (le) "
                   "(dsv3_time_to_first_token_seconds_bucket))",
                   positive),
            0);
}

TEST_F(PrometheusScrapeTest, EveryRuleAndDashboardExpressionEvaluates) {
  const std::set<std::string> known = KnownNames();
  ASSERT_TRUE(known.count("dsv3_requests_total"));

  // The rules as the real Prometheus loaded them (a rule it could not parse would have
  // kept it from starting); as many as the file holds.
  auto rules = ApiGet(*client_, "/api/v1/rules");
  ASSERT_TRUE(rules.ok()) << rules.status();
  std::string rules_text = ReadFile(kSourceDir + "/deploy/prometheus/dsv3-rules.yml");
  int in_file = 0;
  for (size_t p = rules_text.find("- alert: "); p != std::string::npos;
       p = rules_text.find("- alert: ", p + 1)) {
    ++in_file;
  }
  int loaded = 0;
  for (const json& group : (*rules)["groups"]) {
    for (const json& rule : group["rules"]) {
      ++loaded;
      // "unknown" until the first evaluation (ScrapesEveryProcess... waits for "ok").
      EXPECT_NE(rule.value("health", ""), "err") << rule.dump();
      EvaluateAndCheckNames("rule " + rule.value("name", "?"), rule["query"], known);
    }
  }
  EXPECT_EQ(loaded, in_file);

  // Every expression of the dashboard, Grafana variables replaced.
  json dashboard = json::parse(ReadFile(kSourceDir + "/deploy/grafana/dsv3-dashboard.json"));
  std::vector<const json*> panels;
  for (const json& p : dashboard["panels"]) {
    panels.push_back(&p);
    if (p.contains("panels")) {
      for (const json& nested : p["panels"]) panels.push_back(&nested);
    }
  }
  int dashboard_exprs = 0;
  std::string all_exprs;
  for (const json* p : panels) {
    if ((*p)["type"] == "row") continue;
    ASSERT_TRUE(p->contains("targets")) << (*p)["title"];
    EXPECT_FALSE((*p)["targets"].empty()) << (*p)["title"];
    for (const json& t : (*p)["targets"]) {
      std::string expr = t["expr"];
      all_exprs += expr + "\n";
      EvaluateAndCheckNames("panel '" + (*p)["title"].get<std::string>() + "'",
                            testing::SubstituteGrafanaVariables(expr), known);
      ++dashboard_exprs;
    }
  }
  // Template variables: label_values(metric, label).
  for (const json& var : dashboard["templating"]["list"]) {
    if (var["type"] != "query") continue;
    std::string q = var["query"].is_object() ? var["query"]["query"].get<std::string>()
                                             : var["query"].get<std::string>();
    ASSERT_TRUE(absl::StartsWith(q, "label_values(")) << q;
    std::string metric(
        absl::StripAsciiWhitespace(std::vector<std::string>(absl::StrSplit(q.substr(13), ','))[0]));
    EXPECT_TRUE(known.count(metric)) << "variable " << var["name"] << ": unknown " << metric;
  }
  EXPECT_GE(dashboard_exprs, 20);
  // The panels the operations issue asks for.
  for (const char* family :
       {"dsv3_time_to_first_token_seconds_bucket", "dsv3_inter_token_latency_seconds_bucket",
        "dsv3_e2e_request_latency_seconds_bucket", "dsv3_generation_tokens_total",
        "dsv3_kv_cache_usage_ratio", "dsv3_kv_transfer_bytes_total", "dsv3_expert_tokens_total",
        "dsv3_spec_decode_accepted_tokens_total", "dsv3_requests_total", "dsv3_worker_up", "up{"}) {
    EXPECT_THAT(all_exprs, HasSubstr(family));
  }
  std::cout << "evaluated " << evaluated_ << " expressions (" << loaded << " rules, "
            << dashboard_exprs << " dashboard targets)\n";

  // The checks can fail: a parse error comes back from Prometheus as bad_data, and a
  // misspelt metric name (which evaluates to an empty result) is not in the catalog.
  auto broken = Query(*client_, "sum(rate(dsv3_requests_total[5m])");
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(std::string(broken.status().message()), HasSubstr("bad_data"));
  const std::string misspelt = "rate(dsv3_request_total[5m])";
  auto empty = Query(*client_, misspelt);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE((*empty)["result"].empty());
  EXPECT_FALSE(known.count(MetricNamesInPromQL(misspelt).at(0)));
}

}  // namespace
}  // namespace dsv3
