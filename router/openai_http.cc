#include "router/openai_http.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "nlohmann/json.hpp"
#include "router/openai_error.h"
#include "router/openai_request.h"
#include "router/openai_response.h"
#include "router/tcp_peer_state.h"

namespace dsv3::router {
namespace {

using Json = nlohmann::ordered_json;

constexpr char kJsonType[] = "application/json";
// Exactly this, with no parameters: httplib never compresses it (a compressed stream
// would sit in the compressor's buffer).
constexpr char kEventStreamType[] = "text/event-stream";

// Backend strings may hold invalid UTF-8: replace it rather than throw.
std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

void SendJson(httplib::Response& res, int http_status, const std::string& body) {
  res.status = http_status;
  res.set_content(body, kJsonType);
}

void SendError(httplib::Response& res, const absl::Status& status) {
  if (status.code() == absl::StatusCode::kUnauthenticated) {
    res.set_header("WWW-Authenticate", "Bearer");
  }
  if (std::optional<absl::Duration> retry = RetryAfter(status); retry.has_value()) {
    // Retry-After in whole seconds (RFC 9110); the OpenAI SDK prefers retry-after-ms.
    res.set_header("Retry-After",
                   absl::StrCat(absl::ToInt64Seconds(absl::Ceil(*retry, absl::Seconds(1)))));
    res.set_header("retry-after-ms", absl::StrCat(absl::ToInt64Milliseconds(*retry)));
  }
  SendJson(res, HttpStatusFromCode(status.code()), ErrorJson(status));
}

// 32 random hex digits.
std::string NewRequestId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrCat(absl::Hex(rng(), absl::kZeroPad16), absl::Hex(rng(), absl::kZeroPad16));
}

// A client's X-Request-Id when it is short and plain; a fresh id otherwise.
std::string RequestIdFor(const httplib::Request& req) {
  const std::string given = req.get_header_value("X-Request-Id");
  if (given.empty() || given.size() > 128) return NewRequestId();
  for (char c : given) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return NewRequestId();
    }
  }
  return given;
}

// Names come from the client: escaped, shortened, and only the first few.
void LogIgnoredFields(const std::string& path, const OpenAiRequest& request) {
  constexpr size_t kMaxNames = 16;
  constexpr size_t kMaxNameLength = 64;
  std::vector<std::string> names;
  for (const std::string& name : request.ignored_fields) {
    if (names.size() == kMaxNames) {
      names.push_back(absl::StrCat("... (", request.ignored_fields.size() - kMaxNames, " more)"));
      break;
    }
    names.push_back(absl::CEscape(name.substr(0, kMaxNameLength)));
  }
  DSV3_LOG(WARNING).With("request_id", request.generate.request_id())
      << "ignoring unknown fields in " << path << ": " << absl::StrJoin(names, ", ");
}

// "application/json", optionally with parameters ("; charset=utf-8"), any case.
bool IsJsonContentType(const std::string& content_type) {
  std::string media_type(content_type.substr(0, content_type.find(';')));
  absl::AsciiStrToLower(&media_type);
  return absl::StripAsciiWhitespace(media_type) == kJsonType;
}

// Gathers a non-streaming request's responses until OnDone.
class Collector final : public GenerateObserver {
 public:
  void OnResponse(const v1::GenerateResponse& response) override {
    absl::MutexLock lock(&mu_);
    responses_.push_back(response);
  }
  void OnDone(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    if (!done_.has_value()) done_ = status;
  }
  // Waits up to `timeout` for OnDone (the backend guarantees one, bounded by the request's
  // deadline); once it came, moves the responses out and returns the status.
  std::optional<absl::Status> WaitFor(absl::Duration timeout,
                                      std::vector<v1::GenerateResponse>* responses) {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(this, &Collector::DoneLocked), timeout)) {
      return std::nullopt;
    }
    *responses = std::move(responses_);
    return *done_;
  }

 private:
  bool DoneLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_.has_value(); }

  absl::Mutex mu_;
  std::vector<v1::GenerateResponse> responses_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> done_ ABSL_GUARDED_BY(mu_);
};

