#ifndef DSV3_ENGINE_DTYPE_H_
#define DSV3_ENGINE_DTYPE_H_

// Element types of checkpoint tensors and their scalar conversions to and from float.
// Loads go through memcpy: tensors inside a safetensors file need not be aligned.

#include <array>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dsv3::engine {

enum class DType : uint8_t {
  kF32,
  kBF16,
  kF16,
  kF8E4M3,
  // Only in memory, never in a file: weights quantized at load (kernels/quantize.h) in groups
  // of 32 columns with an f16 scale each; int8 codes, 4-bit codes two per byte, or 6-bit codes
  // (a 4-bit and a 2-bit part, 24 bytes a group).
  kQ8,
  kQ4,
  kQ6,
};

// Bytes per element (kQ4, kQ6: 1, as their codes are addressed by bytes of several columns;
// use Linear::weight_bytes for sizes). Inline: the kernels' row strides call it in their loops
// (a call there took the int8 kernel twice the time on Zen 4).
constexpr int DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kBF16:
    case DType::kF16:
      return 2;
    case DType::kF8E4M3:
    case DType::kQ8:
    case DType::kQ4:
    case DType::kQ6:
      return 1;
  }
  return 0;
}

// Safetensors spelling: "F32", "BF16", "F16", "F8_E4M3".
absl::string_view DTypeName(DType dtype);
absl::StatusOr<DType> ParseDType(absl::string_view name);

// FP8 e4m3fn (bias 7, no infinities, 0x7F/0xFF are NaN, max 448) decoding table.
extern const std::array<float, 256> kE4M3ToFloat;

inline float BF16ToFloat(uint16_t bits) {
  uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}
// Round to nearest even; NaN stays NaN.
uint16_t FloatToBF16(float f);
float F16ToFloat(uint16_t bits);
uint16_t FloatToF16(float f);
inline float E4M3ToFloat(uint8_t code) { return kE4M3ToFloat[code]; }
// Round to nearest even, saturating at +-448.
uint8_t FloatToE4M3(float f);

// Element `i` of a tensor of type `dtype` stored at `data` (any alignment).
inline float LoadAsFloat(DType dtype, const void* data, int64_t i) {
  const auto* p = static_cast<const unsigned char*>(data);
  switch (dtype) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      return f;
    }
    case DType::kBF16: {
      uint16_t b;
      std::memcpy(&b, p + 2 * i, 2);
      return BF16ToFloat(b);
    }
    case DType::kF16: {
      uint16_t b;
      std::memcpy(&b, p + 2 * i, 2);
      return F16ToFloat(b);
    }
    case DType::kF8E4M3:
      return kE4M3ToFloat[p[i]];
    case DType::kQ8:
    case DType::kQ4:
    case DType::kQ6:
      break;  // codes without their group scales: Linear::DequantRow
  }
  return 0.0f;
}

// Converts `n` elements starting at element `first` into `out` (not kQ8/kQ4/kQ6: their values need
// the group scales, Linear::DequantRow).
void ConvertToFloat(DType dtype, const void* data, int64_t first, int64_t n, float* out);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_DTYPE_H_
