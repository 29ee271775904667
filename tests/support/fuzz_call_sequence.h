#ifndef DSV3_TESTS_SUPPORT_FUZZ_CALL_SEQUENCE_H_
#define DSV3_TESTS_SUPPORT_FUZZ_CALL_SEQUENCE_H_

// What the fuzz targets of the internal gRPC services share (worker_requests_fuzzer,
// expert_requests_fuzzer): an input is a sequence of calls, each a record
// [op][length lo][length hi][length bytes of a serialized request]; every call must end with
// a status a caller can act on; seed inputs are written as files of such records.
// Header-only: the fuzz builds link no test library.

#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

namespace dsv3::fuzzing {

[[noreturn]] inline void Die(const char* target, const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", target, what.c_str());
  std::abort();
}

inline void SetDeadline(grpc::ClientContext& ctx, int ms) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
}

// A status the caller can act on; anything else (INTERNAL, UNKNOWN, DATA_LOSS,
// UNIMPLEMENTED) is a bug in the service, and stops the fuzzer.
inline void CheckStatus(const char* call, const grpc::Status& s) {
  switch (s.error_code()) {
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::DATA_LOSS:
    case grpc::StatusCode::UNIMPLEMENTED:
      std::fprintf(stderr, "%s answered %d: %s\n", call, static_cast<int>(s.error_code()),
                   s.error_message().c_str());
      __builtin_trap();
    default:
      return;
  }
}

// Calls `call(op, bytes)` for each of the input's first `max_records` records (a record
// whose length runs past the input gets what is left).
template <typename Call>
void ForEachRecord(const uint8_t* data, size_t size, int max_records, Call call) {
  size_t at = 0;
  for (int record = 0; record < max_records && at + 3 <= size; ++record) {
    const uint8_t op = data[at];
    const size_t length =
        std::min<size_t>(data[at + 1] | (size_t{data[at + 2]} << 8), size - at - 3);
    const std::string bytes(reinterpret_cast<const char*>(data + at + 3), length);
    at += 3 + length;
    call(op, bytes);
  }
}

inline void AppendRecord(std::string* input, uint8_t op, const google::protobuf::Message& m) {
  const std::string bytes = m.SerializeAsString();
  input->push_back(static_cast<char>(op));
  input->push_back(static_cast<char>(bytes.size() & 0xFF));
  input->push_back(static_cast<char>(bytes.size() >> 8));
  *input += bytes;
}

// Writes each seed (name -> records) as a file in `dir`.
inline void WriteSeeds(const char* target, const std::string& dir,
                       const std::map<std::string, std::string>& seeds) {
  for (const auto& [name, bytes] : seeds) {
    std::ofstream out(dir + "/" + name, std::ios::binary);
    out << bytes;
    if (!out) Die(target, "cannot write seed " + dir + "/" + name);
  }
  std::fprintf(stderr, "%s: wrote %zu seeds to %s\n", target, seeds.size(), dir.c_str());
}

}  // namespace dsv3::fuzzing

#endif  // DSV3_TESTS_SUPPORT_FUZZ_CALL_SEQUENCE_H_