// One streaming request: the backend's observer fills it, httplib's content provider
// drains it on the connection's thread.
class StreamSession {
 public:
  void Push(const v1::GenerateResponse& response) {
    absl::MutexLock lock(&mu_);
    if (!done_.has_value()) pending_.push_back(response);
  }
  void Done(const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    if (done_.has_value()) return;
    done_ = status;
    handle_.reset();  // the request is over; drop the handle (and any cycle through it)
  }
  void SetHandle(std::shared_ptr<GenerateHandle> handle) {
    absl::MutexLock lock(&mu_);
    if (!done_.has_value()) handle_ = std::move(handle);
  }
  // The client left: end the backend request. Idempotent; Cancel runs outside mu_ since
  // the backend may call the observer from inside it.
  void Cancel() {
    std::shared_ptr<GenerateHandle> handle;
    {
      absl::MutexLock lock(&mu_);
      handle = std::move(handle_);
    }
    if (handle != nullptr) handle->Cancel();
  }
  // Waits up to `timeout` for responses or the end, then moves out what arrived; `done`
  // is set only once every response has been taken.
  void Take(absl::Duration timeout, std::vector<v1::GenerateResponse>* responses,
            std::optional<absl::Status>* done) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &StreamSession::ReadyLocked), timeout);
    responses->assign(std::make_move_iterator(pending_.begin()),
                      std::make_move_iterator(pending_.end()));
    pending_.clear();
    *done = done_;
  }

 private:
  bool ReadyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !pending_.empty() || done_.has_value();
  }

  absl::Mutex mu_;
  std::vector<v1::GenerateResponse> pending_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> done_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<GenerateHandle> handle_ ABSL_GUARDED_BY(mu_);
};

class StreamObserver final : public GenerateObserver {
 public:
  explicit StreamObserver(std::shared_ptr<StreamSession> session) : session_(std::move(session)) {}
  void OnResponse(const v1::GenerateResponse& response) override { session_->Push(response); }
  void OnDone(const absl::Status& status) override { session_->Done(status); }

 private:
  std::shared_ptr<StreamSession> session_;
};

// The connection-thread side of a stream: formats and writes what the session holds.
// Returns what httplib's content provider returns (false ends the connection).
class StreamWriter {
 public:
  StreamWriter(std::shared_ptr<StreamSession> session, ResponseContext context,
               absl::Duration poll_interval)
      : session_(std::move(session)),
        formatter_(std::move(context)),
        poll_interval_(poll_interval) {}

  bool WriteSome(httplib::DataSink& sink) {
    std::string out;
    if (!begun_) {
      begun_ = true;
      out = formatter_.Begin();
    }
    std::vector<v1::GenerateResponse> responses;
    std::optional<absl::Status> done;
    session_->Take(poll_interval_, &responses, &done);
    for (const v1::GenerateResponse& response : responses) out += formatter_.Add(response);
    if (done.has_value()) out += formatter_.End(*done);
    if (!out.empty() && !sink.write(out.data(), out.size())) return ClientLeft();
    if (done.has_value()) {
      sink.done();
      finished_ = true;
      return true;
    }
    // Nothing new, or written: either way check that someone is still reading.
    if (!sink.is_writable()) return ClientLeft();
    return true;
  }

  // The response is gone: written, or the connection failed, or the server stopped
  // (httplib then reports success without having written the end).
  void Release(bool success) {
    if (!success || !finished_) session_->Cancel();
  }

 private:
  bool ClientLeft() {
    session_->Cancel();
    return false;
  }

  std::shared_ptr<StreamSession> session_;
  StreamFormatter formatter_;
  const absl::Duration poll_interval_;
  bool begun_ = false;
  bool finished_ = false;  // the last event and the end of the stream were written
};

class OpenAiHttp {
 public:
  OpenAiHttp(InferenceBackend& backend, const OpenAiHttpOptions& options)
      : backend_(backend), options_(options) {}

  // With API keys: whether `req` presents one (else the 401 is sent).
  bool Authenticated(const httplib::Request& req, httplib::Response& res) {
    if (options_.api_keys == nullptr) return true;
    absl::StatusOr<std::string> key =
        options_.api_keys->Authenticate(req.get_header_value("Authorization"));
    if (!key.ok()) SendError(res, key.status());
    return key.ok();
  }

  // Reads the request body through `reader`, at most max_body_bytes of it: a chunked body
  // (no Content-Length, so httplib's own limit does not apply) is refused once it passes
  // the limit, not after it was read whole. False: the 413 is sent and the connection closes.
  bool ReadBody(const httplib::Request& req, const httplib::ContentReader& reader,
                httplib::Response& res, std::string* body) {
    bool too_large = false;
    const bool read = reader([&](const char* data, size_t length) {
      if (body->size() + length > options_.max_body_bytes) {
        too_large = true;
        return false;  // stop reading
      }
      body->append(data, length);
      return true;
    });
    // httplib refuses a Content-Length over its payload limit without reading any of it.
    if (!read && !too_large) {
      uint64_t declared = 0;
      too_large = absl::SimpleAtoi(req.get_header_value("Content-Length"), &declared) &&
                  declared > options_.max_body_bytes;
      if (!too_large) {
        res.set_header("Connection", "close");
        SendJson(res, 400, ErrorJson(400, "the request body could not be read"));
        return false;
      }
    }
    if (!too_large) return true;
    res.set_header("Connection", "close");  // the rest of the body is never read
    SendJson(res, 413, ErrorJson(413, BodyTooLargeMessage()));
    return false;
  }

