#include "router/api_keys.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/types/optional.h"
#include "common/logging.h"
#include "common/serving_metrics.h"
#include "common/status_macros.h"

namespace dsv3::router {
namespace {

constexpr absl::string_view kRetryAfterPayload = "type.dsv3.dev/retry-after-ms";

absl::Status LimitError(absl::string_view message, absl::Duration retry_after) {
  absl::Status status = absl::ResourceExhaustedError(message);
  const int64_t ms = std::max<int64_t>(
      1, absl::ToInt64Milliseconds(absl::Ceil(retry_after, absl::Milliseconds(1))));
  status.SetPayload(kRetryAfterPayload, absl::Cord(absl::StrCat(ms)));
  return status;
}

bool IsHex64(absl::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// "inode size mtime": changes when the file is replaced (a Secret's symlink swap) or written.
std::string FileStamp(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "";
  return absl::StrCat(st.st_ino, " ", st.st_size, " ", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
}

}  // namespace

std::string Sha256Hex(absl::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < length; ++i)
    absl::StrAppend(&hex, absl::Hex(digest[i], absl::kZeroPad2));
  return hex;
}

std::optional<absl::Duration> RetryAfter(const absl::Status& status) {
  absl::optional<absl::Cord> ms = status.GetPayload(kRetryAfterPayload);
  int64_t value = 0;
  if (!ms.has_value() || !absl::SimpleAtoi(std::string(*ms), &value)) return std::nullopt;
  return absl::Milliseconds(value);
}

absl::StatusOr<std::vector<ApiKeyEntry>> ParseApiKeyFile(absl::string_view text,
                                                         const ApiKeyLimits& defaults) {
  std::vector<ApiKeyEntry> entries;
  std::map<std::string, int> names, hashes;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (size_t hash = line.find('#'); hash != absl::string_view::npos) line = line.substr(0, hash);
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    const auto bad = [&](absl::string_view why) {
      // Never quote the key itself.
      return absl::InvalidArgumentError(absl::StrCat("API key file line ", line_number, ": ", why));
    };
    if (fields.size() < 2) return bad("expected NAME KEY (or NAME sha256:HEX) [limits]");
    ApiKeyEntry entry;
    entry.name = std::string(fields[0]);
    entry.limits = defaults;
    for (char c : entry.name) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
        return bad("a key name has letters, digits, '-', '_' and '.' only");
      }
    }
    if (absl::StartsWith(fields[1], "sha256:")) {
      absl::string_view hex = fields[1].substr(7);
      if (!IsHex64(hex)) return bad("sha256: needs 64 hex digits");
      entry.sha256_hex = absl::AsciiStrToLower(hex);
    } else {
      if (fields[1].size() < 16) return bad("a key must have at least 16 characters");
      entry.sha256_hex = Sha256Hex(fields[1]);
    }
    for (size_t i = 2; i < fields.size(); ++i) {
      std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(fields[i], '=');
      double value = 0;
      if (!absl::SimpleAtod(kv.second, &value) || !(value >= 0) || std::isinf(value)) {
        return bad(absl::StrCat("'", fields[i], "': a limit is NAME=NUMBER >= 0"));
      }
      if (kv.first == "rps") {
        entry.limits.requests_per_second = value;
      } else if (kv.first == "tpm") {
        entry.limits.tokens_per_minute = value;
      } else if (kv.first == "streams") {
        entry.limits.max_streams = static_cast<int>(value);
      } else {
        return bad(absl::StrCat("unknown limit '", kv.first, "' (rps, tpm, streams)"));
      }
    }
    if (names[entry.name]++ > 0) return bad(absl::StrCat("key name '", entry.name, "' twice"));
    if (hashes[entry.sha256_hex]++ > 0) return bad("the same key twice");
    entries.push_back(std::move(entry));
  }
  return entries;
}

class ApiKeyState {
 public:
  ApiKeyState(std::string name, ApiKeyLimits limits, absl::Time now)
      : name_(std::move(name)), limits_(limits), last_(now) {
    requests_ = Burst();
    tokens_ = limits_.tokens_per_minute;
  }

  const std::string& name() const { return name_; }

  void SetLimits(const ApiKeyLimits& limits) {
    absl::MutexLock lock(&mu_);
    limits_ = limits;
    requests_ = std::min(requests_, Burst());
    tokens_ = std::min(tokens_, limits_.tokens_per_minute);
  }

