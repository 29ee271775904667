// kv_transfer_bench: KV transfer throughput prefill -> decode over loopback UCX, side by side
// with ucx_perftest's put bandwidth at the same message size, in the same run (issue 5).
//
// Two processes per configuration: this binary re-executes itself as the "target" (the
// decode side: registers a paged KV pool with UcxMemoryRegion, prints its worker address,
// rkey and base address on stdout, keeps its progress thread running until its stdin
// closes), and the initiator (the prefill side) writes rows with KvWriter/KvTransfer the way
// PrefillScheduler::SendLayer does: per layer, one PutLayerRows per block-sized run of
// tokens, then one Flush. Throughput counts from the first put to the end of the flush.
// Between our rounds, ucx_perftest (server + client, the same UCX_TLS) runs ucp_put_bw with
// the same message size and the same number of puts; its "Final:" line gives its bandwidth.
//
//   kv_transfer_bench [--transports tcp,shm] [--shapes bench,dsv3,dsv3-bf16] [--tokens 2048]
//                     [--rounds 3] [--reps 3] [--json FILE]
//
// Every child runs in its own process group with PR_SET_PDEATHSIG and every wait has a
// deadline, so the bench always ends and leaves nothing running.

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/kv_transfer_bench_proc.h"
#include "common/mutex_mode.h"
#include "common/status_macros.h"
#include "transport/kv_transfer/kv_writer.h"
#include "transport/ucx/ucx_context.h"
#include "transport/ucx/ucx_memory_region.h"

ABSL_FLAG(std::string, role, "initiator", "initiator (default) or target (internal)");
ABSL_FLAG(std::string, transports, "tcp,shm",
          "configurations: tcp (UCX_TLS=tcp, UCX_NET_DEVICES=lo, peer error handling on) and "
          "shm (UCX_TLS=posix,cma,self, peer error handling off)");
ABSL_FLAG(std::string, shapes, "bench,dsv3,dsv3-bf16",
          "KV shapes: bench (8 layers x 1280 B rows), dsv3 (61 x 2304 B), dsv3-bf16 (61 x 1152 B)");
ABSL_FLAG(int, tokens, 2048,
          "prompt tokens per transfer (a multiple of the block size keeps "
          "every put the same size)");
ABSL_FLAG(int, block_size, 64, "tokens per KV block");
ABSL_FLAG(int, rounds, 3, "rounds per configuration, ours and ucx_perftest alternating");
ABSL_FLAG(int, reps, 3, "transfers per round (each a whole prompt's KV)");
ABSL_FLAG(std::string, perftest, "ucx_perftest", "the ucx_perftest binary (\"\": skip it)");
ABSL_FLAG(std::string, json, "", "write the results as JSON here");
ABSL_FLAG(std::string, target_memory, "user",
          "the target's pool: user (mmap + UcxMemoryRegion::Register, as the decode worker "
          "does) or ucx (UcxMemoryRegion::Allocate)");
ABSL_FLAG(std::string, pattern, "prefill",
          "prefill: every (layer, block) of the prompt from/to its own rows; hot: every put "
          "from the same source block into the same destination block, as ucx_perftest does");
ABSL_FLAG(double, compute_ms_per_layer, 0,
          "busy-spin this long after each layer's puts (a prefill's layer compute): the "
          "flush time then shows how much of the transfer did not hide behind compute");
ABSL_FLAG(bool, verbose, false, "print every transfer's posting and flush times");
ABSL_FLAG(double, timeout_s, 120, "deadline of every wait (a child that exceeds it is killed)");
// Target role (set by the initiator).
ABSL_FLAG(std::string, tls, "", "target: UCX_TLS");
ABSL_FLAG(std::string, net_devices, "", "target: UCX_NET_DEVICES");
ABSL_FLAG(bool, peer_error_handling, true, "target: UcxOptions.peer_error_handling");
ABSL_FLAG(int, layers, 0, "target: layers");
ABSL_FLAG(int64_t, row_bytes, 0, "target: bytes per row");
ABSL_FLAG(int, num_blocks, 0, "target: blocks per layer");

