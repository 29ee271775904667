#ifndef DSV3_DECODE_WORKER_KV_LANDING_TABLE_H_
#define DSV3_DECODE_WORKER_KV_LANDING_TABLE_H_

// The decode worker's record of which leases' prompt KV has landed (proto: dsv3.v1.KvLanding).
// The prompt's rows arrive as one-sided UCX puts that the decode worker never sees; so, once
// its row puts completed at the target, the prefill worker puts the lease's random tag into
// the lease's 8-byte slot of this table (UCX-registered memory), and the decode worker starts
// the lease's Decode only when the slot holds that tag. A Decode that no prefill preceded (a
// caller's bug or a hostile caller with the lease's secret) is refused instead of reading the
// rows a previous request left in reused blocks.
//
// A worker that speculates with the MTP layer has larger slots: the first draft needs the
// main model's hidden state at the last prompt position, which the prefill worker puts with
// the rows (before the tag) at kHiddenOffset, preceded by the tag again at kHiddenMarkOffset
// (so a hidden state is used only when this lease's prefill put one).

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace dsv3::decode {

class KvLandingTable {
 public:
  // One lease's slot: move-only, returned to the table when destroyed.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept { *this = std::move(other); }
    Slot& operator=(Slot&& other) noexcept;
    ~Slot();
    bool valid() const { return table_ != nullptr; }
    int index() const { return index_; }
    uint64_t tag() const { return tag_; }
    // Byte offset of the slot in the table's memory.
    int64_t offset_bytes() const;

   private:
    friend class KvLandingTable;
    KvLandingTable* table_ = nullptr;
    int index_ = -1;
    uint64_t tag_ = 0;
  };

  static constexpr int64_t kHiddenMarkOffset = 56;
  static constexpr int64_t kHiddenOffset = 64;
  // The size of a slot that holds a hidden state of `hidden_bytes` (0: just the tag).
  static int64_t SlotBytes(int64_t hidden_bytes);

  // Over `slots` slots of SlotBytes(hidden_bytes) at `memory`, which the caller registers
  // with UCX and keeps alive past the table and every Slot.
  KvLandingTable(void* memory, int slots, int64_t hidden_bytes = 0);
  KvLandingTable(const KvLandingTable&) = delete;
  KvLandingTable& operator=(const KvLandingTable&) = delete;

  // A free slot, cleared, that lands when it holds `tag` (non-zero). RESOURCE_EXHAUSTED
  // when every slot is held.
  absl::StatusOr<Slot> Claim(uint64_t tag);
  // Whether the slot holds its tag (an acquire load: the rows put before it are visible).
  bool Landed(const Slot& slot) const;
  // After Landed: the hidden state this lease's prefill put (hidden_bytes() of it), or
  // empty when it put none.
  std::span<const std::byte> LandedHidden(const Slot& slot) const;
  int slots() const { return slots_; }
  int64_t slot_bytes() const { return slot_bytes_; }
  int64_t hidden_bytes() const { return hidden_bytes_; }
  int free_slots() const;

 private:
  void Free(int index);

  uint64_t& Word(int index, int64_t offset) const;

  std::byte* const memory_;
  const int slots_;
  const int64_t hidden_bytes_;
  const int64_t slot_bytes_;
  mutable absl::Mutex mu_;
  std::vector<int> free_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dsv3::decode

#endif  // DSV3_DECODE_WORKER_KV_LANDING_TABLE_H_
