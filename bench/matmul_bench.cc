// matmul_bench [--rows 16384] [--cols 4096] [--batches 1,4,8] [--threads 2] [--copies 1]
//
// The decode kernels alone (MatMulRows, kernels/linear.h) on one random projection in each
// weight dtype: GB/s of weights streamed per second beside the STREAM triad measured in the
// same run, so a kernel change can be judged without a whole model's other costs. kQ8/kQ6/kQ4
// run with f32 activations (matmul_direct.h) and with int8 activations (matmul_int8.h); BF16
// with its split activations, rounded (--bf16_activations), and rounded with --batch_invariant;
// FP8 with f32 products and with bf16 activations (bf16 tiles above 8 rows, as loaded).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "bench/engine_bench_machine.h"
#include "engine/dtype.h"
#include "engine/kernels/linear.h"
#include "engine/kernels/quantize.h"
#include "engine/thread_pool.h"

ABSL_FLAG(int64_t, rows, 16384, "output features of the projection");
ABSL_FLAG(int64_t, cols, 4096, "input features (a multiple of 32)");
ABSL_FLAG(std::vector<std::string>, batches, std::vector<std::string>({"1", "4", "8"}),
          "activation rows");
ABSL_FLAG(int, threads, 2, "engine threads");
ABSL_FLAG(double, min_seconds, 1.0, "time each figure over at least this long");
ABSL_FLAG(bool, huge_pages, false,
          "bf16 and fp8 weights in transparent huge pages (else 4 KiB pages, as a file mapping)");
ABSL_FLAG(int, copies, 1,
          "copies of each projection, called in turn: enough that they exceed the last-level "
          "cache makes a small projection stream from memory, as a model's layers do");

namespace {

using dsv3::engine::DType;
using dsv3::engine::Linear;

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Best-of-3 seconds per MatMulRows call, each timing over --min_seconds of calls, the copies
// of one projection in turn.
double TimeCall(const std::vector<Linear>& copies, const std::vector<float>& x, int64_t m,
                std::vector<float>& y) {
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    int64_t calls = 0;
    const auto t0 = std::chrono::steady_clock::now();
    do {
      for (const Linear& w : copies) dsv3::engine::MatMul(x.data(), m, w, y.data());
      calls += static_cast<int64_t>(copies.size());
    } while (Seconds(t0) < absl::GetFlag(FLAGS_min_seconds));
    best = std::min(best, Seconds(t0) / static_cast<double>(calls));
  }
  return best;
}