namespace dsv3::bench {
namespace {

using transport::KvPoolLayout;

struct Shape {
  std::string name;
  int layers;
  int64_t row_bytes;
};

struct TransportConfig {
  std::string name;
  std::string tls;
  std::string net_devices;
  bool peer_error_handling;
};

absl::StatusOr<Shape> ShapeNamed(const std::string& name) {
  if (name == "bench") return Shape{name, 8, (256 + 64) * 4};
  if (name == "dsv3") return Shape{name, 61, (512 + 64) * 4};
  if (name == "dsv3-bf16") return Shape{name, 61, (512 + 64) * 2};
  return absl::InvalidArgumentError(absl::StrCat("unknown shape ", name));
}

absl::StatusOr<TransportConfig> TransportNamed(const std::string& name) {
  if (name == "tcp") return TransportConfig{name, "tcp", "lo", true};
  if (name == "shm") return TransportConfig{name, "posix,cma,self", "", false};
  return absl::InvalidArgumentError(absl::StrCat("unknown transport ", name));
}

KvPoolLayout MakeLayout(int layers, int64_t row_bytes, int block_size, int num_blocks) {
  KvPoolLayout l;
  l.num_layers = layers;
  l.block_size = block_size;
  l.num_blocks = num_blocks;
  l.row_bytes = row_bytes;
  l.block_stride_bytes = block_size * row_bytes;
  l.layer_stride_bytes = num_blocks * l.block_stride_bytes;
  return l;
}

// Token t of a request lives in block BlockId(t / block_size): reversed, so consecutive
// blocks of a request are not adjacent in the pool (as after a while of serving).
int32_t BlockId(int index, int num_blocks) { return num_blocks - 1 - index; }

// The 8-byte word j of (layer, token)'s row: what the initiator writes and the target checks.
uint64_t Word(int layer, int token, int64_t j) {
  uint64_t x =
      (static_cast<uint64_t>(layer) << 32 | static_cast<uint32_t>(token)) * 0x9E3779B97F4A7C15ull +
      static_cast<uint64_t>(j);
  return x ^ (x >> 29);
}

void* MapZeroed(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  std::memset(p, 0, bytes);  // touch every page now, not during a measured put
  return p;
}

// ---- target: the decode side -------------------------------------------------------------

int RunTarget() {
  transport::UcxOptions options;
  options.transports = absl::GetFlag(FLAGS_tls);
  options.net_devices = absl::GetFlag(FLAGS_net_devices);
  options.peer_error_handling = absl::GetFlag(FLAGS_peer_error_handling);
  const KvPoolLayout layout =
      MakeLayout(absl::GetFlag(FLAGS_layers), absl::GetFlag(FLAGS_row_bytes),
                 absl::GetFlag(FLAGS_block_size), absl::GetFlag(FLAGS_num_blocks));
  auto ucx = transport::UcxContext::Create(options);
  if (!ucx.ok()) {
    std::fprintf(stderr, "target: %s\n", ucx.status().ToString().c_str());
    return 1;
  }
  const size_t bytes = static_cast<size_t>(layout.SpanBytes());
  const bool ucx_memory = absl::GetFlag(FLAGS_target_memory) == "ucx";
  void* user_pool = ucx_memory ? nullptr : MapZeroed(bytes);
  if (!ucx_memory && user_pool == nullptr) return 1;
  auto region = ucx_memory ? transport::UcxMemoryRegion::Allocate(**ucx, bytes)
                           : transport::UcxMemoryRegion::Register(**ucx, user_pool, bytes);
  if (!region.ok()) {
    std::fprintf(stderr, "target: %s\n", region.status().ToString().c_str());
    return 1;
  }
  void* pool = (*region)->base();
  std::printf("READY %s %s %" PRIu64 "\n", absl::BytesToHexString((*ucx)->worker_address()).c_str(),
              absl::BytesToHexString((*region)->packed_rkey()).c_str(), (*region)->base_address());
  std::fflush(stdout);
  // The progress thread serves the puts; the main thread answers commands until EOF.
  std::string line;
  while (std::getline(std::cin, line)) {
    std::vector<std::string> words = absl::StrSplit(line, ' ');
    if (words[0] == "QUIT") break;
    if (words[0] == "CHECK" && words.size() == 2) {
      int tokens = 0;
      if (!absl::SimpleAtoi(words[1], &tokens)) tokens = 0;
      int64_t bad_rows = 0;
      const int64_t words_per_row = layout.row_bytes / 8;
      for (int layer = 0; layer < layout.num_layers; ++layer) {
        for (int t = 0; t < tokens; ++t) {
          const auto* row = reinterpret_cast<const uint64_t*>(
              static_cast<const char*>(pool) +
              layout.RowOffset(layer, BlockId(t / layout.block_size, layout.num_blocks),
                               t % layout.block_size));
          for (int64_t j = 0; j < words_per_row; ++j) {
            if (row[j] != Word(layer, t, j)) {
              ++bad_rows;
              break;
            }
          }
        }
      }
      std::printf("CHECKED %" PRId64 "\n", bad_rows);
      std::fflush(stdout);
    }
  }
  region->reset();
  ucx->reset();
  if (user_pool != nullptr) munmap(user_pool, bytes);
  return 0;
}

// ---- initiator: the prefill side ---------------------------------------------------------

struct RoundResult {
  double memcpy_gbps = 0;    // the same rows copied with memcpy inside one process: the ceiling
  double ours_gbps = 0;      // bytes / (first put .. flush done), summed over reps
  double flush_ms = 0;       // mean time in Flush (after the last layer's puts)
  double perftest_gbps = 0;  // ucx_perftest's overall MB/s (MiB/s) converted to GB/s
};

struct ConfigResult {
  std::string transport, shape;
  int64_t put_bytes = 0, puts_per_transfer = 0, transfer_bytes = 0;
  std::vector<RoundResult> rounds;
  double ours_median = 0, perftest_median = 0, ratio = 0, memcpy_median = 0, flush_ms_median = 0;
  bool verified = false;
  std::string error;
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

std::map<std::string, std::string> UcxEnv(const TransportConfig& t) {
  std::map<std::string, std::string> env{{"UCX_TLS", t.tls}};
  if (!t.net_devices.empty()) env["UCX_NET_DEVICES"] = t.net_devices;
  return env;
}

// ucx_perftest ucp_put_bw at `size` x `iterations`: bandwidth in GB/s (10^9 B/s).
absl::StatusOr<double> RunPerftest(const TransportConfig& t, int64_t size, int64_t iterations,
                                   absl::Duration timeout) {
  const std::string perftest = absl::GetFlag(FLAGS_perftest);
  const std::map<std::string, std::string> env = UcxEnv(t);
  const std::string warmup = absl::StrCat(std::max<int64_t>(10, iterations / 10));
  for (int attempt = 0; attempt < 5; ++attempt) {
    DSV3_ASSIGN_OR_RETURN(auto port, FreeLocalPort());
    DSV3_ASSIGN_OR_RETURN(
        auto server, ChildProcess::Start({perftest, "-p", absl::StrCat(port)}, env, "/dev/null"));
    absl::SleepFor(absl::Milliseconds(300));  // let it listen
    const absl::Time deadline = absl::Now() + timeout;
    DSV3_ASSIGN_OR_RETURN(
        auto client, ChildProcess::Start(
                         {perftest, "127.0.0.1", "-p", absl::StrCat(port), "-t", "ucp_put_bw", "-s",
                          absl::StrCat(size), "-n", absl::StrCat(iterations), "-w", warmup},
                         env, "/tmp/kv_transfer_bench_perftest.err"));
    absl::StatusOr<std::string> out = client.ReadAll(deadline);
    client.Stop(absl::Seconds(1));
    server.Stop(absl::Seconds(1));
    if (!out.ok()) return out.status();
    for (absl::string_view line : absl::StrSplit(*out, '\n')) {
      if (!absl::StartsWith(line, "Final:")) continue;
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipWhitespace());
      // Final: iters lat50 lat_avg lat_overall bw_avg bw_overall rate_avg rate_overall
      double mib_per_s = 0;
      if (f.size() >= 7 && absl::SimpleAtod(f[6], &mib_per_s)) {
        return mib_per_s * 1024.0 * 1024.0 / 1e9;
      }
    }
    // No result: most likely the client raced the server's listen; try a new port.
  }
  return absl::InternalError(
      "ucx_perftest gave no Final: line (see /tmp/kv_transfer_bench_perftest.err)");
}

class Initiator {
 public:
  Initiator(const TransportConfig& t, const Shape& s) : t_(t), s_(s) {}

