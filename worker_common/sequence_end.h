#ifndef DSV3_WORKER_COMMON_SEQUENCE_END_H_
#define DSV3_WORKER_COMMON_SEQUENCE_END_H_

// How a worker's sequence ended and what it used, in the schedulers' own terms; the services
// convert them to the wire (dsv3.v1.FinishReason, dsv3.v1.Usage) in worker_conversions.h.

#include <cstdint>

namespace dsv3::worker {

enum class FinishReason {
  kStop,         // EOS or a stop token
  kLength,       // max_tokens reached
  kContextFull,  // the model's context is full
  kCancelled,    // the caller left
  kError,        // an error ended it (its status says which)
};

struct SequenceUsage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_prompt_tokens = 0;  // prompt tokens the prefix cache held
  int32_t draft_tokens = 0;          // MTP drafts proposed
  int32_t accepted_draft_tokens = 0;
};

}  // namespace dsv3::worker

#endif  // DSV3_WORKER_COMMON_SEQUENCE_END_H_
