#include "decode_worker/kv_landing_table.h"

#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"

namespace dsv3::decode {

KvLandingTable::Slot& KvLandingTable::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    if (table_ != nullptr) table_->Free(index_);
    table_ = std::exchange(other.table_, nullptr);
    index_ = std::exchange(other.index_, -1);
    tag_ = std::exchange(other.tag_, 0);
  }
  return *this;
}

KvLandingTable::Slot::~Slot() {
  if (table_ != nullptr) table_->Free(index_);
}

KvLandingTable::KvLandingTable(void* memory, int slots)
    : words_(static_cast<uint64_t*>(memory)), slots_(slots) {
  free_.reserve(static_cast<size_t>(slots));
  // Highest first, so that Claim hands out low indices first (easier to read in logs).
  for (int i = slots - 1; i >= 0; --i) free_.push_back(i);
}

absl::StatusOr<KvLandingTable::Slot> KvLandingTable::Claim(uint64_t tag) {
  if (tag == 0) return absl::InvalidArgumentError("a landing tag must not be 0");
  Slot slot;
  {
    absl::MutexLock lock(&mu_);
    if (free_.empty()) {
      return absl::ResourceExhaustedError(
          absl::StrCat("all ", slots_, " KV landing slots are held by leases"));
    }
    slot.index_ = free_.back();
    free_.pop_back();
  }
  slot.table_ = this;
  slot.tag_ = tag;
  // A tag a late writer puts for the slot's previous lease is not this lease's tag.
  std::atomic_ref<uint64_t>(words_[slot.index_]).store(0, std::memory_order_relaxed);
  return slot;
}

bool KvLandingTable::Landed(const Slot& slot) const {
  if (slot.table_ != this) return false;
  return std::atomic_ref<uint64_t>(words_[slot.index_]).load(std::memory_order_acquire) ==
         slot.tag_;
}

int KvLandingTable::free_slots() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(free_.size());
}

void KvLandingTable::Free(int index) {
  absl::MutexLock lock(&mu_);
  free_.push_back(index);
}

}  // namespace dsv3::decode
