#ifndef DSV3_ROUTER_API_KEYS_H_
#define DSV3_ROUTER_API_KEYS_H_

// API keys at the router (--api_keys FILE) and the limits each key has.
//
// The file has one key a line, `NAME KEY` or `NAME sha256:HEX` (the key's SHA-256, so that
// the file need not hold the secret), then optional limits for that key:
//   alice  sk-live-3f9a...               rps=5 tpm=20000 streams=4
//   batch  sha256:9f86d081884c7d65...    tpm=1000000
// `#` starts a comment. A limit not given is the router's default (--api_key_rps, ...; 0:
// none). The file is re-read when it changes (a Kubernetes Secret update, a key revoked); a
// file that no longer parses keeps the keys read before, and says why in the log.
//
// Requests present the key as `Authorization: Bearer KEY` (HTTP header or gRPC metadata).
// Limits per key: requests per second and tokens per minute (token buckets: a burst of one
// second's requests; the tokens a request used, prompt + completion, are charged when it
// ends and the key waits while it is in debt) and concurrent requests. Over a limit: HTTP
// 429 with Retry-After / gRPC RESOURCE_EXHAUSTED with a retry-after-ms trailer.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "router/inference_backend.h"

namespace dsv3::router {

struct ApiKeyLimits {
  double requests_per_second = 0;  // 0: no limit
  double tokens_per_minute = 0;
  int max_streams = 0;  // requests in flight at once
};

struct ApiKeyOptions {
  ApiKeyLimits defaults;
  absl::Duration reload_interval = absl::Seconds(1);
  std::function<absl::Time()> now = [] { return absl::Now(); };  // tests pass their clock
};

// One parsed line of the key file.
struct ApiKeyEntry {
  std::string name;
  std::string sha256_hex;  // of the key
  ApiKeyLimits limits;
};

// Parses a key file's text; INVALID_ARGUMENT naming the line when one is malformed.
absl::StatusOr<std::vector<ApiKeyEntry>> ParseApiKeyFile(absl::string_view text,
                                                         const ApiKeyLimits& defaults);

// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(absl::string_view data);

// One key's limits and what it used; survives reloads that keep the key's name.
class ApiKeyState;

// A generation admitted under a key.
class ApiKeyUse {
 public:
  ApiKeyUse(std::shared_ptr<ApiKeyState> key, std::function<absl::Time()> now);
  ~ApiKeyUse();  // ends the use if End did not
  // The request ended having used `tokens` (prompt + completion). Idempotent.
  void End(double tokens);

 private:
  const std::shared_ptr<ApiKeyState> key_;
  const std::function<absl::Time()> now_;
  std::atomic<bool> ended_{false};
};

// The backend as one admitted request sees it: Generate's observer counts the tokens the
// request uses and ends `use` at OnDone; the rest goes to `inner` unchanged.
class MeteredBackend final : public InferenceBackend {
 public:
  MeteredBackend(InferenceBackend& inner, std::shared_ptr<ApiKeyUse> use)
      : inner_(inner), use_(std::move(use)) {}
  absl::StatusOr<std::shared_ptr<GenerateHandle>> Generate(
      const v1::GenerateRequest& request, std::shared_ptr<GenerateObserver> observer) override;
  absl::StatusOr<v1::TokenizeResponse> Tokenize(const v1::TokenizeRequest& request) override {
    return inner_.Tokenize(request);
  }
  v1::ListModelsResponse ListModels() override { return inner_.ListModels(); }
  absl::StatusOr<v1::ModelInfo> GetModelInfo(const std::string& model) override {
    return inner_.GetModelInfo(model);
  }
  std::string TokenText(const std::string& model, int32_t token_id) override {
    return inner_.TokenText(model, token_id);
  }

 private:
  InferenceBackend& inner_;
  const std::shared_ptr<ApiKeyUse> use_;
};

class ApiKeys {
 public:
  // Reads `path` (an error when it cannot) and watches it for changes.
  static absl::StatusOr<std::shared_ptr<ApiKeys>> Load(const std::string& path,
                                                       ApiKeyOptions options);
  ~ApiKeys();
  ApiKeys(const ApiKeys&) = delete;
  ApiKeys& operator=(const ApiKeys&) = delete;

  // The name of the key `authorization` ("Bearer KEY") presents; UNAUTHENTICATED when it
  // is missing, malformed or not in the file.
  absl::StatusOr<std::string> Authenticate(absl::string_view authorization);

  // Authenticates a generation and takes it from its key's limits: RESOURCE_EXHAUSTED
  // (with RetryAfter set) over one. The use ends (its slot back, its tokens charged) at the
  // request's OnDone (MeteredBackend), or when the last reference goes.
  absl::StatusOr<std::shared_ptr<ApiKeyUse>> AdmitGeneration(absl::string_view authorization);

  // Re-reads the file now if it changed (the watcher does this every reload_interval).
  void ReloadIfChanged();
  int size();

 private:
  ApiKeys(std::string path, ApiKeyOptions options);
  absl::Status Reload();
  absl::StatusOr<std::shared_ptr<ApiKeyState>> Find(absl::string_view authorization);

  const std::string path_;
  const ApiKeyOptions options_;
  absl::Mutex mu_;
  std::string file_stamp_ ABSL_GUARDED_BY(mu_);  // inode, size, mtime of the file read
  std::map<std::string, std::shared_ptr<ApiKeyState>> by_hash_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread watcher_;
};

// When a refused request may be retried (set on RESOURCE_EXHAUSTED from AdmitGeneration);
// nullopt when the status carries none.
std::optional<absl::Duration> RetryAfter(const absl::Status& status);

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_API_KEYS_H_
