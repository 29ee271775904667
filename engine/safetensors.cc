#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace dsv3::engine {
namespace {

using Json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

absl::Status HeaderError(absl::string_view label, absl::string_view tensor, absl::string_view why) {
  if (tensor.empty()) return absl::InvalidArgumentError(absl::StrCat(label, ": ", why));
  return absl::InvalidArgumentError(absl::StrCat(label, ": tensor '", tensor, "': ", why));
}

absl::StatusOr<TensorInfo> ParseEntry(const std::string& name, const Json& e, uint64_t data_size,
                                      absl::string_view label) {
  TensorInfo t;
  t.name = name;
  if (!e.is_object()) return HeaderError(label, name, "entry is not an object");
  auto dt = e.find("dtype");
  if (dt == e.end() || !dt->is_string()) return HeaderError(label, name, "missing dtype");
  auto dtype = ParseDType(dt->get<std::string>());
  if (!dtype.ok()) return HeaderError(label, name, dtype.status().message());
  t.dtype = *dtype;
  auto sh = e.find("shape");
  if (sh == e.end() || !sh->is_array()) return HeaderError(label, name, "missing shape");
  uint64_t numel = 1;
  for (const Json& d : *sh) {
    if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0)) {
      return HeaderError(label, name, absl::StrCat("bad shape ", sh->dump()));
    }
    const uint64_t v = d.get<uint64_t>();
    if (v != 0 && numel > (uint64_t{1} << 62) / v) {
      return HeaderError(label, name, absl::StrCat("shape ", sh->dump(), " overflows"));
    }
    numel *= v;
    t.shape.push_back(static_cast<int64_t>(v));
  }
  auto off = e.find("data_offsets");
  if (off == e.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned()) {
    return HeaderError(label, name, "data_offsets must be two non-negative integers");
  }
  const uint64_t begin = (*off)[0].get<uint64_t>();
  const uint64_t end = (*off)[1].get<uint64_t>();
  if (begin > end || end > data_size) {
    return HeaderError(
        label, name,
        absl::StrCat("data_offsets [", begin, ", ", end, ") out of range of the data buffer (",
                     data_size, " bytes; truncated file?)"));
  }
  // The byte count must not wrap: 2^62 elements of 4 bytes would read as 0 bytes.
  const uint64_t dtype_size = static_cast<uint64_t>(DTypeSize(t.dtype));
  if (numel > (uint64_t{1} << 62) / dtype_size) {
    return HeaderError(label, name,
                       absl::StrCat("shape ", sh->dump(), " x ", DTypeName(t.dtype), " overflows"));
  }
  const uint64_t expected = numel * dtype_size;
  if (end - begin != expected) {
    return HeaderError(label, name,
                       absl::StrCat("byte length ", end - begin, " != shape ", sh->dump(), " x ",
                                    DTypeName(t.dtype), " (", expected, " bytes)"));
  }
  t.data_begin = static_cast<int64_t>(begin);
  t.nbytes = static_cast<int64_t>(expected);
  return t;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<std::vector<TensorInfo>> ParseSafetensorsHeader(absl::string_view header_json,
                                                               uint64_t data_size,
                                                               absl::string_view label) {
  Json j = Json::parse(header_json.begin(), header_json.end(), nullptr, false);
  if (j.is_discarded()) return HeaderError(label, "", "header is not valid JSON");
  if (!j.is_object()) return HeaderError(label, "", "header is not a JSON object");
  std::vector<TensorInfo> tensors;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) return HeaderError(label, "", "__metadata__ is not an object");
      continue;
    }
    DSV3_ASSIGN_OR_RETURN(TensorInfo t, ParseEntry(it.key(), *it, data_size, label));
    tensors.push_back(std::move(t));
  }
  // The tensors must index the data buffer exactly: sorted by offset, no overlap, no hole.
  std::vector<const TensorInfo*> order;
  for (const TensorInfo& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->data_begin != b->data_begin ? a->data_begin < b->data_begin : a->nbytes < b->nbytes;
  });
  int64_t cursor = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo* t : order) {
    if (t->data_begin < cursor) {
      return HeaderError(label, t->name,
                         absl::StrCat("data_offsets overlap tensor '", prev->name, "'"));
    }
    if (t->data_begin > cursor) {
      return HeaderError(
          label, t->name,
          absl::StrCat("hole of ", t->data_begin - cursor, " unindexed bytes before this tensor"));
    }
    cursor = t->data_begin + t->nbytes;
    prev = t;
  }
  if (static_cast<uint64_t>(cursor) != data_size) {
    return HeaderError(label, "",
                       absl::StrCat("data buffer has ", data_size, " bytes but tensors index ",
                                    cursor, " (truncated file or trailing bytes)"));
  }
  return tensors;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat(path, ": fstat failed"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated file (", size,
                                                   " bytes, less than the 8-byte header size)"));
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) {
    return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
  }
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->map_ = map;
  f->size_ = size;
  const auto* bytes = static_cast<const unsigned char*>(map);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxHeaderBytes || header_len > size - 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": header length ", header_len, " exceeds the file (", size, " bytes): truncated?"));
  }
  const absl::string_view header(reinterpret_cast<const char*>(bytes + 8), header_len);
  DSV3_ASSIGN_OR_RETURN(f->tensors_, ParseSafetensorsHeader(header, size - 8 - header_len, path));
  f->data_ = bytes + 8 + header_len;
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->by_name_[f->tensors_[i].name] = i;
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, size_);
}

