#include "transport/kv_transfer/kv_writer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace dsv3::transport {

absl::StatusOr<std::unique_ptr<KvTransfer>> KvWriter::Begin(const KvWriteTarget& target) {
  // Layouts must agree in everything but the pool size (decode pools differ in blocks).
  KvPoolLayout theirs = target.layout;
  theirs.num_blocks = expected_layout_.num_blocks;
  theirs.layer_stride_bytes = expected_layout_.layer_stride_bytes;
  if (!(theirs == expected_layout_) ||
      target.layout.block_stride_bytes != expected_layout_.block_stride_bytes) {
    return absl::FailedPreconditionError(
        absl::StrCat("KV layout mismatch: decode worker has ", target.layout.DebugString(),
                     ", this prefill worker writes ", expected_layout_.DebugString()));
  }
  DSV3_RETURN_IF_ERROR(target.layout.Validate());
  if (target.cached_tokens < 0 ||
      target.cached_tokens >
          static_cast<int64_t>(target.block_ids.size()) * target.layout.block_size ||
      target.cached_tokens % std::max(1, target.layout.block_size) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("KV destination's cached prefix of ",
                                                   target.cached_tokens,
                                                   " tokens is not whole reserved blocks"));
  }
  for (int32_t block : target.block_ids) {
    if (block < 0 || block >= target.layout.num_blocks) {
      return absl::InvalidArgumentError(absl::StrCat("KV destination block id ", block,
                                                     " outside the pool's ",
                                                     target.layout.num_blocks, " blocks"));
    }
  }
  DSV3_ASSIGN_OR_RETURN(auto peer, peers_.Get(target.worker_address));
  DSV3_ASSIGN_OR_RETURN(auto rkey, peer->Rkey(target.packed_rkey));
  ucp_rkey_h landing_rkey = nullptr;
  if (!target.landing_rkey.empty()) {
    if (target.landing_address == 0 || target.landing_address % 8 != 0 || target.landing_tag == 0) {
      return absl::InvalidArgumentError(
          "KV destination's landing slot is not an aligned address with a non-zero tag");
    }
    if (target.landing_hidden_address % 8 != 0) {
      return absl::InvalidArgumentError(
          "KV destination's hidden-state address in the landing slot is not aligned");
    }
    DSV3_ASSIGN_OR_RETURN(landing_rkey, peer->Rkey(target.landing_rkey));
  }
  return std::unique_ptr<KvTransfer>(new KvTransfer(peer, rkey, landing_rkey, target));
}

absl::Status KvTransfer::PutLayerRows(int layer, int first_token, int count, const void* rows) {
  const KvPoolLayout& layout = target_.layout;
  if (layer < 0 || layer >= layout.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("KV layer ", layer, " out of range"));
  }
  if (first_token < 0 || count < 0 ||
      static_cast<int64_t>(first_token) + count >
          static_cast<int64_t>(target_.block_ids.size()) * layout.block_size) {
    return absl::InvalidArgumentError(absl::StrCat("KV rows ", first_token, "..",
                                                   first_token + count, " exceed the ",
                                                   target_.block_ids.size(), " reserved blocks"));
  }
  if (count > 0 && first_token < target_.cached_tokens) {
    return absl::FailedPreconditionError(
        absl::StrCat("KV rows from ", first_token, " would overwrite the decode worker's cached ",
                     "prefix (", target_.cached_tokens, " tokens)"));
  }
  const char* src = static_cast<const char*>(rows);
  int token = first_token;
  const int end = first_token + count;
  while (token < end) {
    const int block_index = token / layout.block_size;
    const int row = token % layout.block_size;
    const int run = std::min(end - token, layout.block_size - row);
    const uint64_t remote =
        target_.base_address + layout.RowOffset(layer, target_.block_ids[block_index], row);
    const size_t length = static_cast<size_t>(run) * layout.row_bytes;
    DSV3_RETURN_IF_ERROR(batch_.Put(src, length, remote, rkey_));
    src += length;
    token += run;
  }
  return absl::OkStatus();
}

absl::Status KvTransfer::Flush(absl::Time deadline,
                               const std::function<absl::Status()>& decode_alive) {
  absl::Status status = batch_.Flush(deadline, decode_alive);
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat("KV transfer to the decode worker failed: ", status.message()));
}

absl::Status KvTransfer::Land(absl::Time deadline,
                              const std::function<absl::Status()>& decode_alive,
                              std::string_view hidden) {
  if (landing_rkey_ != nullptr && target_.landing_hidden_address != 0 && !hidden.empty() &&
      hidden.size() == target_.landing_hidden_bytes) {
    // With the rows: the flush below completes it before the mark.
    const uint64_t tag = target_.landing_tag;
    landing_hidden_.assign(reinterpret_cast<const char*>(&tag), sizeof(tag));
    landing_hidden_.append(hidden);
    if (absl::Status s = batch_.Put(landing_hidden_.data(), landing_hidden_.size(),
                                    target_.landing_hidden_address, landing_rkey_);
        !s.ok()) {
      return s;
    }
    landing_bytes_ += static_cast<int64_t>(landing_hidden_.size());
  }
  DSV3_RETURN_IF_ERROR(Flush(deadline, decode_alive));
  if (landing_rkey_ == nullptr) return absl::OkStatus();
  // Only after the flush: the decode worker reads the rows as soon as it sees the mark, so
  // the mark must not overtake any of them (a flush orders; a second put alone does not).
  landing_word_ = target_.landing_tag;  // x86-64 and aarch64 Linux: little-endian, as the wire
  if (absl::Status s =
          batch_.Put(&landing_word_, sizeof(landing_word_), target_.landing_address, landing_rkey_);
      !s.ok()) {
    return s;
  }
  landing_bytes_ += sizeof(landing_word_);
  return Flush(deadline, decode_alive);
}

}  // namespace dsv3::transport
