#ifndef DSV3_BENCH_ENGINE_BENCH_MACHINE_H_
#define DSV3_BENCH_ENGINE_BENCH_MACHINE_H_

// The machine ceilings the engine bench compares against, measured in the same run:
// memory bandwidth (STREAM triad, all threads) and f32 matrix peak (a large oneDNN matmul,
// the library the engine's prefill GEMMs go through), plus the process's resident memory.

#include <cstdint>

namespace dsv3::bench {

// STREAM triad a[i] = b[i] + s * c[i] over double arrays of `elements` each (>> last-level
// cache), `threads` threads each owning a contiguous slice (first-touched by that thread).
// Counted the STREAM way: 24 bytes per element per pass. Best of `reps`, in GB/s (1e9 B/s).
double StreamTriadGBs(int threads, int64_t elements, int reps);

// A shorter triad, to measure right before and after a figure that streams memory (a shared
// VM's bandwidth moves within minutes): arrays of 128 MB (>> L3), best of 2, about 0.3 s.
double StreamTriadBesideGBs(int threads);

// f32 C[m, n] = A[m, k] B[k, n] through oneDNN matmul with its default threading (all cores).
// Best of `reps`, in GFLOP/s (2 m n k per product).
double GemmPeakGflops(int64_t m, int64_t n, int64_t k, int reps);

struct MemoryUsage {
  int64_t rss_bytes = 0;       // VmRSS
  int64_t rss_anon_bytes = 0;  // RssAnon: heap, KV pool, scratch
  int64_t rss_file_bytes = 0;  // RssFile: mapped checkpoint pages that are resident
  // AnonHugePages: anonymous memory in transparent huge pages (the weights' copy, when the
  // kernel found them; batch-1 decode is slower on 4 KiB pages).
  int64_t anon_huge_bytes = 0;
};
MemoryUsage ReadMemoryUsage();

}  // namespace dsv3::bench

#endif  // DSV3_BENCH_ENGINE_BENCH_MACHINE_H_
