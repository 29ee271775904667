#include "engine/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/model.h"
#include "engine/safetensors_writer.h"
#include "engine/synthetic_checkpoint.h"

namespace dsv3::engine {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("dsv3_st_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes a file with an arbitrary header and `data_bytes` zero bytes of data.
  std::string Raw(const std::string& header, size_t data_bytes,
                  const char* name = "x.safetensors") {
    const std::string path = (dir_ / name).string();
    std::ofstream f(path, std::ios::binary);
    uint64_t n = header.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << header << std::string(data_bytes, '\0');
    return path;
  }

  void ExpectError(const std::string& path, const std::string& needle) {
    auto f = SafetensorsFile::Open(path);
    ASSERT_FALSE(f.ok()) << "expected an error mentioning " << needle;
    EXPECT_NE(std::string(f.status().message()).find(needle), std::string::npos) << f.status();
    EXPECT_NE(std::string(f.status().message()).find(path), std::string::npos) << f.status();
  }

  fs::path dir_;
};

TEST_F(SafetensorsTest, WriterRoundTrip) {
  std::vector<TensorSpec> specs = {
      {"a", DType::kF32, {2, 3}}, {"b", DType::kF8E4M3, {5}}, {"c", DType::kBF16, {3}}};
  const std::string path = (dir_ / "ok.safetensors").string();
  ASSERT_TRUE(WriteSafetensorsFile(path, specs, [](const TensorSpec& s, std::span<uint8_t> out) {
                for (size_t i = 0; i < out.size(); ++i)
                  out[i] = static_cast<uint8_t>(i + s.name[0]);
                return absl::OkStatus();
              }).ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f.value()->tensors().size(), 3u);
  const TensorInfo* b = f.value()->Find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::kF8E4M3);
  EXPECT_EQ(b->shape, std::vector<int64_t>{5});
  const auto* bytes = static_cast<const uint8_t*>(f.value()->View(*b).data);
  EXPECT_EQ(bytes[0], static_cast<uint8_t>('b'));
  // "c" starts at the odd offset 24 + 5 = 29: reads must not assume alignment.
  const TensorInfo* c = f.value()->Find("c");
  EXPECT_EQ(c->data_begin, 29);
}

