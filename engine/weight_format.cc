#include "engine/weight_format.h"

#include <functional>

#include "absl/strings/str_cat.h"
#include "engine/kernels/quantize.h"
#include "engine/model_weights.h"
#include "engine/weight_residency.h"

namespace dsv3::engine {
namespace {

// Every projection of `w` that a format quantizes, with the dtype it gets: not the embeddings
// nor the routers (weight_format.h).
void ForEachQuantizable(WeightFormat format, ModelWeights* w,
                        const std::function<void(Linear*, DType)>& fn) {
  const DType body = format == WeightFormat::kInt4 ? DType::kQ4 : DType::kQ8;
  ForEachProjection(w, [&](Linear* p, ProjectionKind kind) {
    if (kind == ProjectionKind::kHead) {
      fn(p, format == WeightFormat::kInt4 ? DType::kQ6 : DType::kQ8);
    } else if (kind == ProjectionKind::kBody && format != WeightFormat::kInt8Head) {
      fn(p, body);
    }
  });
}

}  // namespace

absl::StatusOr<WeightFormat> ParseWeightFormat(absl::string_view name) {
  if (name == "auto" || name.empty()) return WeightFormat::kAsStored;
  if (name == "int8") return WeightFormat::kInt8;
  if (name == "int4") return WeightFormat::kInt4;
  if (name == "int8-head") return WeightFormat::kInt8Head;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown weight format '", name, "' (auto, int8, int4, int8-head)"));
}

absl::string_view WeightFormatName(WeightFormat format) {
  switch (format) {
    case WeightFormat::kAsStored:
      return "auto";
    case WeightFormat::kInt8:
      return "int8";
    case WeightFormat::kInt4:
      return "int4";
    case WeightFormat::kInt8Head:
      return "int8-head";
  }
  return "?";
}

absl::StatusOr<QuantizeReport> QuantizeModelWeights(WeightFormat format, ModelWeights* w,
                                                    bool int8_activations) {
  QuantizeReport report;
  if (format == WeightFormat::kAsStored) return report;
  int64_t code_bytes = 0;
  ForEachQuantizable(format, w, [&](Linear* p, DType target) {
    if (CanQuantize(*p)) code_bytes += QuantizedCodeBytes(*p, target) + 64;
  });
  CodeArena arena = CodeArena::Create(code_bytes);  // one block: huge pages, no per-tensor slack
  absl::Status status;
  ForEachQuantizable(format, w, [&](Linear* p, DType target) {
    if (!status.ok() || !CanQuantize(*p)) return;
    auto q = QuantizeLinear(*p, target, &arena);
    if (!q.ok()) {
      status = q.status();
      return;
    }
    ++report.projections;
    report.source_bytes += p->weight_bytes();
    report.quantized_bytes += q->weight_bytes();
    // A tied head shares the embedding's bytes, which stay in use.
    if (p->data != w->embed.data && p->owner == nullptr) {
      ReleaseResident({p->data, p->weight_bytes()});
      report.released.push_back(p->data);
    }
    *p = std::move(*q);
    p->int8_activations = int8_activations;
  });
  if (!status.ok()) return status;
  return report;
}

}  // namespace dsv3::engine
