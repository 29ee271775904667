#include "engine/kernels/gemm.h"

#include <omp.h>

#include <map>
#include <memory>
#include <tuple>

#include "oneapi/dnnl/dnnl.hpp"

namespace dsv3::engine {
namespace {

using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int>;

struct Prepared {
  dnnl::matmul prim;
  dnnl::memory a, b, c;
};

// Per thread: oneDNN objects are not meant to be executed concurrently from several threads
// with different memory handles, and each engine thread runs its own slice anyway.
struct ThreadState {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  std::map<Key, std::unique_ptr<Prepared>> cache;
};

// Bounds the per-thread cache (shapes vary with the number of tokens routed to an expert).
constexpr size_t kMaxCachedShapes = 2048;

ThreadState& State() {
  thread_local ThreadState state;
  return state;
}

// oneDNN's OpenMP runtime sizes its parallel regions from the calling thread's OpenMP
// nthreads ICV, at primitive creation and execution. The engine parallelises itself, so each
// call runs with one thread; the caller's own setting is restored afterwards.
class SingleThreadedOmp {
 public:
  SingleThreadedOmp() : saved_(omp_get_max_threads()) {
    if (saved_ != 1) omp_set_num_threads(1);
  }
  ~SingleThreadedOmp() {
    if (saved_ != 1) omp_set_num_threads(saved_);
  }

 private:
  int saved_;
};

std::unique_ptr<Prepared> Prepare(ThreadState& st, int64_t m, int64_t n, int64_t k, int64_t lda,
                                  int64_t ldb, int64_t ldc, BLayout layout, GemmOutput output) {
  using dnnl::memory;
  const memory::desc a_md({m, k}, memory::data_type::f32, memory::dims{lda, 1});
  const memory::desc b_md({k, n}, memory::data_type::f32,
                          layout == BLayout::kKN ? memory::dims{ldb, 1} : memory::dims{1, ldb});
  const memory::desc c_md({m, n}, memory::data_type::f32, memory::dims{ldc, 1});
  dnnl::primitive_attr attr;
  if (output == GemmOutput::kAccumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, st.eng);
  auto p = std::make_unique<Prepared>();
  p->prim = dnnl::matmul(pd);
  p->a = memory(a_md, st.eng, DNNL_MEMORY_NONE);
  p->b = memory(b_md, st.eng, DNNL_MEMORY_NONE);
  p->c = memory(c_md, st.eng, DNNL_MEMORY_NONE);
  return p;
}

}  // namespace

void Gemm(const float* a, int64_t lda, const float* b, int64_t ldb, BLayout b_layout, float* c,
          int64_t ldc, int64_t m, int64_t n, int64_t k, GemmOutput output) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (output == GemmOutput::kOverwrite) {
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = 0.0f;
      }
    }
    return;
  }
  SingleThreadedOmp single;
  ThreadState& st = State();
  const Key key{m, n, k, lda, ldb, ldc, static_cast<int>(b_layout), static_cast<int>(output)};
  auto it = st.cache.find(key);
  if (it == st.cache.end()) {
    if (st.cache.size() >= kMaxCachedShapes) st.cache.clear();
    it = st.cache.emplace(key, Prepare(st, m, n, k, lda, ldb, ldc, b_layout, output)).first;
  }
  Prepared& p = *it->second;
  p.a.set_data_handle(const_cast<float*>(a));
  p.b.set_data_handle(const_cast<float*>(b));
  p.c.set_data_handle(c);
  p.prim.execute(st.strm, {{DNNL_ARG_SRC, p.a}, {DNNL_ARG_WEIGHTS, p.b}, {DNNL_ARG_DST, p.c}});
}

}  // namespace dsv3::engine
