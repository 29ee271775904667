#ifndef DSV3_ROUTER_OPENAI_ERROR_H_
#define DSV3_ROUTER_OPENAI_ERROR_H_

// Errors of the OpenAI-compatible HTTP API: absl::Status -> HTTP status (one function) and
// OpenAI's error JSON {"error": {"message", "type", "param", "code"}}.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace dsv3::router {

// INVALID_ARGUMENT about one request field; `param` becomes the error's "param".
absl::Status InvalidParam(absl::string_view param, absl::string_view message);
// The field an error is about ("" when none).
std::string ErrorParam(const absl::Status& status);

// The HTTP status for an error code: INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
// -> 400; NOT_FOUND -> 404; RESOURCE_EXHAUSTED -> 429; UNAVAILABLE -> 503;
// DEADLINE_EXCEEDED -> 504; anything else -> 500 (OK -> 200).
int HttpStatusFromCode(absl::StatusCode code);

// OpenAI's "type" for an HTTP error status.
absl::string_view ErrorTypeForHttpStatus(int http_status);

// {"error": {...}} for an HTTP status; empty `param`/`code` are written as null.
std::string ErrorJson(int http_status, absl::string_view message, absl::string_view param = "",
                      absl::string_view code = "");
// {"error": {...}} for a status (the HTTP status from HttpStatusFromCode).
std::string ErrorJson(const absl::Status& status);

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_OPENAI_ERROR_H_