  void HandleGenerate(OpenAiEndpoint endpoint, const httplib::Request& req,
                      const httplib::ContentReader& reader, httplib::Response& res) {
    std::string body;
    if (!ReadBody(req, reader, res, &body)) return;
    std::shared_ptr<ApiKeyUse> use;
    if (options_.api_keys != nullptr) {
      absl::StatusOr<std::shared_ptr<ApiKeyUse>> admitted =
          options_.api_keys->AdmitGeneration(req.get_header_value("Authorization"));
      if (!admitted.ok()) {
        SendError(res, admitted.status());
        return;
      }
      use = *std::move(admitted);
    }
    const std::string content_type = req.get_header_value("Content-Type");
    if (!IsJsonContentType(content_type)) {
      SendJson(res, 415,
               ErrorJson(415, absl::StrCat("Content-Type must be application/json, got '",
                                           content_type, "'")));
      return;
    }
    absl::StatusOr<OpenAiRequest> request = ParseOpenAiRequest(endpoint, body);
    if (!request.ok()) {
      SendError(res, request.status());
      return;
    }
    const std::string request_id = RequestIdFor(req);
    request->generate.set_request_id(request_id);
    res.set_header("X-Request-Id", request_id);
    if (!request->ignored_fields.empty()) LogIgnoredFields(req.path, *request);
    std::string model = request->generate.model();
    absl::StatusOr<v1::ModelInfo> info = backend_.GetModelInfo(model);
    if (model.empty() && info.ok()) model = info->name();
    ApplySamplingDefaults(info.ok() ? *info : v1::ModelInfo(), &*request);
    ResponseContext context = MakeResponseContext(
        *request, request_id, model,
        [backend = &backend_, model](int32_t id) { return backend->TokenText(model, id); });
    context.created_unix_seconds = absl::ToUnixSeconds(absl::Now());
    // The request's tokens count against its key, its end frees the key's slot.
    std::optional<MeteredBackend> metered;
    if (use != nullptr) metered.emplace(backend_, std::move(use));
    InferenceBackend& backend = metered.has_value() ? *metered : backend_;
    if (request->stream) {
      StartStream(backend, *request, std::move(context), res);
    } else {
      RunToCompletion(backend, *request, context, req, res);
    }
  }

  void HandleModels(httplib::Response& res) {
    v1::ListModelsResponse models = backend_.ListModels();
    Json data = Json::array();
    for (const v1::ModelInfo& info : models.models()) data.push_back(ModelJson(info));
    Json body;
    body["object"] = "list";
    body["data"] = std::move(data);
    SendJson(res, 200, Dump(body));
  }

  void HandleModel(const std::string& name, httplib::Response& res) {
    absl::StatusOr<v1::ModelInfo> info = backend_.GetModelInfo(name);
    if (!info.ok()) {
      SendError(res, info.status());
      return;
    }
    SendJson(res, 200, Dump(ModelJson(*info)));
  }

  void HandleHealth(httplib::Response& res) {
    if (backend_.ListModels().models_size() == 0) {
      SendJson(res, 503, ErrorJson(503, "no model is ready"));
      return;
    }
    SendJson(res, 200, R"({"status":"ok"})");
  }

  std::string BodyTooLargeMessage() const {
    return absl::StrCat("the request body is larger than the limit of ", options_.max_body_bytes,
                        " bytes");
  }

 private:
  static Json ModelJson(const v1::ModelInfo& info) {
    Json model;
    model["id"] = info.name();
    model["object"] = "model";
    model["created"] = info.created_unix_seconds();
    model["owned_by"] = "dsv3-serve";
    model["max_model_len"] = info.max_context_tokens();
    return model;
  }

  void RunToCompletion(InferenceBackend& backend, const OpenAiRequest& request,
                       const ResponseContext& context, const httplib::Request& req,
                       httplib::Response& res) {
    auto collector = std::make_shared<Collector>();
    absl::StatusOr<std::shared_ptr<GenerateHandle>> handle =
        backend.Generate(request.generate, collector);
    if (!handle.ok()) {
      SendError(res, handle.status());
      return;
    }
    std::vector<v1::GenerateResponse> responses;
    std::optional<absl::Status> done;
    bool cancelled = false;
    while (!(done = collector->WaitFor(options_.disconnect_check_interval, &responses))) {
      // httplib gives no socket: ask the kernel whether the client closed the connection.
      if (!cancelled && QueryTcpPeerState(req.local_addr, req.local_port, req.remote_addr,
                                          req.remote_port) == TcpPeerState::kClosed) {
        cancelled = true;
        DSV3_LOG(DEBUG).With("request_id", request.generate.request_id())
            << "the client closed the connection; cancelling";
        (*handle)->Cancel();  // OnDone follows
      }
    }
    const absl::Status status = *done;
    if (!status.ok()) {
      SendError(res, status);
      return;
    }
    SendJson(res, 200, FormatCompletion(context, responses));
  }

