#ifndef DSV3_ENGINE_KV_BLOCK_ALLOCATOR_H_
#define DSV3_ENGINE_KV_BLOCK_ALLOCATOR_H_

// The block allocator of a paged KV pool, with a content-addressed prefix cache.
//
// Every block is in one of three states:
//   free        no reference, no name; handed out first
//   referenced  held by one or more sequences (a reference count); never evicted, and never
//               written while it has a name (a named block is full and immutable)
//   cached      named (common/kv_block_hash.h) and unreferenced: its KV stays valid, a
//               sequence whose tokens begin with its name takes it back (Match); evicted
//               least recently used when a fresh block is needed and none is free
// so free + cached + referenced == num_blocks at all times.
//
// A sequence's blocks are released tail first, so that within one sequence the deepest
// blocks are the least recently used: eviction trims chains from their ends rather than
// cutting their roots (a block whose parent is gone can never match again).
//
// Stored and removed names are recorded as events, which a worker publishes so that a
// router can keep an index of which worker holds which blocks.
//
// Not thread-safe: one owner allocates and releases.

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"

namespace dsv3::engine {

// What changed since the last look: each name appears at most once, in the list of its
// latest state.
struct KvBlockEvents {
  std::vector<uint64_t> stored;   // names now held
  std::vector<uint64_t> removed;  // names no longer held (evicted)
};

class KvBlockAllocator {
 public:
  explicit KvBlockAllocator(int64_t num_blocks);

  // Named blocks are kept for reuse only while caching is on (otherwise Name is a no-op).
  void set_caching(bool on) { caching_ = on; }
  bool caching() const { return caching_; }
  // Most cached (unreferenced, named) blocks kept; 0: no bound but the pool.
  void set_max_cached(int64_t max_cached);

  int64_t num_blocks() const { return static_cast<int64_t>(state_.size()); }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t cached_blocks() const { return cached_; }
  int64_t referenced_blocks() const { return num_blocks() - free_blocks() - cached_blocks(); }
  // What an allocation can use: free blocks, then cached ones by eviction.
  int64_t available_blocks() const { return free_blocks() + cached_blocks(); }
  int64_t evictions() const { return evictions_; }

  // Appends `count` fresh blocks (each with one reference) to `out`, evicting the least
  // recently used cached blocks when the free ones run out. ResourceExhausted, and no
  // change, when fewer than `count` are available.
  absl::Status Allocate(int64_t count, std::vector<int32_t>& out);
  // The longest prefix of `names` held by this pool: takes a reference on each of those
  // blocks and appends them to `out`. Returns how many matched.
  int64_t Match(std::span<const uint64_t> names, std::vector<int32_t>& out);
  // How many leading `names` are held, without taking anything.
  int64_t CountMatching(std::span<const uint64_t> names) const;
  // Names `block` (which the caller references, and whose KV is complete) so that it is
  // kept when released. A no-op when caching is off, the block is named already, or
  // another block holds the name.
  void Name(int32_t block, uint64_t name);
  // Drops one reference on each block, the last one first; a block left unreferenced goes
  // to the cache when named, else to the free list.
  void Release(std::span<const int32_t> blocks);

  // Events since the last call.
  KvBlockEvents TakeEvents();
  // Every name held (referenced or cached), for a fresh subscriber.
  std::vector<uint64_t> Names() const;

 private:
  struct Block {
    int32_t refs = 0;
    bool named = false;
    uint64_t name = 0;
    // The LRU list of cached blocks (indices; -1: none).
    int32_t prev = -1;
    int32_t next = -1;
  };
  void LinkMru(int32_t block);
  void Unlink(int32_t block);
  // Drops the least recently used cached block's name and frees it.
  void EvictOne();

  std::vector<Block> state_;
  std::vector<int32_t> free_;  // stack of free block ids
  absl::flat_hash_map<uint64_t, int32_t> by_name_;
  int32_t lru_head_ = -1;  // least recently used cached block
  int32_t lru_tail_ = -1;  // most recently used
  int64_t cached_ = 0;
  int64_t max_cached_ = 0;
  int64_t evictions_ = 0;
  bool caching_ = true;
  // Names stored (true) or removed (false), in order, since the last TakeEvents.
  std::vector<std::pair<uint64_t, bool>> events_;
};

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_KV_BLOCK_ALLOCATOR_H_
