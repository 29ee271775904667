#ifndef DSV3_TRANSPORT_KV_TRANSFER_KV_WRITER_H_
#define DSV3_TRANSPORT_KV_TRANSFER_KV_WRITER_H_

// Prefill side of the KV transfer: writes a request's latent KV rows, layer by layer, into
// the blocks a decode worker reserved for it, with one-sided UCX puts. Endpoints to decode
// workers are opened once and reused.
//
//   KvWriter writer(ucx_context);
//   auto transfer = writer.Begin(destination);     // per request
//   transfer->PutLayerRows(layer, first_token, n, rows);   // after each layer, non-blocking
//   transfer->Land(deadline);                      // flush, then mark the lease landed

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "transport/kv_transfer/kv_pool_layout.h"
#include "transport/ucx/ucx_context.h"
#include "transport/ucx/ucx_peer.h"

namespace dsv3::transport {

// The decode worker's side of one request (from dsv3.v1.KvDestination).
struct KvWriteTarget {
  std::string worker_address;  // ucp_worker_get_address bytes
  std::string packed_rkey;     // ucp_rkey_pack bytes of the pool
  uint64_t base_address = 0;   // the pool's first byte in the decode worker
  KvPoolLayout layout;
  std::vector<int32_t> block_ids;  // token t -> block_ids[t / block_size]
  // Tokens below this (whole blocks) are the decode worker's cached prefix, which other
  // requests may be reading: their rows are never written.
  int cached_tokens = 0;
  // Where the transfer marks itself landed (dsv3.v1.KvLanding): after every row put
  // completed, `landing_tag` is put into the 8 bytes at `landing_address`. An empty rkey:
  // no mark (a pool nothing waits on).
  std::string landing_rkey;
  uint64_t landing_address = 0;
  uint64_t landing_tag = 0;
  // Where a hidden state for the decode worker's first MTP draft goes (0: nowhere): the tag
  // again, then landing_hidden_bytes bytes of it, put with the rows (before the mark).
  uint64_t landing_hidden_address = 0;
  uint32_t landing_hidden_bytes = 0;
};

class KvTransfer {
 public:
  // Puts `count` rows of `layer`, tokens first_token .. first_token+count-1, from `rows`
  // (count * layout.row_bytes contiguous bytes, valid until Flush returns). Non-blocking:
  // one put per run of tokens in the same destination block. FAILED_PRECONDITION for rows
  // of the destination's cached prefix.
  absl::Status PutLayerRows(int layer, int first_token, int count, const void* rows);
  // Waits until every row is in the decode worker's memory, or the deadline / a peer
  // failure (UNAVAILABLE naming the decode worker).
  // `decode_alive` (optional): asked every 100 ms while the flush waits (PutBatch::Flush).
  absl::Status Flush(absl::Time deadline,
                     const std::function<absl::Status()>& decode_alive = nullptr);
  // Flush, then the landing mark (KvWriteTarget::landing_*), flushed too: once this returns
  // OK the decode worker may start the lease. `hidden`: put first, with the rows, where the
  // target takes a hidden state of exactly that size (else not put). Errors as Flush.
  absl::Status Land(absl::Time deadline,
                    const std::function<absl::Status()>& decode_alive = nullptr,
                    std::string_view hidden = {});
  // Row bytes put (the landing mark not counted).
  int64_t bytes() const { return batch_.bytes() - landing_bytes_; }
  const KvWriteTarget& target() const { return target_; }

 private:
  friend class KvWriter;
  KvTransfer(std::shared_ptr<UcxPeer> peer, ucp_rkey_h rkey, ucp_rkey_h landing_rkey,
             KvWriteTarget target)
      : batch_(peer), rkey_(rkey), landing_rkey_(landing_rkey), target_(std::move(target)) {}
  PutBatch batch_;
  ucp_rkey_h rkey_;
  ucp_rkey_h landing_rkey_;  // null: no landing mark
  KvWriteTarget target_;
  uint64_t landing_word_ = 0;   // the put's source: lives until the flush
  std::string landing_hidden_;  // the same: the tag, then the hidden state
  int64_t landing_bytes_ = 0;
};

class KvWriter {
 public:
  // `expected_layout`: what this prefill worker computes; a destination laid out
  // differently is refused (FAILED_PRECONDITION) before any byte moves.
  KvWriter(UcxContext& context, KvPoolLayout expected_layout)
      : peers_(context), expected_layout_(expected_layout) {}

  absl::StatusOr<std::unique_ptr<KvTransfer>> Begin(const KvWriteTarget& target);
  size_t open_endpoints() const { return peers_.size(); }

 private:
  UcxPeerCache peers_;
  KvPoolLayout expected_layout_;
};

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_KV_TRANSFER_KV_WRITER_H_
