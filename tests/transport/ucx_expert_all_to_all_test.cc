// The UCX expert all-to-all between real UCX workers (one process, separate contexts):
// dispatch and combine of 1..64 rows (eager and rendezvous sizes), several clients at once,
// error answers, and an expert worker that dies or stops answering.

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "experts/dispatch_plan.h"
#include "experts/expert_placement.h"
#include "transport/ucx/ucx_expert_client.h"
#include "transport/ucx/ucx_expert_server.h"

namespace dsv3::transport {
namespace {

UcxOptions OptionsFor(const std::string& transports) {
  UcxOptions o;
  o.transports = transports;
  o.peer_error_handling = transports.find("tcp") != std::string::npos;
  if (transports.find("tcp") != std::string::npos) o.net_devices = "lo";
  return o;
}

// An expert worker stand-in: expert e maps a row r to (e + 1) * r + worker index.
class FakeExpertWorker {
 public:
  FakeExpertWorker(const std::string& transports, int32_t index, bool answer = true)
      : index_(index) {
    context_ = *UcxContext::Create(OptionsFor(transports));
    server_ = *UcxExpertServer::Create(*context_, index);
    loop_ = std::thread([this, answer] {
      while (!stop_.load()) {
        for (auto& d : server_->Take(absl::Milliseconds(20))) {
          ++dispatches_;
          if (!answer) continue;
          if (fail_next_.exchange(false)) {
            server_->Reply(*d, absl::FailedPreconditionError("expert 3 is not loaded here"),
                           nullptr, nullptr, 5);
            continue;
          }
          auto view =
              experts::UnpackDispatch(d->payload(), d->payload_bytes, d->rows, d->pairs, d->hidden);
          ASSERT_TRUE(view.ok()) << view.status();
          auto owner =
              std::make_shared<std::vector<float>>(static_cast<size_t>(d->pairs * d->hidden));
          std::vector<float>& out = *owner;
          for (int64_t p = 0; p < d->pairs; ++p) {
            for (int64_t c = 0; c < d->hidden; ++c) {
              out[p * d->hidden + c] = static_cast<float>(view->pair_expert[p] + 1) *
                                           view->x[view->pair_token[p] * d->hidden + c] +
                                       static_cast<float>(index_);
            }
          }
          server_->Reply(*d, absl::OkStatus(), owner, out.data(), 4);
        }
      }
    });
  }
  ~FakeExpertWorker() { Kill(); }
  // Tears the worker down as a crash would look to its peers: endpoints gone.
  void Kill() {
    stop_.store(true);
    if (loop_.joinable()) loop_.join();
    server_.reset();
    context_.reset();
  }
  UcxExpertServer& server() { return *server_; }
  std::string address() const { return context_->worker_address(); }
  std::atomic<int> dispatches_{0};
  std::atomic<bool> fail_next_{false};

 private:
  const int32_t index_;
  std::unique_ptr<UcxContext> context_;
  std::unique_ptr<UcxExpertServer> server_;
  std::atomic<bool> stop_{false};
  std::thread loop_;
};

struct Client {
  explicit Client(const std::string& transports) {
    context = *UcxContext::Create(OptionsFor(transports));
    client = *UcxExpertClient::Create(*context);
  }
  void Join(FakeExpertWorker& w, int32_t index) {
    auto member = w.server().AddMember(context->worker_address());
    ASSERT_TRUE(member.ok()) << member.status();
    ASSERT_TRUE(client->Connect(index, w.address(), *member).ok());
  }
  std::unique_ptr<UcxContext> context;
  std::unique_ptr<UcxExpertClient> client;
};

// Routes `rows` rows to top_k experts each over 16 experts on 2 workers, exchanges, and
// checks every slot's output.
void ExchangeAndCheck(UcxExpertClient& client, int64_t rows, int64_t hidden, int seed) {
  const int64_t top_k = 8;
  experts::ExpertPlacement placement = experts::DefaultExpertPlacement({3}, 16, 4, 2);
  std::vector<int32_t> experts(static_cast<size_t>(rows * top_k));
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t i = 0; i < top_k; ++i) experts[t * top_k + i] = (t + seed + 2 * i) % 16;
  }
  std::vector<float> x(static_cast<size_t>(rows * hidden));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7 + seed) % 101) * 0.5f;
  auto plan = experts::PlanDispatch(placement.layers[0], experts.data(), rows, top_k, 2, {});
  ASSERT_TRUE(plan.ok());
  ExchangeRequest req;
  req.layer = 3;
  req.placement_version = 1;
  req.plan = &*plan;
  req.x = x.data();
  req.hidden = hidden;
  req.deadline = absl::Now() + absl::Seconds(20);
  int overlapped = 0;
  ExchangeResult r = client.Exchange(req, [&] { ++overlapped; });
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(overlapped, 1);
  EXPECT_EQ(r.newest_placement_version, 4);
  std::vector<const float*> outs;
  for (auto& o : r.outputs) outs.push_back(o.data());
  std::vector<float> ys(static_cast<size_t>(rows * top_k * hidden));
  experts::GatherOutputs(*plan, outs, hidden, ys.data());
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t i = 0; i < top_k; ++i) {
      const int32_t e = experts[t * top_k + i];
      const float worker = static_cast<float>(placement.layers[0].replicas[e][0]);
      for (int64_t c = 0; c < hidden; c += 97) {
        ASSERT_EQ(ys[(t * top_k + i) * hidden + c],
                  static_cast<float>(e + 1) * x[t * hidden + c] + worker)
            << "row " << t << " slot " << i << " col " << c;
      }
    }
  }
}

