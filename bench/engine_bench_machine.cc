#include "bench/engine_bench_machine.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

namespace dsv3::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Runs fn(t) on `threads` threads (t = 0 on the caller) and waits.
template <typename Fn>
void OnThreads(int threads, Fn fn) {
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(fn, t);
  fn(0);
  for (std::thread& th : pool) th.join();
}

}  // namespace

double StreamTriadGBs(int threads, int64_t elements, int reps) {
  std::unique_ptr<double[]> a(new double[elements]);
  std::unique_ptr<double[]> b(new double[elements]);
  std::unique_ptr<double[]> c(new double[elements]);
  auto slice = [&](int t, int64_t* begin, int64_t* end) {
    *begin = elements * t / threads;
    *end = elements * (t + 1) / threads;
  };
  OnThreads(threads, [&](int t) {  // first touch by the thread that will stream the slice
    int64_t begin, end;
    slice(t, &begin, &end);
    for (int64_t i = begin; i < end; ++i) {
      a[i] = 1.0;
      b[i] = 2.0;
      c[i] = 0.5;
    }
  });
  double best = 1e30;
  const double s = 3.0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    OnThreads(threads, [&](int t) {
      int64_t begin, end;
      slice(t, &begin, &end);
      double* __restrict pa = a.get();
      const double* __restrict pb = b.get();
      const double* __restrict pc = c.get();
#pragma GCC ivdep
      for (int64_t i = begin; i < end; ++i) pa[i] = pb[i] + s * pc[i];
    });
    best = std::min(best, Seconds(t0));
  }
  volatile double sink = a[elements / 2];  // keep the stores
  (void)sink;
  return 24.0 * static_cast<double>(elements) / best / 1e9;
}

double StreamTriadBesideGBs(int threads) { return StreamTriadGBs(threads, int64_t{16} << 20, 2); }

double GemmPeakGflops(int64_t m, int64_t n, int64_t k, int reps) {
  using namespace dnnl;
  engine eng(engine::kind::cpu, 0);
  stream strm(eng);
  memory::desc a_md({m, k}, memory::data_type::f32, memory::format_tag::ab);
  memory::desc b_md({k, n}, memory::data_type::f32, memory::format_tag::ab);
  memory::desc c_md({m, n}, memory::data_type::f32, memory::format_tag::ab);
  matmul::desc md(a_md, b_md, c_md);
  matmul::primitive_desc pd(md, eng);
  matmul prim(pd);
  std::vector<float> av(static_cast<size_t>(m * k), 0.5f), bv(static_cast<size_t>(k * n), 0.25f),
      cv(static_cast<size_t>(m * n));
  memory am(a_md, eng, av.data()), bm(b_md, eng, bv.data()), cm(c_md, eng, cv.data());
  double best = 1e30;
  for (int r = 0; r < reps + 1; ++r) {  // the first run is warm-up
    const auto t0 = Clock::now();
    prim.execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    strm.wait();
    if (r > 0) best = std::min(best, Seconds(t0));
  }
  return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) / best /
         1e9;
}

MemoryUsage ReadMemoryUsage() {
  MemoryUsage u;
  std::ifstream in("/proc/self/status");
  std::string line;
  auto kb = [&](const char* key, int64_t* out) {
    const size_t n = std::strlen(key);
    if (line.compare(0, n, key) == 0) *out = std::stoll(line.substr(n)) * 1024;
  };
  while (std::getline(in, line)) {
    kb("VmRSS:", &u.rss_bytes);
    kb("RssAnon:", &u.rss_anon_bytes);
    kb("RssFile:", &u.rss_file_bytes);
  }
  std::ifstream rollup("/proc/self/smaps_rollup");
  while (std::getline(rollup, line)) kb("AnonHugePages:", &u.anon_huge_bytes);
  return u;
}

}  // namespace dsv3::bench
