#include "decode_worker/kv_landing_table.h"

#include <algorithm>
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

int64_t KvLandingTable::Slot::offset_bytes() const {
  return table_ == nullptr ? -1 : int64_t{index_} * table_->slot_bytes_;
}

int64_t KvLandingTable::SlotBytes(int64_t hidden_bytes) {
  if (hidden_bytes <= 0) return 8;
  return kHiddenOffset + (hidden_bytes + 63) / 64 * 64;  // whole cache lines per slot
}

KvLandingTable::KvLandingTable(void* memory, int slots, int64_t hidden_bytes)
    : memory_(static_cast<std::byte*>(memory)),
      slots_(slots),
      hidden_bytes_(std::max<int64_t>(0, hidden_bytes)),
      slot_bytes_(SlotBytes(hidden_bytes)) {
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
  std::atomic_ref<uint64_t>(Word(slot.index_, 0)).store(0, std::memory_order_relaxed);
  if (hidden_bytes() > 0) {
    std::atomic_ref<uint64_t>(Word(slot.index_, kHiddenMarkOffset))
        .store(0, std::memory_order_relaxed);
  }
  return slot;
}

uint64_t& KvLandingTable::Word(int index, int64_t offset) const {
  return *reinterpret_cast<uint64_t*>(memory_ + int64_t{index} * slot_bytes_ + offset);
}

bool KvLandingTable::Landed(const Slot& slot) const {
  if (slot.table_ != this) return false;
  return std::atomic_ref<uint64_t>(Word(slot.index_, 0)).load(std::memory_order_acquire) ==
         slot.tag_;
}

std::span<const std::byte> KvLandingTable::LandedHidden(const Slot& slot) const {
  if (hidden_bytes() == 0 || !Landed(slot)) return {};
  // Put before the tag, in the same flushed batch as the rows: visible after Landed's load.
  if (std::atomic_ref<uint64_t>(Word(slot.index_, kHiddenMarkOffset))
          .load(std::memory_order_relaxed) != slot.tag_) {
    return {};
  }
  return {memory_ + int64_t{slot.index_} * slot_bytes_ + kHiddenOffset,
          static_cast<size_t>(hidden_bytes())};
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