  // Takes one request from the limits, or says when to retry.
  absl::Status Admit(absl::Time now) {
    absl::MutexLock lock(&mu_);
    Refill(now);
    const ServingMetrics& m = Metrics();
    if (limits_.max_streams > 0 && in_flight_ >= limits_.max_streams) {
      m.api_key_requests.WithLabels({name_, "stream_limited"}).Increment();
      return LimitError(
          absl::StrCat("API key '", name_, "' has ", in_flight_, " requests in flight, its limit"),
          absl::Seconds(1));
    }
    if (limits_.requests_per_second > 0 && requests_ < 1) {
      m.api_key_requests.WithLabels({name_, "rate_limited"}).Increment();
      return LimitError(absl::StrCat("API key '", name_, "' is over its limit of ",
                                     limits_.requests_per_second, " requests per second"),
                        absl::Seconds((1 - requests_) / limits_.requests_per_second));
    }
    if (limits_.tokens_per_minute > 0 && tokens_ <= 0) {
      m.api_key_requests.WithLabels({name_, "token_limited"}).Increment();
      return LimitError(absl::StrCat("API key '", name_, "' is over its limit of ",
                                     limits_.tokens_per_minute, " tokens per minute"),
                        absl::Seconds((1 - tokens_) * 60 / limits_.tokens_per_minute));
    }
    if (limits_.requests_per_second > 0) requests_ -= 1;
    ++in_flight_;
    m.api_key_requests.WithLabels({name_, "admitted"}).Increment();
    return absl::OkStatus();
  }

  // A request admitted earlier ended, having used `tokens`.
  void Done(double tokens, absl::Time now) {
    absl::MutexLock lock(&mu_);
    Refill(now);
    --in_flight_;
    if (limits_.tokens_per_minute > 0) tokens_ -= tokens;
    Metrics().api_key_tokens.WithLabels({name_}).Increment(tokens);
  }

 private:
  double Burst() const { return std::max(1.0, limits_.requests_per_second); }

  void Refill(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const double seconds = std::max(0.0, absl::ToDoubleSeconds(now - last_));
    last_ = std::max(last_, now);
    requests_ = std::min(Burst(), requests_ + seconds * limits_.requests_per_second);
    tokens_ =
        std::min(limits_.tokens_per_minute, tokens_ + seconds * limits_.tokens_per_minute / 60);
  }

  const std::string name_;
  absl::Mutex mu_;
  ApiKeyLimits limits_ ABSL_GUARDED_BY(mu_);
  absl::Time last_ ABSL_GUARDED_BY(mu_);
  double requests_ ABSL_GUARDED_BY(mu_) = 0;  // bucket of requests
  double tokens_ ABSL_GUARDED_BY(mu_) = 0;    // bucket of tokens; below 0: in debt
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

ApiKeyUse::ApiKeyUse(std::shared_ptr<ApiKeyState> key, std::function<absl::Time()> now)
    : key_(std::move(key)), now_(std::move(now)) {}

ApiKeyUse::~ApiKeyUse() { End(0); }

void ApiKeyUse::End(double tokens) {
  if (ended_.exchange(true)) return;
  key_->Done(tokens, now_());
}

namespace {

// Counts the tokens a request used and ends its key use at OnDone.
class MeteredObserver final : public GenerateObserver {
 public:
  MeteredObserver(std::shared_ptr<ApiKeyUse> use, std::shared_ptr<GenerateObserver> inner)
      : use_(std::move(use)), inner_(std::move(inner)) {}

  void OnResponse(const v1::GenerateResponse& response) override {
    if (response.has_usage()) {
      absl::MutexLock lock(&mu_);
      prompt_tokens_ = std::max<double>(prompt_tokens_, response.usage().prompt_tokens());
      completion_tokens_ += response.usage().completion_tokens();
    }
    inner_->OnResponse(response);
  }
  void OnDone(const absl::Status& status) override {
    double tokens = 0;
    {
      absl::MutexLock lock(&mu_);
      tokens = prompt_tokens_ + completion_tokens_;
    }
    use_->End(tokens);
    inner_->OnDone(status);
  }

