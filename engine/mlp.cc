#include "engine/mlp.h"

#include <algorithm>

#include "engine/kernels/linear.h"
#include "engine/kernels/ops.h"
#include "engine/scratch.h"
#include "engine/thread_pool.h"

namespace dsv3::engine {
namespace {

constexpr int64_t kParallelMinElements = 1 << 16;

}  // namespace

void SwiGluForward(const MlpWeights& w, const float* x, int64_t m, float* y) {
  const int64_t inter = w.gate.out_features;
  thread_local ScratchSite g_site, u_site;
  Scratch g(g_site, static_cast<size_t>(m * inter));  // {m, inter}
  Scratch u(u_site, static_cast<size_t>(m * inter));  // {m, inter}
  MatMul(x, m, w.gate, g.data());
  MatMul(x, m, w.up, u.data());
  // A prompt's rows on every thread ([512, 2816] on one was 2% of a prefill), in chunks of at
  // least kParallelMinElements: fewer rows (decode, an expert inside a job) run inline.
  ThreadPool::Default().ParallelFor(
      m,
      [&](int64_t begin, int64_t end) {
        SiluMul(g.data() + begin * inter, u.data() + begin * inter, (end - begin) * inter,
                g.data() + begin * inter);
      },
      std::max<int64_t>(1, kParallelMinElements / inter));
  MatMul(g.data(), m, w.down, y);
}

}  // namespace dsv3::engine