  absl::Status Start() {
    const int block_size = absl::GetFlag(FLAGS_block_size);
    tokens_ = absl::GetFlag(FLAGS_tokens);
    const int blocks = (tokens_ + block_size - 1) / block_size;
    layout_ = MakeLayout(s_.layers, s_.row_bytes, block_size, blocks + 8);
    DSV3_ASSIGN_OR_RETURN(
        target_proc_,
        ChildProcess::Start(
            {"/proc/self/exe", "--role=target", absl::StrCat("--tls=", t_.tls),
             absl::StrCat("--net_devices=", t_.net_devices),
             absl::StrCat("--peer_error_handling=", t_.peer_error_handling ? "true" : "false"),
             absl::StrCat("--layers=", s_.layers), absl::StrCat("--row_bytes=", s_.row_bytes),
             absl::StrCat("--block_size=", block_size),
             absl::StrCat("--num_blocks=", layout_.num_blocks),
             "--target_memory=" + absl::GetFlag(FLAGS_target_memory)},
            {}, ""));
    DSV3_ASSIGN_OR_RETURN(std::string ready, target_proc_.ReadLine(absl::Now() + Timeout()));
    std::vector<std::string> w = absl::StrSplit(ready, ' ');
    if (w.size() != 4 || w[0] != "READY") {
      return absl::InternalError(absl::StrCat("target said: ", ready));
    }
    target_.worker_address = absl::HexStringToBytes(w[1]);
    target_.packed_rkey = absl::HexStringToBytes(w[2]);
    if (!absl::SimpleAtoi(w[3], &target_.base_address)) {
      return absl::InternalError("bad base address from the target");
    }
    target_.layout = layout_;
    for (int b = 0; b < blocks; ++b) target_.block_ids.push_back(BlockId(b, layout_.num_blocks));

    transport::UcxOptions options;
    options.transports = t_.tls;
    options.net_devices = t_.net_devices;
    options.peer_error_handling = t_.peer_error_handling;
    DSV3_ASSIGN_OR_RETURN(ucx_, transport::UcxContext::Create(options));
    writer_ = std::make_unique<transport::KvWriter>(*ucx_, layout_);

    // The prefill's own KV: every (layer, token) row filled with its pattern.
    src_bytes_ = static_cast<size_t>(s_.layers) * tokens_ * s_.row_bytes;
    src_ = static_cast<char*>(MapZeroed(src_bytes_));
    if (src_ == nullptr) return absl::ResourceExhaustedError("cannot map the source rows");
    for (int layer = 0; layer < s_.layers; ++layer) {
      for (int t = 0; t < tokens_; ++t) {
        auto* row = reinterpret_cast<uint64_t*>(Row(layer, t));
        for (int64_t j = 0; j < s_.row_bytes / 8; ++j) row[j] = Word(layer, t, j);
      }
    }
    return absl::OkStatus();
  }

