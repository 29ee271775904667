// dsv3-decode: holds the paged latent KV pool (registered with UCX), batches decode steps
// continuously and streams tokens.

#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/server_main.h"
#include "common/status_macros.h"
#include "decode_worker/decode_service.h"
#include "worker_common/structured_outputs.h"
#include "worker_common/worker_flags.h"

ABSL_DECLARE_FLAG(absl::Duration, drain_timeout);  // common/service_host.cc
ABSL_FLAG(int, max_running, 64, "Most sequences in one decode step.");
ABSL_FLAG(int, local_prefill_chunk_tokens, 32,
          "Conditional disaggregation (the router's --decode_prefill_max_tokens): most prompt "
          "tokens this worker computes per step for requests whose uncached suffix it computes "
          "itself; a longer suffix is chunked over several steps, so the running batch's "
          "steps stay short (bench/RESULTS.md). 0: each suffix in one step.");
ABSL_FLAG(bool, speculative_mtp, false,
          "MTP speculative decoding (models with an MTP layer): --num_draft_tokens drafts per "
          "step, verified in the step's forward pass.");
ABSL_FLAG(int32_t, num_draft_tokens, 1,
          "With --speculative_mtp: drafts per step (1-8), chained through the one MTP layer.");
ABSL_FLAG(std::string, kv_pool_memory, "engine",
          "Where the KV pool lives: engine (its own memory, registered with UCX; pages are used "
          "as blocks are touched) or ucx (allocated by UCX, committed at start, in /dev/shm "
          "over shared memory: UCX 1.13 gives one-sided shared-memory puts only into such "
          "memory, 2-3x faster KV transfer between workers on one node).");
ABSL_FLAG(absl::Duration, lease_timeout, absl::Seconds(30),
          "How long reserved KV blocks wait for their Decode before they are freed.");
ABSL_FLAG(absl::Duration, max_lease_timeout, absl::Minutes(2),
          "No KV lease lives longer without a Decode, whatever its Reserve asks (a lease pins "
          "pool blocks).");

int main(int argc, char** argv) {
  dsv3::decode::DecodeService* service = nullptr;
  return dsv3::RunServerMain(
      argc, argv, "decode",
      "dsv3-decode: paged latent KV pool exposed over UCX, continuous batching, streaming.\n"
      "usage: dsv3-decode --model DIR [--flags]",
      [&]() -> absl::StatusOr<dsv3::ServerParts> {
        DSV3_ASSIGN_OR_RETURN(auto resources, dsv3::worker::LoadWorkerResourcesFromFlags("decode"));
        dsv3::decode::DecodeServiceOptions options;
        options.model_name = dsv3::worker::ModelNameFromFlags();
        options.scheduler.max_running = absl::GetFlag(FLAGS_max_running);
        options.scheduler.local_prefill_chunk_tokens =
            absl::GetFlag(FLAGS_local_prefill_chunk_tokens);
        options.scheduler.default_lease = absl::GetFlag(FLAGS_lease_timeout);
        options.scheduler.max_lease = absl::GetFlag(FLAGS_max_lease_timeout);
        options.scheduler.speculative_mtp = absl::GetFlag(FLAGS_speculative_mtp);
        options.scheduler.num_draft_tokens = absl::GetFlag(FLAGS_num_draft_tokens);
        if (options.scheduler.num_draft_tokens < 1 || options.scheduler.num_draft_tokens > 8) {
          return absl::InvalidArgumentError("--num_draft_tokens must be within 1..8");
        }
        options.scheduler.prefix_cache = absl::GetFlag(FLAGS_prefix_cache);
        options.scheduler.prefix_cache_max_blocks = absl::GetFlag(FLAGS_prefix_cache_max_blocks);
        DSV3_ASSIGN_OR_RETURN(options.structured_outputs,
                              dsv3::worker::LoadStructuredOutputs(*resources.model));
        DSV3_ASSIGN_OR_RETURN(options.kv_pool_memory,
                              dsv3::decode::ParseKvPoolMemory(absl::GetFlag(FLAGS_kv_pool_memory)));
        DSV3_ASSIGN_OR_RETURN(
            auto created, dsv3::decode::DecodeService::Create(
                              *resources.model, dsv3::worker::KvLayoutFromFlags(*resources.model),
                              *resources.ucx, options));
        service = created.get();
        dsv3::ServerParts parts;
        parts.keep_alive.push_back(resources.model);
        parts.keep_alive.push_back(resources.experts);
        parts.keep_alive.push_back(resources.ucx);
        parts.services.push_back(service->NewStatusService());
        parts.services.push_back(std::move(created));
        parts.on_started = [&service](dsv3::ServiceHost& host) {
          service->set_advertised_address(host.grpc_address());
          return absl::OkStatus();
        };
        parts.on_draining = [&service] {
          service->Drain(absl::Now() + absl::GetFlag(FLAGS_drain_timeout));
        };
        return parts;
      });
}