const TensorInfo* SafetensorsFile::Find(absl::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

TensorView SafetensorsFile::View(const TensorInfo& info) const {
  TensorView v;
  v.info = &info;
  v.file = &path_;
  v.data = data_ + info.data_begin;
  return v;
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  auto ckpt = std::make_unique<Checkpoint>();
  ckpt->dir_ = dir;
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (::access(index_path.c_str(), F_OK) != 0) {
    DSV3_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(dir + "/model.safetensors"));
    for (const TensorInfo& t : file->tensors()) ckpt->where_[t.name] = {file.get(), &t};
    ckpt->files_.push_back(std::move(file));
    return ckpt;
  }
  DSV3_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(index_path));
  Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": not a valid JSON object"));
  }
  auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": missing weight_map object"));
  }
  std::map<std::string, const SafetensorsFile*> opened;
  std::map<std::string, std::string> expected;  // tensor -> shard
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it->is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": tensor '", it.key(), "': shard name is not a string"));
    }
    const std::string shard = it->get<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": tensor '", it.key(), "': bad shard name '", shard, "'"));
    }
    expected[it.key()] = shard;
    if (!opened.count(shard)) {
      DSV3_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(dir + "/" + shard));
      opened[shard] = file.get();
      ckpt->files_.push_back(std::move(file));
    }
  }
  for (const auto& [name, shard] : expected) {
    const SafetensorsFile* file = opened[shard];
    const TensorInfo* info = file->Find(name);
    if (info == nullptr) {
      return absl::NotFoundError(absl::StrCat(file->path(), ": missing tensor '", name,
                                              "' (the index places it in this shard)"));
    }
    ckpt->where_[name] = {file, info};
  }
  for (const auto& file : ckpt->files_) {
    for (const TensorInfo& t : file->tensors()) {
      auto it = expected.find(t.name);
      if (it == expected.end() || opened[it->second] != file.get()) {
        return absl::InvalidArgumentError(absl::StrCat(file->path(), ": unexpected tensor '",
                                                       t.name, "' (not listed for this shard in ",
                                                       index_path, ")"));
      }
    }
  }
  return ckpt;
}

absl::StatusOr<TensorView> Checkpoint::Get(absl::string_view name) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    return absl::NotFoundError(absl::StrCat(dir_, ": missing tensor '", name, "'"));
  }
  return it->second.first->View(*it->second.second);
}

std::vector<std::string> Checkpoint::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, loc] : where_) names.push_back(name);
  return names;
}

int64_t Checkpoint::total_bytes() const {
  int64_t n = 0;
  for (const auto& [name, loc] : where_) n += loc.second->nbytes;
  return n;
}

}  // namespace dsv3::engine
