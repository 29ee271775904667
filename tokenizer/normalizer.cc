#include "tokenizer/normalizer.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace dsv3::tokenizer {

absl::Status CheckIdentityNormalizer(const nlohmann::json& normalizer) {
  if (normalizer.is_null()) return absl::OkStatus();
  if (!normalizer.is_object() || !normalizer.contains("type") || !normalizer["type"].is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json: malformed normalizer ", normalizer.dump()));
  }
  const std::string& type = normalizer["type"].get_ref<const std::string&>();
  if (type == "Sequence") {
    const auto it = normalizer.find("normalizers");
    if (it == normalizer.end() || !it->is_array()) {
      return absl::InvalidArgumentError("tokenizer.json: Sequence normalizer without a list");
    }
    for (const auto& step : *it) {
      DSV3_RETURN_IF_ERROR(CheckIdentityNormalizer(step));
    }
    return absl::OkStatus();
  }
  return absl::UnimplementedError(
      absl::StrCat("tokenizer.json: normalizer type \"", type, "\" is not supported"));
}

}  // namespace dsv3::tokenizer
