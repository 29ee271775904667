#include "engine/dtype.h"

#include <array>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace dsv3::engine {
namespace {

constexpr std::array<float, 256> MakeE4M3Table() {
  std::array<float, 256> t{};
  for (int c = 0; c < 256; ++c) {
    const int sign = c >> 7;
    const int exp = (c >> 3) & 0xF;
    const int mant = c & 0x7;
    float v;
    if (exp == 0xF && mant == 0x7) {
      v = std::numeric_limits<float>::quiet_NaN();
    } else if (exp == 0) {
      v = static_cast<float>(mant) / 8.0f / 64.0f;  // subnormal: mant/8 * 2^-6
    } else {
      float scale = 1.0f;
      for (int e = exp - 7; e > 0; --e) scale *= 2.0f;
      for (int e = exp - 7; e < 0; ++e) scale *= 0.5f;
      v = (1.0f + static_cast<float>(mant) / 8.0f) * scale;
    }
    t[c] = sign ? -v : v;
  }
  return t;
}

}  // namespace

const std::array<float, 256> kE4M3ToFloat = MakeE4M3Table();

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kF8E4M3:
      return "F8_E4M3";
    case DType::kQ8:
      return "Q8_G32";
    case DType::kQ4:
      return "Q4_G32";
    case DType::kQ6:
      return "Q6_G32";
  }
  return "?";
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "BF16") return DType::kBF16;
  if (name == "F16") return DType::kF16;
  if (name == "F8_E4M3") return DType::kF8E4M3;
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported dtype '", name, "' (supported: F32, BF16, F16, F8_E4M3)"));
}

uint16_t FloatToBF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  const uint32_t rounding = 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

float F16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const int exp = (h >> 10) & 0x1F;
  const uint32_t mant = h & 0x3FFu;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(mant), -24);
  } else if (exp == 31) {
    v = mant ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    v = std::ldexp(static_cast<float>(mant | 0x400u), exp - 25);
  }
  return sign ? -v : v;
}

uint16_t FloatToF16(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  float a = std::fabs(f);
  if (std::isnan(f)) return 0x7E00;
  if (a >= 65520.0f) return sign | 0x7C00;  // rounds to infinity
  if (a < std::ldexp(1.0f, -14)) {          // subnormal: units of 2^-24
    const float q = std::nearbyint(std::ldexp(a, 24));
    return sign | static_cast<uint16_t>(q);
  }
  int e;
  const float m = std::frexp(a, &e);            // a = m * 2^e, m in [0.5, 1)
  float q = std::nearbyint(std::ldexp(m, 11));  // 11 significant bits
  if (q >= 2048.0f) {
    q /= 2.0f;
    ++e;
  }
  const int biased = e - 1 + 15;
  return sign | static_cast<uint16_t>(biased << 10) |
         static_cast<uint16_t>(static_cast<uint32_t>(q) & 0x3FFu);
}

uint8_t FloatToE4M3(float f) {
  if (std::isnan(f)) return 0x7F;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7E;
  // Subnormals are multiples of 2^-9; normals have 4 significant bits.
  if (a < std::ldexp(1.0f, -6)) {
    const float q = std::nearbyint(std::ldexp(a, 9));  // 0..8; 8 is the smallest normal
    return sign | static_cast<uint8_t>(q);
  }
  int e;
  const float m = std::frexp(a, &e);
  float q = std::nearbyint(std::ldexp(m, 4));  // 8..16
  if (q >= 16.0f) {
    q /= 2.0f;
    ++e;
  }
  const int biased = e - 1 + 7;
  if (biased > 15 || (biased == 15 && (static_cast<int>(q) & 7) == 7)) return sign | 0x7E;
  return sign | static_cast<uint8_t>(biased << 3) | static_cast<uint8_t>(static_cast<int>(q) & 7);
}

void ConvertToFloat(DType dtype, const void* data, int64_t first, int64_t n, float* out) {
  const auto* p = static_cast<const unsigned char*>(data);
  switch (dtype) {
    case DType::kF32:
      std::memcpy(out, p + 4 * first, static_cast<size_t>(n) * 4);
      return;
    case DType::kBF16: {
      const unsigned char* q = p + 2 * first;
      for (int64_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, q + 2 * i, 2);
        out[i] = BF16ToFloat(b);
      }
      return;
    }
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) out[i] = LoadAsFloat(dtype, p, first + i);
      return;
    case DType::kF8E4M3: {
      const unsigned char* q = p + first;
      for (int64_t i = 0; i < n; ++i) out[i] = kE4M3ToFloat[q[i]];
      return;
    }
    case DType::kQ8:
    case DType::kQ4:
    case DType::kQ6:
      std::memset(out, 0, static_cast<size_t>(n) * sizeof(float));  // see the header
      return;
  }
}

}  // namespace dsv3::engine