  ~Initiator() {
    writer_.reset();
    ucx_.reset();
    target_proc_.Stop(absl::Seconds(3));
    if (src_ != nullptr) munmap(src_, src_bytes_);
    if (local_ != nullptr) munmap(local_, local_bytes_);
  }

  // One prompt's KV, as SendLayer sends it: per layer, one call per block-sized run.
  absl::StatusOr<absl::Duration> Transfer() {
    const absl::Time start = absl::Now();
    DSV3_ASSIGN_OR_RETURN(auto transfer, writer_->Begin(target_));
    const int bs = layout_.block_size;
    const bool hot = absl::GetFlag(FLAGS_pattern) == "hot";
    for (int layer = 0; layer < s_.layers; ++layer) {
      for (int t = 0; t < tokens_; t += bs) {
        const int run = std::min(bs, tokens_ - t);
        DSV3_RETURN_IF_ERROR(hot ? transfer->PutLayerRows(0, 0, run, Row(0, 0))
                                 : transfer->PutLayerRows(layer, t, run, Row(layer, t)));
      }
      const absl::Duration compute =
          absl::Microseconds(1000 * absl::GetFlag(FLAGS_compute_ms_per_layer));
      const absl::Time until = absl::Now() + compute;
      while (compute > absl::ZeroDuration() && absl::Now() < until) {
      }
    }
    const absl::Time posted = absl::Now();
    DSV3_RETURN_IF_ERROR(transfer->Flush(absl::Now() + Timeout()));
    const absl::Duration took = absl::Now() - start;
    last_flush_ = absl::Now() - posted;
    if (absl::GetFlag(FLAGS_verbose)) {
      std::fprintf(stderr, "    transfer: posting %.2f ms, flush %.2f ms\n",
                   absl::ToDoubleMilliseconds(posted - start),
                   absl::ToDoubleMilliseconds(absl::Now() - posted));
    }
    bytes_ = transfer->bytes();
    return took;
  }

