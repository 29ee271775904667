#include "router/openai_error.h"

#include "absl/strings/cord.h"
#include "absl/types/optional.h"
#include "nlohmann/json.hpp"
#include "router/api_keys.h"

namespace dsv3::router {
namespace {

constexpr absl::string_view kParamPayload = "type.dsv3.dev/openai.param";

}  // namespace

absl::Status InvalidParam(absl::string_view param, absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kParamPayload, absl::Cord(param));
  return status;
}

std::string ErrorParam(const absl::Status& status) {
  absl::optional<absl::Cord> param = status.GetPayload(kParamPayload);
  return param.has_value() ? std::string(*param) : std::string();
}

int HttpStatusFromCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

absl::string_view ErrorTypeForHttpStatus(int http_status) {
  switch (http_status) {
    case 400:
    case 404:
    case 405:
    case 413:
    case 415:
      return "invalid_request_error";
    case 429:
      return "rate_limit_error";
    case 503:
      return "service_unavailable_error";
    case 504:
      return "timeout_error";
    default:
      return http_status < 500 ? "invalid_request_error" : "server_error";
  }
}

std::string ErrorJson(int http_status, absl::string_view message, absl::string_view param,
                      absl::string_view code) {
  nlohmann::ordered_json error;
  error["message"] = std::string(message);
  error["type"] = std::string(ErrorTypeForHttpStatus(http_status));
  error["param"] = nullptr;
  if (!param.empty()) error["param"] = std::string(param);
  error["code"] = nullptr;
  if (!code.empty()) error["code"] = std::string(code);
  nlohmann::ordered_json body;
  body["error"] = std::move(error);
  // A message may quote invalid UTF-8 from the request: replace it rather than throw.
  return body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string ErrorJson(const absl::Status& status) {
  const int http_status = HttpStatusFromCode(status.code());
  absl::string_view code;
  if (status.code() == absl::StatusCode::kNotFound) code = "model_not_found";
  if (status.code() == absl::StatusCode::kUnauthenticated) code = "invalid_api_key";
  if (status.code() == absl::StatusCode::kResourceExhausted && RetryAfter(status).has_value()) {
    code = "rate_limit_exceeded";
  }
  std::string param = ErrorParam(status);
  if (param.empty() && status.code() == absl::StatusCode::kNotFound) param = "model";
  return ErrorJson(http_status, status.message(), param, code);
}

}  // namespace dsv3::router
