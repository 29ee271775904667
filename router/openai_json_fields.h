#ifndef DSV3_ROUTER_OPENAI_JSON_FIELDS_H_
#define DSV3_ROUTER_OPENAI_JSON_FIELDS_H_

// Reading one field of an OpenAI request body: the type and range checked, an
// INVALID_ARGUMENT naming the field (openai_error.h) otherwise. Shared by the readers of
// the request's parts (openai_request.cc, openai_chat_request.cc).

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace dsv3::router::openai_json {

// Ordered: a JSON schema's properties are generated in the order the client wrote them.
using Json = nlohmann::ordered_json;

// Propagates an error status from an expression (early return, no nesting).
#define OPENAI_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    absl::Status _openai_status = (expr);            \
    if (!_openai_status.ok()) return _openai_status; \
  } while (0)

absl::Status WrongType(absl::string_view param, absl::string_view expected, const Json& value);
// The value of `key`, or nullptr when absent or null (clients send null for "unset").
const Json* Field(const Json& object, const std::string& key);
// An integer in [lo, hi]. Floats (even 3.0), booleans and strings are wrong types.
absl::Status ReadInt(const Json& value, absl::string_view param, int64_t lo, int64_t hi,
                     int64_t* out);
enum class Bound { kClosed, kOpen };
// A finite number in the interval lo..hi (each end open or closed).
absl::Status ReadNumber(const Json& value, absl::string_view param, double lo, Bound lo_bound,
                        double hi, float* out);
absl::Status ReadBool(const Json& value, absl::string_view param, bool* out);
absl::Status ReadString(const Json& value, absl::string_view param, std::string* out);

}  // namespace dsv3::router::openai_json

#endif  // DSV3_ROUTER_OPENAI_JSON_FIELDS_H_