  // The same copies, memcpy into a local pool of the target's layout: the machine's ceiling
  // for this access pattern (shared memory at best does exactly this).
  absl::StatusOr<absl::Duration> LocalCopy() {
    if (local_ == nullptr) {
      local_bytes_ = static_cast<size_t>(layout_.SpanBytes());
      local_ = static_cast<char*>(MapZeroed(local_bytes_));
      if (local_ == nullptr) return absl::ResourceExhaustedError("cannot map the local pool");
    }
    const bool hot = absl::GetFlag(FLAGS_pattern) == "hot";
    const int bs = layout_.block_size;
    const absl::Time start = absl::Now();
    for (int layer = 0; layer < s_.layers; ++layer) {
      for (int t = 0; t < tokens_; t += bs) {
        const int run = std::min(bs, tokens_ - t);
        const int l = hot ? 0 : layer, tok = hot ? 0 : t;
        std::memcpy(local_ + layout_.RowOffset(l, target_.block_ids[tok / bs], 0), Row(l, tok),
                    static_cast<size_t>(run) * s_.row_bytes);
      }
    }
    return absl::Now() - start;
  }

  absl::StatusOr<bool> Verify() {
    if (absl::GetFlag(FLAGS_pattern) == "hot") return true;  // only block 0 was written
    if (absl::Status s = target_proc_.WriteLine(absl::StrCat("CHECK ", tokens_)); !s.ok()) {
      return s;
    }
    DSV3_ASSIGN_OR_RETURN(std::string line, target_proc_.ReadLine(absl::Now() + Timeout()));
    return line == "CHECKED 0";
  }

  int64_t bytes() const { return bytes_; }
  absl::Duration last_flush() const { return last_flush_; }
  int64_t puts() const {
    return static_cast<int64_t>(s_.layers) *
           ((tokens_ + layout_.block_size - 1) / layout_.block_size);
  }
  int64_t put_bytes() const { return layout_.block_size * s_.row_bytes; }

 private:
  static absl::Duration Timeout() { return absl::Seconds(absl::GetFlag(FLAGS_timeout_s)); }
  char* Row(int layer, int token) const {
    return src_ + (static_cast<size_t>(layer) * tokens_ + token) * s_.row_bytes;
  }