class UcxExpertAllToAllTest : public ::testing::TestWithParam<std::string> {};

TEST_P(UcxExpertAllToAllTest, DispatchAndCombineEagerAndRendezvous) {
  FakeExpertWorker w0(GetParam(), 0), w1(GetParam(), 1);
  Client c(GetParam());
  c.Join(w0, 0);
  c.Join(w1, 1);
  EXPECT_TRUE(c.client->connected(0));
  for (int64_t rows : {1, 8, 64}) {
    SCOPED_TRACE(rows);
    ExchangeAndCheck(*c.client, rows, 7168, static_cast<int>(rows));  // 64 rows: 1.8 MB
    ExchangeAndCheck(*c.client, rows, 64, 3);
  }
}

TEST_P(UcxExpertAllToAllTest, ConcurrentClientsAndCalls) {
  FakeExpertWorker w0(GetParam(), 0), w1(GetParam(), 1);
  Client a(GetParam()), b(GetParam());
  a.Join(w0, 0);
  a.Join(w1, 1);
  b.Join(w0, 0);
  b.Join(w1, 1);
  EXPECT_EQ(w0.server().members(), 2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 20; ++k)
        ExchangeAndCheck(i % 2 ? *a.client : *b.client, 1 + k % 9, 256, i * 100 + k);
    });
  }
  for (auto& t : threads) t.join();
}

TEST_P(UcxExpertAllToAllTest, ErrorAnswerIsTheCallersStatus) {
  FakeExpertWorker w0(GetParam(), 0), w1(GetParam(), 1);
  Client c(GetParam());
  c.Join(w0, 0);
  c.Join(w1, 1);
  experts::ExpertPlacement placement = experts::DefaultExpertPlacement({3}, 16, 4, 2);
  const int32_t experts[] = {3};
  auto plan = experts::PlanDispatch(placement.layers[0], experts, 1, 1, 2, {});
  std::vector<float> x(8, 1.0f);
  ExchangeRequest req{3, 1, &*plan, x.data(), 8, absl::Now() + absl::Seconds(10)};
  w0.fail_next_ = true;
  ExchangeResult r = c.client->Exchange(req, [] {});
  EXPECT_EQ(r.status.code(), absl::StatusCode::kFailedPrecondition) << r.status;
  EXPECT_NE(r.status.message().find("expert 3 is not loaded"), std::string::npos) << r.status;
  EXPECT_TRUE(r.failed_workers.empty());
  // The link still works.
  ExchangeAndCheck(*c.client, 4, 8, 1);
}

INSTANTIATE_TEST_SUITE_P(Transports, UcxExpertAllToAllTest,
                         ::testing::Values("tcp", "posix,cma,self"), [](const auto& info) {
                           std::string name = info.param;
                           for (char& ch : name) {
                             if (ch == ',') ch = '_';
                           }
                           return name;
                         });

TEST(UcxExpertFailureTest, DeadWorkerFailsTheExchangeAtOnce) {
  FakeExpertWorker w0("tcp", 0), w1("tcp", 1);
  Client c("tcp");
  c.Join(w0, 0);
  c.Join(w1, 1);
  ExchangeAndCheck(*c.client, 2, 64, 0);
  w1.Kill();
  experts::ExpertPlacement placement = experts::DefaultExpertPlacement({3}, 16, 4, 2);
  const int32_t experts[] = {1, 12};  // one on each worker
  auto plan = experts::PlanDispatch(placement.layers[0], experts, 1, 2, 2, {});
  std::vector<float> x(64, 1.0f);
  const absl::Time start = absl::Now();
  ExchangeResult r = c.client->Exchange(
      ExchangeRequest{3, 1, &*plan, x.data(), 64, absl::Now() + absl::Seconds(30)}, [] {});
  EXPECT_EQ(r.status.code(), absl::StatusCode::kUnavailable) << r.status;
  EXPECT_EQ(r.failed_workers, std::vector<int32_t>{1});
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));  // the failure, not the 30 s deadline
  EXPECT_FALSE(c.client->connected(1));
  // Worker 0 alone still serves what it holds.
  const int32_t mine[] = {2};
  auto plan0 = experts::PlanDispatch(placement.layers[0], mine, 1, 1, 2, {});
  r = c.client->Exchange(
      ExchangeRequest{3, 1, &*plan0, x.data(), 64, absl::Now() + absl::Seconds(10)}, [] {});
  EXPECT_TRUE(r.status.ok()) << r.status;
}

TEST(UcxExpertFailureTest, SilentWorkerHitsTheDeadline) {
  FakeExpertWorker w0("tcp", 0, /*answer=*/false);
  Client c("tcp");
  c.Join(w0, 0);
  experts::ExpertPlacement placement = experts::DefaultExpertPlacement({3}, 4, 1, 1);
  const int32_t experts[] = {1};
  auto plan = experts::PlanDispatch(placement.layers[0], experts, 1, 1, 1, {});
  std::vector<float> x(16, 1.0f);
  const absl::Time start = absl::Now();
  ExchangeResult r = c.client->Exchange(
      ExchangeRequest{3, 1, &*plan, x.data(), 16, absl::Now() + absl::Milliseconds(300)}, [] {});
  EXPECT_EQ(r.status.code(), absl::StatusCode::kUnavailable) << r.status;
  EXPECT_NE(r.status.message().find("deadline"), std::string::npos) << r.status;
  EXPECT_EQ(r.failed_workers, std::vector<int32_t>{0});
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_GE(w0.dispatches_.load(), 1);
}

}  // namespace
}  // namespace dsv3::transport
