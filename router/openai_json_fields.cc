#include "router/openai_json_fields.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "router/openai_error.h"

namespace dsv3::router::openai_json {

absl::Status WrongType(absl::string_view param, absl::string_view expected, const Json& value) {
  return InvalidParam(
      param, absl::StrCat("'", param, "' must be ", expected, ", got ", value.type_name()));
}

// The value of `key`, or nullptr when absent or null (clients send null for "unset").
const Json* Field(const Json& object, const std::string& key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

// An integer in [lo, hi]. Floats (even 3.0), booleans and strings are wrong types.
absl::Status ReadInt(const Json& value, absl::string_view param, int64_t lo, int64_t hi,
                     int64_t* out) {
  if (!value.is_number_integer()) return WrongType(param, "an integer", value);
  bool in_range = false;
  if (value.is_number_unsigned()) {
    const uint64_t v = value.get<uint64_t>();
    in_range = v <= static_cast<uint64_t>(hi) && static_cast<int64_t>(v) >= lo;
    if (in_range) *out = static_cast<int64_t>(v);
  } else {
    const int64_t v = value.get<int64_t>();
    in_range = v >= lo && v <= hi;
    if (in_range) *out = v;
  }
  if (!in_range) {
    return InvalidParam(param, absl::StrCat("'", param, "' must be between ", lo, " and ", hi,
                                            ", got ", value.dump()));
  }
  return absl::OkStatus();
}

// A finite number in the interval lo..hi (each end open or closed).
absl::Status ReadNumber(const Json& value, absl::string_view param, double lo, Bound lo_bound,
                        double hi, float* out) {
  if (!value.is_number()) return WrongType(param, "a number", value);
  const double v = value.get<double>();
  const bool above_lo = lo_bound == Bound::kOpen ? v > lo : v >= lo;
  if (!std::isfinite(v) || !above_lo || v > hi) {
    return InvalidParam(
        param, absl::StrCat("'", param, "' must be in ", lo_bound == Bound::kOpen ? "(" : "[", lo,
                            ", ", hi, "], got ", value.dump()));
  }
  *out = static_cast<float>(v);
  return absl::OkStatus();
}

absl::Status ReadBool(const Json& value, absl::string_view param, bool* out) {
  if (!value.is_boolean()) return WrongType(param, "a boolean", value);
  *out = value.get<bool>();
  return absl::OkStatus();
}

absl::Status ReadString(const Json& value, absl::string_view param, std::string* out) {
  if (!value.is_string()) return WrongType(param, "a string", value);
  *out = value.get<std::string>();
  return absl::OkStatus();
}

}  // namespace dsv3::router::openai_json