  TransportConfig t_;
  Shape s_;
  int tokens_ = 0;
  KvPoolLayout layout_;
  ChildProcess target_proc_;
  transport::KvWriteTarget target_;
  std::unique_ptr<transport::UcxContext> ucx_;
  std::unique_ptr<transport::KvWriter> writer_;
  char* src_ = nullptr;
  size_t src_bytes_ = 0;
  char* local_ = nullptr;
  size_t local_bytes_ = 0;
  int64_t bytes_ = 0;
  absl::Duration last_flush_;
};

ConfigResult RunConfig(const TransportConfig& t, const Shape& s) {
  ConfigResult r;
  r.transport = t.name;
  r.shape = s.name;
  auto fail = [&r](const absl::Status& st) {
    r.error = st.ToString();
    std::fprintf(stderr, "  %s/%s: %s\n", r.transport.c_str(), r.shape.c_str(), r.error.c_str());
    return r;
  };
  Initiator init(t, s);
  if (absl::Status st = init.Start(); !st.ok()) return fail(st);
  r.put_bytes = init.put_bytes();
  r.puts_per_transfer = init.puts();
  // Warm-up: connects (endpoint + ping), unpacks the rkey, faults in whatever UCX maps.
  if (auto w = init.Transfer(); !w.ok()) return fail(w.status());
  r.transfer_bytes = init.bytes();
  const int reps = absl::GetFlag(FLAGS_reps);
  const absl::Duration timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout_s));
  for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
    RoundResult rr;
    absl::Duration total, copy_total;
    for (int i = 0; i < reps; ++i) {
      auto took = init.LocalCopy();
      if (!took.ok()) return fail(took.status());
      copy_total += *took;
    }
    rr.memcpy_gbps =
        static_cast<double>(r.transfer_bytes) * reps / absl::ToDoubleSeconds(copy_total) / 1e9;
    for (int i = 0; i < reps; ++i) {
      auto took = init.Transfer();
      if (!took.ok()) return fail(took.status());
      total += *took;
      rr.flush_ms += absl::ToDoubleMilliseconds(init.last_flush()) / reps;
    }
    rr.ours_gbps =
        static_cast<double>(r.transfer_bytes) * reps / absl::ToDoubleSeconds(total) / 1e9;
    if (!absl::GetFlag(FLAGS_perftest).empty()) {  // "" skips it (A/B runs of ours only)
      auto pt = RunPerftest(t, r.put_bytes, r.puts_per_transfer * reps, timeout);
      if (!pt.ok()) return fail(pt.status());
      rr.perftest_gbps = *pt;
    }
    std::fprintf(
        stderr, "  %s/%s round %d: ours %.3f GB/s, ucx_perftest %.3f GB/s, memcpy %.3f GB/s\n",
        t.name.c_str(), s.name.c_str(), round, rr.ours_gbps, rr.perftest_gbps, rr.memcpy_gbps);
    r.rounds.push_back(rr);
  }
  auto verified = init.Verify();
  if (!verified.ok()) return fail(verified.status());
  r.verified = *verified;
  std::vector<double> ours, theirs, copies, flushes;
  for (const RoundResult& rr : r.rounds) {
    flushes.push_back(rr.flush_ms);
    ours.push_back(rr.ours_gbps);
    theirs.push_back(rr.perftest_gbps);
    copies.push_back(rr.memcpy_gbps);
  }
  r.memcpy_median = Median(copies);
  r.flush_ms_median = Median(flushes);
  r.ours_median = Median(ours);
  r.perftest_median = Median(theirs);
  r.ratio = r.perftest_median > 0 ? r.ours_median / r.perftest_median : 0;
  return r;
}