  void StartStream(InferenceBackend& backend, const OpenAiRequest& request, ResponseContext context,
                   httplib::Response& res) {
    auto session = std::make_shared<StreamSession>();
    absl::StatusOr<std::shared_ptr<GenerateHandle>> handle =
        backend.Generate(request.generate, std::make_shared<StreamObserver>(session));
    if (!handle.ok()) {
      SendError(res, handle.status());
      return;
    }
    session->SetHandle(*std::move(handle));
    auto writer =
        std::make_shared<StreamWriter>(session, std::move(context), options_.poll_interval);
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");  // proxies: do not buffer the events
    res.set_chunked_content_provider(
        kEventStreamType,
        [writer](size_t /*offset*/, httplib::DataSink& sink) { return writer->WriteSome(sink); },
        [writer](bool success) { writer->Release(success); });
  }

  InferenceBackend& backend_;
  const OpenAiHttpOptions options_;
};

// listen() again on a listening socket only changes its backlog.
void RaiseListenBacklog(int fd) {
  if (fd < 0) return;
  int accepting = 0;
  socklen_t length = sizeof(accepting);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) != 0 || accepting == 0) {
    return;  // not (or no longer) our listening socket
  }
  if (listen(fd, SOMAXCONN) != 0) {
    DSV3_LOG(WARNING) << "cannot raise the HTTP listen backlog: " << std::strerror(errno);
  }
}

}  // namespace

void AddOpenAiRoutes(httplib::Server& server, InferenceBackend& backend,
                     const OpenAiHttpOptions& options) {
  auto http = std::make_shared<OpenAiHttp>(backend, options);
  const int threads = std::max(1, options.threads);
  // httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, compiled into Debian's
  // library): in a burst of new connections the rest wait for the client's SYN retry, a
  // whole second. Note the listening socket as httplib creates it, and raise the backlog
  // when httplib starts serving (it makes its task queue right before the first accept).
  auto listen_fd = std::make_shared<std::atomic<int>>(-1);
  server.set_socket_options([listen_fd](int sock) {
    // SO_REUSEADDR only: httplib's default sets SO_REUSEPORT, which would let a second
    // process bind the same port and silently share its traffic.
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    // Relaxed: bind runs before the listen thread starts (thread start orders them).
    listen_fd->store(sock, std::memory_order_relaxed);
  });
  server.new_task_queue = [threads, listen_fd] {
    RaiseListenBacklog(listen_fd->load(std::memory_order_relaxed));
    return new httplib::ThreadPool(threads);
  };
  server.set_payload_max_length(options.max_body_bytes);

  server.Post("/v1/chat/completions", [http](const httplib::Request& req, httplib::Response& res,
                                             const httplib::ContentReader& reader) {
    http->HandleGenerate(OpenAiEndpoint::kChatCompletions, req, reader, res);
  });
  server.Post("/v1/completions", [http](const httplib::Request& req, httplib::Response& res,
                                        const httplib::ContentReader& reader) {
    http->HandleGenerate(OpenAiEndpoint::kCompletions, req, reader, res);
  });
  server.Get("/v1/models", [http](const httplib::Request& req, httplib::Response& res) {
    if (http->Authenticated(req, res)) http->HandleModels(res);
  });
  server.Get(R"(/v1/models/(.+))", [http](const httplib::Request& req, httplib::Response& res) {
    if (http->Authenticated(req, res)) http->HandleModel(req.matches[1], res);
  });
  server.Get("/health",
             [http](const httplib::Request&, httplib::Response& res) { http->HandleHealth(res); });

  // Errors httplib produces itself (unknown route, body over the limit, a malformed
  // request line) get OpenAI's error JSON too; responses that have a body keep it.
  httplib::Server::HandlerWithResponse on_error = [http](const httplib::Request& req,
                                                         httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string message;
    switch (res.status) {
      case 404:
        message = absl::StrCat("no route for ", req.method, " ", req.path);
        break;
      case 413:
        message = http->BodyTooLargeMessage();
        break;
      case 400:
        message = "malformed HTTP request";
        break;
      default:
        message = absl::StrCat("HTTP error ", res.status);
        break;
    }
    res.set_content(ErrorJson(res.status, message), kJsonType);
    return httplib::Server::HandlerResponse::Handled;
  };
  server.set_error_handler(std::move(on_error));
}

}  // namespace dsv3::router