 private:
  const std::shared_ptr<ApiKeyUse> use_;
  const std::shared_ptr<GenerateObserver> inner_;
  absl::Mutex mu_;
  double prompt_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  double completion_tokens_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<std::shared_ptr<GenerateHandle>> MeteredBackend::Generate(
    const v1::GenerateRequest& request, std::shared_ptr<GenerateObserver> observer) {
  return inner_.Generate(request, std::make_shared<MeteredObserver>(use_, std::move(observer)));
}

ApiKeys::ApiKeys(std::string path, ApiKeyOptions options)
    : path_(std::move(path)), options_(std::move(options)) {}

absl::StatusOr<std::shared_ptr<ApiKeys>> ApiKeys::Load(const std::string& path,
                                                       ApiKeyOptions options) {
  std::shared_ptr<ApiKeys> keys(new ApiKeys(path, std::move(options)));
  DSV3_RETURN_IF_ERROR(keys->Reload());
  ApiKeys* self = keys.get();
  keys->watcher_ = std::thread([self] {
    absl::MutexLock lock(&self->mu_);
    while (!self->mu_.AwaitWithTimeout(absl::Condition(&self->stop_),
                                       self->options_.reload_interval)) {
      self->mu_.Unlock();
      self->ReloadIfChanged();
      self->mu_.Lock();
    }
  });
  return keys;
}

ApiKeys::~ApiKeys() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (watcher_.joinable()) watcher_.join();
}

int ApiKeys::size() {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(by_hash_.size());
}

void ApiKeys::ReloadIfChanged() {
  {
    absl::MutexLock lock(&mu_);
    if (FileStamp(path_) == file_stamp_) return;
  }
  if (absl::Status s = Reload(); !s.ok()) {
    DSV3_LOG(ERROR) << "API keys: keeping the keys read before: " << s;
  }
}

absl::Status ApiKeys::Reload() {
  const std::string stamp = FileStamp(path_);
  std::ifstream in(path_);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the API key file ", path_));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<std::vector<ApiKeyEntry>> entries = ParseApiKeyFile(text.str(), options_.defaults);
  absl::MutexLock lock(&mu_);
  file_stamp_ = stamp;  // a bad file is not read again until it changes
  if (!entries.ok())
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", entries.status().message()));
  std::map<std::string, std::shared_ptr<ApiKeyState>> by_name;
  for (auto& [hash, state] : by_hash_) by_name[state->name()] = state;
  std::map<std::string, std::shared_ptr<ApiKeyState>> next;
  for (const ApiKeyEntry& e : *entries) {
    auto it = by_name.find(e.name);
    std::shared_ptr<ApiKeyState> state;
    if (it != by_name.end()) {
      state = it->second;  // what it used carries over
      state->SetLimits(e.limits);
    } else {
      state = std::make_shared<ApiKeyState>(e.name, e.limits, options_.now());
    }
    next[e.sha256_hex] = std::move(state);
  }
  by_hash_ = std::move(next);
  DSV3_LOG(INFO) << "API keys: " << by_hash_.size() << " keys from " << path_;
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<ApiKeyState>> ApiKeys::Find(absl::string_view authorization) {
  const ServingMetrics& m = Metrics();
  absl::string_view key = absl::StripAsciiWhitespace(authorization);
  if (key.empty()) {
    m.api_key_rejected.WithLabels({"missing"}).Increment();
    return absl::UnauthenticatedError("missing API key: send it as 'Authorization: Bearer KEY'");
  }
  if (!absl::ConsumePrefix(&key, "Bearer ") && !absl::ConsumePrefix(&key, "bearer ")) {
    m.api_key_rejected.WithLabels({"malformed"}).Increment();
    return absl::UnauthenticatedError("the Authorization value must be 'Bearer KEY'");
  }
  const std::string hash = Sha256Hex(absl::StripAsciiWhitespace(key));
  absl::MutexLock lock(&mu_);
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) {
    m.api_key_rejected.WithLabels({"invalid"}).Increment();
    return absl::UnauthenticatedError("incorrect API key provided");
  }
  return it->second;
}

absl::StatusOr<std::string> ApiKeys::Authenticate(absl::string_view authorization) {
  DSV3_ASSIGN_OR_RETURN(std::shared_ptr<ApiKeyState> key, Find(authorization));
  return key->name();
}

absl::StatusOr<std::shared_ptr<ApiKeyUse>> ApiKeys::AdmitGeneration(
    absl::string_view authorization) {
  DSV3_ASSIGN_OR_RETURN(std::shared_ptr<ApiKeyState> key, Find(authorization));
  DSV3_RETURN_IF_ERROR(key->Admit(options_.now()));
  return std::make_shared<ApiKeyUse>(std::move(key), options_.now);
}

}  // namespace dsv3::router
