#ifndef DSV3_TRANSPORT_UCX_UCX_EXPERT_WIRE_H_
#define DSV3_TRANSPORT_UCX_UCX_EXPERT_WIRE_H_

// The two active messages of the UCX expert all-to-all. Both ends run the same build on
// hosts of the same byte order (x86-64/aarch64, little-endian): headers are plain structs.
//   dispatch (attention worker -> expert worker): DispatchHeader + PackDispatch payload.
//   combine  (expert worker -> attention worker): CombineHeader + [pairs, hidden] f32
//            outputs, or the error text when status_code != 0.

#include <cstdint>

namespace dsv3::transport {

inline constexpr unsigned kExpertDispatchAmId = 16;
inline constexpr unsigned kExpertCombineAmId = 17;
inline constexpr uint32_t kExpertWireMagic = 0x31455844;  // "DXE1"

struct DispatchHeader {
  uint32_t magic = kExpertWireMagic;
  uint32_t member = 0;  // the sender's member index at this expert worker (from Join)
  uint64_t call_id = 0;
  int64_t placement_version = 0;
  int32_t layer = 0;
  int32_t rows = 0;
  int32_t pairs = 0;
  int32_t hidden = 0;
};

struct CombineHeader {
  uint32_t magic = kExpertWireMagic;
  int32_t worker_index = 0;  // the answering expert worker
  uint64_t call_id = 0;
  // The newest placement the expert worker has loaded: a client on an older one fetches it.
  int64_t placement_version = 0;
  int32_t status_code = 0;  // absl::StatusCode
  int32_t pairs = 0;
  int32_t hidden = 0;
  int32_t reserved = 0;
};

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_UCX_UCX_EXPERT_WIRE_H_
