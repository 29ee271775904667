#include "tests/integration/cluster_fixture.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "dsv3/v1/worker.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace dsv3::testing {

std::unique_ptr<Cluster> Cluster::Start(const std::string& model, int prefill, int decode,
                                        int port_base, int kv_blocks,
                                        std::vector<std::string> extra) {
  std::unique_ptr<Cluster> c(new Cluster());
  c->dir_ = MakeTempDir("cluster");
  const std::string status = c->dir_ + "/status.json";
  std::vector<std::string> argv = {BinaryPath("dsv3"),
                                   "cluster",
                                   "--model=" + model,
                                   absl::StrCat("--prefill=", prefill),
                                   absl::StrCat("--decode=", decode),
                                   absl::StrCat("--port_base=", port_base),
                                   "--status_file=" + status,
                                   "--log_dir=" + c->dir_,
                                   absl::StrCat("--kv_pool_blocks=", kv_blocks)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto p = Subprocess::Start(argv, c->dir_ + "/cluster.log");
  if (!p.ok()) {
    ADD_FAILURE() << p.status();
    return nullptr;
  }
  c->process_.emplace(std::move(*p));
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  while (absl::Now() < deadline) {
    std::ifstream in(status);
    if (in) {
      nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
      if (!j.is_discarded()) {
        for (const auto& e : j) c->procs_.push_back({e["role"], e["pid"], e["grpc"], e["http"]});
        return c;
      }
    }
    if (!c->process_->Running()) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ADD_FAILURE() << "cluster did not start:\n" << c->process_->ReadLog();
  return nullptr;
}

Cluster::~Cluster() {
  if (!process_.has_value()) return;
  process_->Signal(SIGINT);
  auto code = process_->Wait(absl::Seconds(30));
  EXPECT_TRUE(code.ok() && *code == 0) << "cluster did not stop cleanly";
}

void Cluster::KillLauncher() {
  if (!process_.has_value()) return;
  process_->Signal(SIGKILL);
  EXPECT_TRUE(process_->Wait(absl::Seconds(10)).ok());
  process_.reset();
}

bool ProcessEnded(int pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return true;
  const size_t paren = line.rfind(')');  // the state follows the command name
  return paren == std::string::npos || line.substr(paren + 2, 1) == "Z";
}

bool WaitForProcessEnd(int pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!ProcessEnded(pid)) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

const ClusterProc& Cluster::Get(const std::string& role, int index) const {
  for (const ClusterProc& p : procs_) {
    if (p.role == role && index-- == 0) return p;
  }
  static const ClusterProc none;
  ADD_FAILURE() << "no " << role;
  return none;
}

std::string Cluster::Address(const std::string& role, const std::string& api) const {
  const ClusterProc& p = Get(role);
  return api == "http" ? p.http : p.grpc;
}

int Cluster::Count(const std::string& role) const {
  int n = 0;
  for (const ClusterProc& p : procs_) n += p.role == role;
  return n;
}

double MetricSum(const Cluster& cluster, const std::string& role, const std::string& series) {
  double sum = -1;
  for (int i = 0; i < cluster.Count(role); ++i) {
    auto res = cluster.Http(role, i).Get("/metrics");
    if (!res || res->status != 200) continue;
    for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
      if (!absl::ConsumePrefix(&line, series + " ")) continue;
      double v;
      if (absl::SimpleAtod(line, &v)) sum = (sum < 0 ? 0 : sum) + v;
    }
  }
  return sum;
}

httplib::Client Cluster::Http(const std::string& role, int index) const {
  std::vector<std::string> hp = absl::StrSplit(Get(role, index).http, ':');
  httplib::Client client(hp[0], std::stoi(hp[1]));
  client.set_read_timeout(60);
  return client;
}

std::optional<v1::LoadReport> WorkerLoad(const std::string& worker_grpc_address) {
  auto stub = v1::WorkerStatus::NewStub(
      grpc::CreateChannel(worker_grpc_address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  auto reader = stub->WatchLoad(&ctx, v1::WatchLoadRequest());
  v1::LoadReport report;
  if (!reader->Read(&report)) return std::nullopt;
  ctx.TryCancel();
  return report;
}

int DecodeFreeBlocks(const std::string& decode_grpc_address) {
  std::optional<v1::LoadReport> report = WorkerLoad(decode_grpc_address);
  return report.has_value() ? report->kv_blocks_free() : -1;
}

bool WaitForFreeBlocks(const std::string& decode_grpc_address, int expected,
                       absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (DecodeFreeBlocks(decode_grpc_address) == expected) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

std::vector<int32_t> ParseIds(const std::string& line) {
  std::vector<int32_t> ids;
  for (absl::string_view t : absl::StrSplit(line, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    int32_t id;
    if (absl::SimpleAtoi(t, &id)) ids.push_back(id);
  }
  return ids;
}

// `dsv3 generate`: the single-process reference output.
std::vector<int32_t> Generate(const std::string& model, const std::vector<int32_t>& prompt,
                              int max_tokens, const std::string& flags) {
  auto [rc, out] = RunCommand(absl::StrCat(
      BinaryPath("dsv3"), " generate --model ", model, " --tokens \"", absl::StrJoin(prompt, " "),
      "\" --max-tokens ", max_tokens, " ", flags, " 2>/dev/null"));
  EXPECT_EQ(rc, 0) << out;
  // The ids are the last line (RunCommand also captures stderr: load progress of big models).
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipWhitespace());
  return lines.empty() ? std::vector<int32_t>() : ParseIds(lines.back());
}

GrpcResult GenerateGrpc(const std::string& router, const v1::GenerateRequest& request,
                        int deadline_s) {
  auto stub =
      v1::Inference::NewStub(grpc::CreateChannel(router, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(deadline_s));
  auto reader = stub->Generate(&ctx, request);
  GrpcResult r;
  v1::GenerateResponse resp;
  while (reader->Read(&resp)) {
    r.ids.insert(r.ids.end(), resp.token_ids().begin(), resp.token_ids().end());
    r.text += resp.text();
    if (resp.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      r.finish = resp.finish_reason();
      r.usage = resp.usage();
    }
  }
  r.status = reader->Finish();
  return r;
}

v1::GenerateRequest IdsRequest(const std::vector<int32_t>& prompt, int max_tokens) {
  v1::GenerateRequest req;
  for (int32_t t : prompt) req.mutable_token_ids()->add_ids(t);
  req.mutable_sampling()->set_max_tokens(max_tokens);
  req.mutable_sampling()->set_ignore_eos(true);
  return req;
}

std::vector<Golden> GoldenCases(const std::string& dir) {
  std::ifstream in(dir + "/golden.json");
  nlohmann::json j = nlohmann::json::parse(in);
  std::vector<Golden> out;
  for (const auto& p : j["prompts"]) {
    out.push_back(
        {p["prompt"].get<std::vector<int32_t>>(), p["greedy_tokens"].get<std::vector<int32_t>>()});
  }
  return out;
}

}  // namespace dsv3::testing
