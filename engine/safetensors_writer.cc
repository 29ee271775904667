#include "engine/safetensors_writer.h"

#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace dsv3::engine {

int64_t TensorSpec::nbytes() const {
  int64_t n = DTypeSize(dtype);
  for (int64_t d : shape) n *= d;
  return n;
}

absl::Status WriteSafetensorsFile(const std::string& path, const std::vector<TensorSpec>& specs,
                                  const TensorFillFn& fill) {
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  int64_t offset = 0;
  for (const TensorSpec& s : specs) {
    header[s.name] = {{"dtype", std::string(DTypeName(s.dtype))},
                      {"shape", s.shape},
                      {"data_offsets", {offset, offset + s.nbytes()}}};
    offset += s.nbytes();
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) return absl::InternalError(absl::StrCat(path, ": cannot create"));
  uint8_t len[8];
  for (int i = 0; i < 8; ++i)
    len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, f.get()) == 8 &&
            std::fwrite(text.data(), 1, text.size(), f.get()) == text.size();
  std::vector<uint8_t> buf;
  for (const TensorSpec& s : specs) {
    if (!ok) break;
    buf.assign(static_cast<size_t>(s.nbytes()), 0);
    DSV3_RETURN_IF_ERROR(fill(s, std::span<uint8_t>(buf)));
    ok = std::fwrite(buf.data(), 1, buf.size(), f.get()) == buf.size();
  }
  if (!ok || std::fflush(f.get()) != 0) {
    return absl::InternalError(absl::StrCat(path, ": write failed"));
  }
  return absl::OkStatus();
}

absl::Status WriteShardedCheckpoint(const std::string& dir, const std::vector<TensorSpec>& specs,
                                    int64_t max_shard_bytes, const TensorFillFn& fill) {
  std::vector<std::vector<TensorSpec>> shards(1);
  int64_t current = 0;
  int64_t total = 0;
  for (const TensorSpec& s : specs) {
    if (current > 0 && current + s.nbytes() > max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(s);
    current += s.nbytes();
    total += s.nbytes();
  }
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = nlohmann::ordered_json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string name =
        absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, shards.size());
    DSV3_RETURN_IF_ERROR(WriteSafetensorsFile(dir + "/" + name, shards[i], fill));
    for (const TensorSpec& s : shards[i]) index["weight_map"][s.name] = name;
  }
  const std::string index_path = dir + "/model.safetensors.index.json";
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(index_path.c_str(), "wb"), &std::fclose);
  if (!f) return absl::InternalError(absl::StrCat(index_path, ": cannot create"));
  const std::string text = index.dump(2) + "\n";
  if (std::fwrite(text.data(), 1, text.size(), f.get()) != text.size()) {
    return absl::InternalError(absl::StrCat(index_path, ": write failed"));
  }
  return absl::OkStatus();
}

}  // namespace dsv3::engine
