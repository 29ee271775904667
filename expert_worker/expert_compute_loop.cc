#include "expert_worker/expert_compute_loop.h"

#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/serving_metrics.h"
#include "engine/routed_experts.h"
#include "engine/thread_pool.h"
#include "experts/dispatch_plan.h"

namespace dsv3::expert {

ExpertComputeLoop::ExpertComputeLoop(ExpertShard& shard, transport::UcxExpertServer& server)
    : shard_(shard), server_(server), num_experts_(shard.config().n_routed_experts) {
  const std::vector<int64_t>& layers = shard.moe_layers();
  const int64_t max_layer = layers.empty() ? 0 : layers.back() + 1;
  layer_slot_.assign(static_cast<size_t>(max_layer), -1);
  for (size_t i = 0; i < layers.size(); ++i) {
    layer_slot_[static_cast<size_t>(layers[i])] = static_cast<int64_t>(i);
  }
  const size_t n = layers.size() * static_cast<size_t>(num_experts_);
  tokens_.reset(new std::atomic<int64_t>[n]);
  for (size_t i = 0; i < n; ++i) tokens_[i].store(0);
  token_counters_.assign(n, nullptr);
  for (size_t i = 0; i < layers.size(); ++i) {
    for (int64_t e = 0; e < num_experts_; ++e) {
      token_counters_[i * static_cast<size_t>(num_experts_) + static_cast<size_t>(e)] =
          ExpertTokenCounter(Metrics(), static_cast<int>(layers[i]), static_cast<int>(e));
    }
  }
  thread_ = std::thread([this] { Loop(); });
}

ExpertComputeLoop::~ExpertComputeLoop() { Stop(); }

void ExpertComputeLoop::Stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

ExpertLoadSnapshot ExpertComputeLoop::Snapshot() const {
  ExpertLoadSnapshot s;
  const size_t n = shard_.moe_layers().size() * static_cast<size_t>(num_experts_);
  s.tokens.resize(n);
  for (size_t i = 0; i < n; ++i) s.tokens[i] = tokens_[i].load(std::memory_order_relaxed);
  s.queue_ns = queue_ns_.load();
  s.compute_ns = compute_ns_.load();
  s.batches = batches_.load();
  s.dispatches = dispatches_.load();
  return s;
}

void ExpertComputeLoop::Loop() {
  engine::ThreadPool::MarkComputeThread();
  while (!stop_.load()) {
    std::vector<std::unique_ptr<transport::ExpertDispatch>> batch =
        server_.Take(absl::Milliseconds(100));
    if (batch.empty()) continue;
    std::shared_ptr<const ExpertHolding> holding = shard_.current();
    std::map<int64_t, std::vector<transport::ExpertDispatch*>> by_layer;
    for (auto& d : batch) by_layer[d->layer].push_back(d.get());
    for (const auto& [layer, group] : by_layer) RunLayer(*holding, layer, group);
  }
}

void ExpertComputeLoop::RunLayer(const ExpertHolding& holding, int64_t layer,
                                 const std::vector<transport::ExpertDispatch*>& group) {
  const int64_t hidden = shard_.config().hidden_size;
  const int64_t slot = layer >= 0 && layer < static_cast<int64_t>(layer_slot_.size())
                           ? layer_slot_[static_cast<size_t>(layer)]
                           : -1;
  // Check every dispatch; a bad one is answered with its error, the rest run together.
  std::vector<transport::ExpertDispatch*> ok;
  std::vector<experts::DispatchView> views;
  for (transport::ExpertDispatch* d : group) {
    absl::Status st;
    if (slot < 0) {
      st = absl::InvalidArgumentError(absl::StrCat("layer ", layer, " has no routed experts"));
    } else if (d->hidden != hidden) {
      st = absl::InvalidArgumentError(
          absl::StrCat("hidden size ", d->hidden, " where the model has ", hidden));
    }
    absl::StatusOr<experts::DispatchView> view =
        st.ok() ? experts::UnpackDispatch(d->payload(), d->payload_bytes, d->rows, d->pairs, hidden)
                : absl::StatusOr<experts::DispatchView>(st);
    if (!view.ok()) {
      server_.Reply(*d, view.status(), nullptr, nullptr, holding.placement.version);
      continue;
    }
    ok.push_back(d);
    views.push_back(std::move(*view));
  }
  if (ok.empty()) return;
  // One matrix of every sender's rows; pair token indices shifted to it.
  int64_t rows = 0, pairs = 0;
  for (const auto& v : views) {
    rows += v.rows;
    pairs += static_cast<int64_t>(v.pair_expert.size());
  }
  std::vector<float> x_all;
  const float* x = views[0].x;
  if (views.size() > 1) {
    x_all.resize(static_cast<size_t>(rows * hidden));
    x = x_all.data();
  }
  std::vector<int32_t> pair_token, pair_expert;
  pair_token.reserve(static_cast<size_t>(pairs));
  pair_expert.reserve(static_cast<size_t>(pairs));
  int64_t row0 = 0;
  for (const auto& v : views) {
    if (views.size() > 1) {
      std::memcpy(&x_all[static_cast<size_t>(row0 * hidden)], v.x,
                  sizeof(float) * static_cast<size_t>(v.rows * hidden));
    }
    for (size_t p = 0; p < v.pair_expert.size(); ++p) {
      pair_token.push_back(static_cast<int32_t>(row0 + v.pair_token[p]));
      pair_expert.push_back(v.pair_expert[p]);
    }
    row0 += v.rows;
  }
  // Shared with the replies in flight (sent without a copy).
  auto ys_owner = std::make_shared<std::vector<float>>(static_cast<size_t>(pairs * hidden));
  std::vector<float>& ys = *ys_owner;
  const absl::Time start = absl::Now();
  for (const transport::ExpertDispatch* d : ok) {
    queue_ns_.fetch_add(absl::ToInt64Nanoseconds(start - d->arrived));
  }
  const absl::Status status =
      engine::ComputeExpertPairs(holding.model->weights(), layer, x, hidden, pair_token.data(),
                                 pair_expert.data(), pairs, ys.data());
  compute_ns_.fetch_add(absl::ToInt64Nanoseconds(absl::Now() - start));
  batches_.fetch_add(1);
  int64_t offset = 0;
  for (size_t i = 0; i < ok.size(); ++i) {
    server_.Reply(*ok[i], status, ys_owner, ys.data() + offset * hidden, holding.placement.version);
    offset += static_cast<int64_t>(views[i].pair_expert.size());
  }
  dispatches_.fetch_add(static_cast<int64_t>(ok.size()));
  if (!status.ok()) {
    DSV3_LOG(WARNING) << "layer " << layer << ": " << status;
    return;
  }
  // Tallied first: one update per expert, not per pair.
  std::vector<int64_t> tally(static_cast<size_t>(num_experts_), 0);
  for (int32_t e : pair_expert) ++tally[static_cast<size_t>(e)];
  for (int64_t e = 0; e < num_experts_; ++e) {
    const int64_t n = tally[static_cast<size_t>(e)];
    if (n == 0) continue;
    const size_t i = static_cast<size_t>(slot * num_experts_ + e);
    tokens_[i].fetch_add(n, std::memory_order_relaxed);
    if (token_counters_[i] != nullptr) token_counters_[i]->Increment(static_cast<double>(n));
  }
}

}  // namespace dsv3::expert
