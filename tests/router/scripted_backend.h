#ifndef DSV3_TESTS_ROUTER_SCRIPTED_BACKEND_H_
#define DSV3_TESTS_ROUTER_SCRIPTED_BACKEND_H_

// A deterministic InferenceBackend for the front-end tests: every request gets the same
// scripted pieces (text + token ids) for each of its n completions, delivered from one
// emitter thread as a real backend's threads would; it records the requests it was given
// and every Cancel.

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "router/inference_backend.h"

namespace dsv3::router::testing {

struct Piece {
  // "{i}" is replaced by the completion's index.
  std::string text;
  std::vector<int32_t> token_ids;
};

struct Script {
  std::vector<Piece> pieces = {{"Hello", {11}}, {" world", {12}}, {"!", {13}}};
  v1::FinishReason finish_reason = v1::FINISH_REASON_STOP;
  int32_t prompt_tokens = 5;
  int32_t cached_prompt_tokens = 0;  // of prompt_tokens, from the prefix cache
  // Delivered with OnDone after the pieces (an error ends the request with no finish).
  absl::Status final_status;
  // Pause between pieces.
  absl::Duration interval = absl::ZeroDuration();
  // After the first piece, wait for ReleaseHeld().
  bool hold_after_first = false;
  // Cycle through the pieces until cancelled.
  bool endless = false;
};

class ScriptedBackend final : public InferenceBackend {
 public:
  static constexpr char kModel[] = "test-model";

  ScriptedBackend();
  ~ScriptedBackend() override;

  // --- InferenceBackend -------------------------------------------------------------
  absl::StatusOr<std::shared_ptr<GenerateHandle>> Generate(
      const v1::GenerateRequest& request, std::shared_ptr<GenerateObserver> observer) override;
  absl::StatusOr<v1::TokenizeResponse> Tokenize(const v1::TokenizeRequest& request) override;
  v1::ListModelsResponse ListModels() override;
  absl::StatusOr<v1::ModelInfo> GetModelInfo(const std::string& model) override;
  // "<id>" for every id; "\xE4\xBD" (half a character) for id 99.
  std::string TokenText(const std::string& model, int32_t token_id) override;

  // --- test controls ------------------------------------------------------------------
  void SetScript(Script script);
  // Generate fails synchronously with this (OK = accept).
  void SetGenerateError(absl::Status status);
  // ListModels empty when not ready.
  void SetReady(bool ready);
  void ReleaseHeld();

  int generate_calls();
  int cancels();
  int running();
  v1::GenerateRequest last_request();
  // Wait (bounded) until the counter reaches `count`; true when it did.
  bool WaitForCancels(int count, absl::Duration timeout);
  bool WaitForHeld(int count, absl::Duration timeout);
  bool WaitForRunning(int count, absl::Duration timeout);

 private:
  class Run;
  using Clock = std::chrono::steady_clock;

  void EmitterLoop();
  void Schedule(std::shared_ptr<Run> run, Clock::time_point when);
  void CancelRun(Run& run);
  // One step of a run on the emitter thread; the observer is called without mu_.
  void Step(const std::shared_ptr<Run>& run);
  template <typename Pred>
  bool WaitFor(Pred pred, absl::Duration timeout);

  std::mutex mu_;
  std::condition_variable cv_;
  Script script_;
  absl::Status generate_error_;
  bool ready_ = true;
  bool stopping_ = false;
  std::multimap<Clock::time_point, std::shared_ptr<Run>> queue_;
  std::vector<std::shared_ptr<Run>> held_;
  int generate_calls_ = 0;
  int cancels_ = 0;
  int running_ = 0;
  v1::GenerateRequest last_request_;
  std::thread emitter_;
};

}  // namespace dsv3::router::testing

#endif  // DSV3_TESTS_ROUTER_SCRIPTED_BACKEND_H_