int RunInitiator() {
  std::vector<TransportConfig> transports;
  std::vector<Shape> shapes;
  for (absl::string_view n : absl::StrSplit(absl::GetFlag(FLAGS_transports), ',')) {
    auto t = TransportNamed(std::string(n));
    if (!t.ok()) return std::fprintf(stderr, "%s\n", t.status().ToString().c_str()), 2;
    transports.push_back(*t);
  }
  for (absl::string_view n : absl::StrSplit(absl::GetFlag(FLAGS_shapes), ',')) {
    auto s = ShapeNamed(std::string(n));
    if (!s.ok()) return std::fprintf(stderr, "%s\n", s.status().ToString().c_str()), 2;
    shapes.push_back(*s);
  }
  std::vector<ConfigResult> results;
  for (const TransportConfig& t : transports) {
    for (const Shape& s : shapes) {
      std::fprintf(stderr, "%s / %s ...\n", t.name.c_str(), s.name.c_str());
      results.push_back(RunConfig(t, s));
    }
  }
  std::printf("pattern %s, target memory %s, %d tokens, medians of %d rounds x %d transfers\n",
              absl::GetFlag(FLAGS_pattern).c_str(), absl::GetFlag(FLAGS_target_memory).c_str(),
              absl::GetFlag(FLAGS_tokens), absl::GetFlag(FLAGS_rounds), absl::GetFlag(FLAGS_reps));
  std::printf("%-5s %-10s %8s %9s %10s %14s %6s %12s %9s %s\n", "tls", "shape", "put KiB",
              "MiB/xfer", "ours GB/s", "perftest GB/s", "ratio", "memcpy GB/s", "flush ms",
              "bytes ok");
  nlohmann::json j;
  j["tokens"] = absl::GetFlag(FLAGS_tokens);
  j["block_size"] = absl::GetFlag(FLAGS_block_size);
  j["rounds"] = absl::GetFlag(FLAGS_rounds);
  j["reps"] = absl::GetFlag(FLAGS_reps);
  j["units"] = "GB/s = 1e9 B/s; ucx_perftest's MB/s (MiB/s) converted";
  j["pattern"] = absl::GetFlag(FLAGS_pattern);
  j["target_memory"] = absl::GetFlag(FLAGS_target_memory);
  j["compute_ms_per_layer"] = absl::GetFlag(FLAGS_compute_ms_per_layer);
  bool all_ok = true;
  for (const ConfigResult& r : results) {
    nlohmann::json e{{"transport", r.transport},
                     {"shape", r.shape},
                     {"put_bytes", r.put_bytes},
                     {"puts_per_transfer", r.puts_per_transfer},
                     {"transfer_bytes", r.transfer_bytes}};
    if (!r.error.empty()) {
      all_ok = false;
      e["error"] = r.error;
      std::printf("%-5s %-10s error: %s\n", r.transport.c_str(), r.shape.c_str(), r.error.c_str());
    } else {
      all_ok = all_ok && r.verified;
      std::printf("%-5s %-10s %8.0f %9.1f %10.3f %14.3f %5.0f%% %12.3f %9.2f %s\n",
                  r.transport.c_str(), r.shape.c_str(), r.put_bytes / 1024.0,
                  r.transfer_bytes / 1048576.0, r.ours_median, r.perftest_median, 100 * r.ratio,
                  r.memcpy_median, r.flush_ms_median, r.verified ? "yes" : "NO");
      e["ours_gbps_median"] = r.ours_median;
      e["perftest_gbps_median"] = r.perftest_median;
      e["ratio"] = r.ratio;
      e["memcpy_gbps_median"] = r.memcpy_median;
      e["flush_ms_median"] = r.flush_ms_median;
      e["bytes_verified"] = r.verified;
      for (const RoundResult& rr : r.rounds) {
        e["rounds"].push_back({{"ours_gbps", rr.ours_gbps},
                               {"perftest_gbps", rr.perftest_gbps},
                               {"memcpy_gbps", rr.memcpy_gbps},
                               {"flush_ms", rr.flush_ms}});
      }
    }
    j["results"].push_back(e);
  }
  std::fflush(stdout);
  const std::string json_path = absl::GetFlag(FLAGS_json);
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << j.dump(2) << "\n";
  }
  return all_ok ? 0 : 1;
}

}  // namespace
}  // namespace dsv3::bench

int main(int argc, char** argv) {
  dsv3::DisableMutexDeadlockDetection();  // as the servers run
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_role) == "target") return dsv3::bench::RunTarget();
  return dsv3::bench::RunInitiator();
}
