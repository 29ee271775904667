// libFuzzer target: a safetensors file's first bytes (8-byte length + JSON header + data) must
// only ever yield a header whose sizes match its shapes, or an error, never a crash. Build with
// -DDSV3_FUZZ=ON (clang) and run e.g. `safetensors_header_fuzzer -max_total_time=60`.

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "engine/dtype.h"
#include "engine/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  uint64_t header_len;
  std::memcpy(&header_len, data, 8);
  if (header_len > size - 8) header_len = size - 8;
  const absl::string_view header(reinterpret_cast<const char*>(data + 8), header_len);
  auto tensors = dsv3::engine::ParseSafetensorsHeader(header, size - 8 - header_len, "fuzz");
  if (tensors.ok()) {
    for (const auto& t : *tensors) {
      if (t.data_begin + t.nbytes > static_cast<int64_t>(size - 8 - header_len)) __builtin_trap();
      // The oracle: the byte count is the shape's element count times the dtype's size, with
      // no wrap-around anywhere on the way.
      int64_t bytes = dsv3::engine::DTypeSize(t.dtype);
      for (int64_t d : t.shape) {
        if (d < 0 || __builtin_mul_overflow(bytes, d, &bytes)) __builtin_trap();
      }
      if (bytes != t.nbytes) __builtin_trap();
    }
  }
  return 0;
}
