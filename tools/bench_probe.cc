#include "tools/bench_probe.h"

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "common/tls_config.h"

namespace dsv3::tools::bench {

RttProbe::RttProbe(const std::string& address, absl::Duration interval)
    : stub_(v1::WorkerStatus::NewStub(ClientChannel(address))), interval_(interval) {}

RttProbe::~RttProbe() {
  int64_t failures = 0;
  Stop(&failures);
}

void RttProbe::Start() {
  thread_ = std::thread([this] {
    absl::Time next = absl::Now();
    while (!stop_.load(std::memory_order_relaxed)) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      v1::WorkerInfo info;
      const auto start = std::chrono::steady_clock::now();
      grpc::Status s = stub_->GetInfo(&ctx, v1::GetInfoRequest(), &info);
      const auto end = std::chrono::steady_clock::now();
      if (s.ok()) {
        rtts_.push_back(std::chrono::duration<double>(end - start).count());
      } else {
        ++failures_;
      }
      next += interval_;
      const absl::Time now = absl::Now();
      if (next > now) {
        absl::SleepFor(next - now);
      } else {
        next = now;  // behind (a slow call): no burst to catch up
      }
    }
  });
}

std::vector<double> RttProbe::Stop(int64_t* failures) {
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
  *failures = failures_;
  return rtts_;
}

}  // namespace dsv3::tools::bench