TEST_F(SafetensorsTest, RejectsBrokenFiles) {
  const std::string t = R"("t": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]})";
  ExpectError(Raw("{" + t + "}", 8), "truncated");  // data shorter than indexed
  ExpectError(Raw("{" + t + "}", 20), "trailing");
  ExpectError(Raw("{\"t\": {\"dtype\": \"F32\", ", 16), "not valid JSON");
  ExpectError(Raw(R"({"t": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 64]}})", 16),
              "out of range");
  ExpectError(Raw(R"({"t": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}})", 16),
              "byte length");
  ExpectError(Raw(R"({"t": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}})", 16),
              "unsupported dtype");
  ExpectError(Raw(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                      "u": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                  12),
              "overlap");
  ExpectError(Raw(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", 12), "hole");
  ExpectError(Raw(R"({"t": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8),
              "bad shape");
  // 2^62 F32 elements with empty data: the byte count (2^64) must not wrap to 0.
  ExpectError(
      Raw(R"({"t": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 0]}})", 0),
      "overflows");
  ExpectError(
      Raw(R"({"t": {"dtype": "BF16", "shape": [2147483648, 2147483648], "data_offsets": [0, 0]}})",
          0),
      "overflows");
  // Header length larger than the file.
  {
    const std::string path = (dir_ / "len.safetensors").string();
    std::ofstream f(path, std::ios::binary);
    uint64_t n = 1000;
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << "{}";
    f.close();
    ExpectError(path, "exceeds the file");
  }
  {
    const std::string path = (dir_ / "tiny.safetensors").string();
    std::ofstream(path, std::ios::binary) << "abc";
    ExpectError(path, "truncated");
  }
  EXPECT_EQ(SafetensorsFile::Open((dir_ / "missing").string()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SafetensorsTest, ErrorsNameTheTensor) {
  auto s = ParseSafetensorsHeader(
      R"({"layer.w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 4]}})", 4, "f.st");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.status().message()).find("f.st: tensor 'layer.w'"), std::string::npos)
      << s.status();
}

TEST_F(SafetensorsTest, ShardedIndexValidation) {
  const std::vector<TensorSpec> specs = {{"a", DType::kF32, {4}}, {"b", DType::kF32, {4}}};
  auto zero = [](const TensorSpec&, std::span<uint8_t> out) {
    std::memset(out.data(), 0, out.size());
    return absl::OkStatus();
  };
  ASSERT_TRUE(WriteShardedCheckpoint(dir_.string(), specs, 16, zero).ok());
  auto ckpt = Checkpoint::Open(dir_.string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ(ckpt.value()->Names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(ckpt.value()->Get("b").ok());
  EXPECT_EQ(ckpt.value()->Get("zz").status().code(), absl::StatusCode::kNotFound);

  // The index names a tensor its shard lacks.
  std::ofstream(dir_ / "model.safetensors.index.json")
      << R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
                            "b": "model-00002-of-00002.safetensors",
                            "c": "model-00002-of-00002.safetensors"}})";
  auto missing = Checkpoint::Open(dir_.string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("'c'"), std::string::npos);
  // A shard holds a tensor the index omits.
  std::ofstream(dir_ / "model.safetensors.index.json")
      << R"({"weight_map": {"a": "model-00001-of-00002.safetensors"}})";
  ASSERT_TRUE(Checkpoint::Open(dir_.string()).ok());  // shard 2 is never opened
  // A shard holding a tensor the index does not list for it.
  std::ofstream(dir_ / "model.safetensors.index.json")
      << R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
                            "b": "model-00001-of-00002.safetensors"}})";
  auto misplaced = Checkpoint::Open(dir_.string());
  ASSERT_FALSE(misplaced.ok());
  EXPECT_NE(std::string(misplaced.status().message()).find("missing tensor 'b'"), std::string::npos)
      << misplaced.status();
  ASSERT_TRUE(WriteShardedCheckpoint(dir_.string(), specs, 1 << 20, zero).ok());  // one shard
  std::ofstream(dir_ / "model.safetensors.index.json")
      << R"({"weight_map": {"a": "model-00001-of-00001.safetensors"}})";
  auto unexpected = Checkpoint::Open(dir_.string());
  ASSERT_FALSE(unexpected.ok());
  EXPECT_NE(std::string(unexpected.status().message()).find("unexpected tensor 'b'"),
            std::string::npos)
      << unexpected.status();
  std::ofstream(dir_ / "model.safetensors.index.json")
      << R"({"weight_map": {"a": "../etc/passwd"}})";
  EXPECT_FALSE(Checkpoint::Open(dir_.string()).ok());
}

TEST_F(SafetensorsTest, ModelLoadChecksTensorsAgainstConfig) {
  SyntheticOptions options;
  options.fp8 = true;
  ASSERT_TRUE(WriteSyntheticCheckpoint(dir_.string(), options).ok());
  ASSERT_TRUE(Model::Load(dir_.string()).ok());
  // A config that disagrees with the tensors' shapes.
  const std::string config_path = (dir_ / "config.json").string();
  std::ifstream in(config_path);
  std::string config((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  std::string bad = config;
  bad.replace(bad.find("\"intermediate_size\": 384"), 24, "\"intermediate_size\": 512");
  std::ofstream(config_path) << bad;
  auto m = Model::Load(dir_.string());
  ASSERT_FALSE(m.ok());
  EXPECT_NE(std::string(m.status().message()).find("model.layers.0.mlp.gate_proj.weight"),
            std::string::npos)
      << m.status();
  EXPECT_NE(std::string(m.status().message()).find("disagrees with config"), std::string::npos);
  // A layer the config declares but the checkpoint lacks is a missing tensor.
  std::string mtp = config;
  mtp.replace(mtp.find("\"num_nextn_predict_layers\": 0"), 29, "\"num_nextn_predict_layers\": 1");
  std::ofstream(config_path) << mtp;
  m = Model::Load(dir_.string());
  ASSERT_FALSE(m.ok());
  EXPECT_NE(std::string(m.status().message()).find("missing tensor 'model.layers.3."),
            std::string::npos)
      << m.status();
}

}  // namespace
}  // namespace dsv3::engine
