#ifndef DSV3_ENGINE_SCRATCH_H_
#define DSV3_ENGINE_SCRATCH_H_

// Storage for a forward step's large temporaries, kept between steps. A 512-token prefill chunk
// at DeepSeek-V3's widths needs 30-120 MB buffers per layer (queries, attention outputs, the
// routed experts' outputs, the dense MLP's intermediate). glibc maps each allocation above 32 MB
// afresh and unmaps it when freed, so every layer paid page faults and zero-filling again: a
// fifth of v3-slice's prefill time per layer on this project's VMs (bench/RESULTS.md, session
// 29). A call site keeps one ScratchSite per thread and takes its buffer for the call:
//
//   thread_local ScratchSite site;
//   Scratch q(site, rows * width);  // q.data(): rows * width floats, contents unspecified
//
// Only buffers of 16 MB and more use the site (a prefill chunk's); smaller ones are allocated
// and zero-filled per call, as before (scratch.cc says why). A nested use of a site on
// the same thread (its buffer already taken) gets a buffer of its own for that call, so a site is
// never handed out twice. A site keeps its largest buffer up to 256 MB (the prefill chunk bounds
// what a step needs); a larger one is freed when its call ends.

#include <cstddef>
#include <memory>

namespace dsv3::engine {

class ScratchSite {
 public:
  ScratchSite() = default;
  ScratchSite(const ScratchSite&) = delete;
  ScratchSite& operator=(const ScratchSite&) = delete;

  size_t kept_bytes() const { return capacity_ * sizeof(float); }

 private:
  friend class Scratch;
  std::unique_ptr<float[]> data_;
  size_t capacity_ = 0;
  bool taken_ = false;
};

class Scratch {
 public:
  Scratch(ScratchSite& site, size_t n);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  float* data() const { return data_; }

 private:
  ScratchSite* site_ = nullptr;   // the site taken, else null (own_ holds the buffer)
  std::unique_ptr<float[]> own_;  // a nested use's buffer
  float* data_ = nullptr;
};

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_SCRATCH_H_