int Run() {
  const int64_t rows = absl::GetFlag(FLAGS_rows), cols = absl::GetFlag(FLAGS_cols);
  const int threads = absl::GetFlag(FLAGS_threads);
  dsv3::engine::ThreadPool::SetDefaultThreads(threads);
  std::mt19937 rng(1);
  std::normal_distribution<float> n(0, 0.05f);
  const bool huge = absl::GetFlag(FLAGS_huge_pages);
  const size_t count = static_cast<size_t>(rows * cols);
  dsv3::engine::CodeArena arena =
      dsv3::engine::CodeArena::Create(huge ? static_cast<int64_t>(count * 3 + 128) : 64);
  std::vector<uint16_t> bf16_own(huge ? 0 : count);
  std::vector<uint8_t> fp8_own(huge ? 0 : count);
  std::shared_ptr<uint8_t> bf16_huge = huge ? arena.Take(static_cast<int64_t>(count * 2)) : nullptr;
  std::shared_ptr<uint8_t> fp8_huge = huge ? arena.Take(static_cast<int64_t>(count)) : nullptr;
  if (huge && (bf16_huge == nullptr || fp8_huge == nullptr))
    return std::fprintf(stderr, "out of memory\n"), 1;
  uint16_t* bf16 = huge ? reinterpret_cast<uint16_t*>(bf16_huge.get()) : bf16_own.data();
  uint8_t* fp8 = huge ? fp8_huge.get() : fp8_own.data();
  for (size_t i = 0; i < count; ++i) bf16[i] = dsv3::engine::FloatToBF16(n(rng));
  Linear stored;
  stored.dtype = DType::kBF16;
  stored.out_features = rows;
  stored.in_features = cols;
  stored.data = bf16;
  struct Case {
    std::string name;
    Linear w;
  };
  std::vector<Case> cases = {{"bf16", stored}};
  // The BF16 options (linear.h): rounded activations, and one kernel at every row count.
  Linear rounded = stored;
  rounded.bf16_activations = true;
  cases.push_back({"bf16 bf16-act", rounded});
  rounded.batch_invariant = true;
  cases.push_back({"bf16-act inv", rounded});
  // FP8 e4m3 with 128x128 block scales, as DeepSeek-V3's checkpoints.
  Linear f8 = stored;
  f8.dtype = DType::kF8E4M3;
  f8.data = fp8;
  f8.block_rows = f8.block_cols = 128;
  {
    std::vector<float> dense(count);
    for (size_t i = 0; i < count; ++i) dense[i] = dsv3::engine::BF16ToFloat(bf16[i]);
    f8.scale_inv = dsv3::engine::QuantizeE4M3Blocks(dense.data(), rows, cols, 128, 128, fp8);
  }
  cases.push_back({"fp8", f8});
  // As a checkpoint loads by default (LoadOptions::bf16_activations): above 8 rows, tiles of the
  // weights rounded to bf16 on CPUs with AVX512_BF16.
  Linear f8_rounded = f8;
  f8_rounded.bf16_activations = true;
  cases.push_back({"fp8 bf16-act", f8_rounded});
  for (DType t : {DType::kQ8, DType::kQ6, DType::kQ4}) {
    auto q = dsv3::engine::QuantizeLinear(stored, t);
    if (!q.ok()) return std::fprintf(stderr, "%s\n", q.status().ToString().c_str()), 1;
    const std::string name = t == DType::kQ8 ? "q8" : (t == DType::kQ6 ? "q6" : "q4");
    cases.push_back({name + " f32-act", *q});
    q->int8_activations = true;
    cases.push_back({name + " int8-act", *q});
  }
  const int copies = std::max(1, absl::GetFlag(FLAGS_copies));
  int64_t copy_bytes = 0;
  for (const Case& c : cases) {
    copy_bytes +=
        (copies - 1) * (c.w.out_features * Linear::RowBytes(c.w.dtype, c.w.in_features) + 64);
  }
  dsv3::engine::CodeArena copy_arena = dsv3::engine::CodeArena::Create(huge ? copy_bytes : 64);
  std::vector<std::shared_ptr<uint8_t>> copied;
  std::vector<std::vector<Linear>> copies_of;  // per case: w, then w's codes copied elsewhere
  for (const Case& c : cases) {
    copies_of.push_back({c.w});
    const int64_t bytes = c.w.out_features * Linear::RowBytes(c.w.dtype, c.w.in_features);
    for (int i = 1; i < copies; ++i) {
      copied.push_back(huge ? copy_arena.Take(bytes) : nullptr);
      if (copied.back() == nullptr) {
        copied.back() =
            std::shared_ptr<uint8_t>(new uint8_t[bytes], std::default_delete<uint8_t[]>());
      }
      std::memcpy(copied.back().get(), c.w.data, static_cast<size_t>(bytes));
      copies_of.back().push_back(c.w);
      copies_of.back().back().data = copied.back().get();
    }
  }
  const double stream = dsv3::bench::StreamTriadGBs(threads, int64_t{1} << 25, 3);
  std::printf(
      "projection [%lld, %lld] (%d copies), %d threads, STREAM triad %.1f GB/s, bf16/fp8 in %s\n",
      static_cast<long long>(rows), static_cast<long long>(cols), copies, threads, stream,
      huge ? "huge pages" : "4 KiB pages");
  for (const std::string& b : absl::GetFlag(FLAGS_batches)) {
    int64_t m;
    if (!absl::SimpleAtoi(b, &m) || m < 1)
      return std::fprintf(stderr, "bad batch %s\n", b.c_str()), 1;
    std::vector<float> x(static_cast<size_t>(m * cols)), y(static_cast<size_t>(m * rows));
    for (float& v : x) v = n(rng);
    for (size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      const double s = TimeCall(copies_of[i], x, m, y);
      const double gbs = static_cast<double>(c.w.weight_bytes()) / s / 1e9;
      std::printf("batch %2lld  %-13s %8.1f us  %6.1f GB/s  %3.0f%% of STREAM\n",
                  static_cast<long long>(m), c.name.c_str(), s * 1e6, gbs, 100 * gbs / stream);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return Run();
}
