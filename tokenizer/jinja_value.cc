#include "tokenizer/jinja_value.h"

#include <cmath>
#include <cstdio>

namespace dsv3::tokenizer::jinja {
namespace {

std::string FloatText(double d) {
  if (d == 0 && std::signbit(d)) return "-0.0";
  if (std::floor(d) == d && std::fabs(d) < 1e21) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.1f", d);
    return buf;
  }
  return Json(d).dump();  // shortest round-trip form, as JS Number#toString
}

}  // namespace

bool Truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kNamespace:
    case Value::Kind::kMacro:
      return true;
    case Value::Kind::kData:
      break;
  }
  const Json& j = v.json;
  if (j.is_null()) return false;
  if (j.is_boolean()) return j.get<bool>();
  if (j.is_number_integer()) return j.get<int64_t>() != 0;
  if (j.is_number()) return j.get<double>() != 0;
  if (j.is_string()) return !j.get_ref<const std::string&>().empty();
  if (j.is_array() || j.is_object()) return !j.empty();
  return false;
}

std::string ToJsonText(const Json& j, int indent, int depth) {
  if (j.is_array() || j.is_object()) {
    if (j.empty()) return j.is_array() ? "[]" : "{}";
    const std::string pad = indent > 0 ? "\n" + std::string(indent * depth, ' ') : "";
    const std::string child_pad = indent > 0 ? "\n" + std::string(indent * (depth + 1), ' ') : "";
    const std::string sep = indent > 0 ? "," : ", ";
    std::string out(1, j.is_array() ? '[' : '{');
    bool first = true;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!first) out += sep;
      first = false;
      out += child_pad;
      if (j.is_object()) out += Json(it.key()).dump() + ": ";
      out += ToJsonText(*it, indent, depth + 1);
    }
    out += pad;
    out += j.is_array() ? ']' : '}';
    return out;
  }
  if (j.is_number_float()) {
    const double d = j.get<double>();
    if (std::floor(d) == d && std::fabs(d) < 1e21) return Json(static_cast<int64_t>(d)).dump();
  }
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string ToText(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
      return "";
    case Value::Kind::kNamespace:
      return ToJsonText(*v.ns);
    case Value::Kind::kMacro:
      return "";
    case Value::Kind::kData:
      break;
  }
  const Json& j = v.json;
  if (j.is_null()) return "";
  if (j.is_string()) return j.get<std::string>();
  if (j.is_boolean()) return j.get<bool>() ? "true" : "false";
  if (j.is_number_float()) return FloatText(j.get<double>());
  if (j.is_number()) return j.dump();
  return ToJsonText(j);
}

bool Equal(const Value& a, const Value& b) {
  if (a.kind != Value::Kind::kData || b.kind != Value::Kind::kData) {
    return a.kind == b.kind && a.kind == Value::Kind::kUndefined;
  }
  if (a.json.is_number() && b.json.is_number()) return a.json.get<double>() == b.json.get<double>();
  if (a.json.is_array() || a.json.is_object()) return false;  // by reference in the reference
  return a.json == b.json;
}

}  // namespace dsv3::tokenizer::jinja
