// dsv3-prefill: runs prompt forward passes, batched and chunked, and pushes each layer's
// latent KV rows over UCX into a decode worker's pool.

#include "absl/flags/flag.h"
#include "common/server_main.h"
#include "common/status_macros.h"
#include "prefill_worker/prefill_service.h"
#include "worker_common/structured_outputs.h"
#include "worker_common/worker_flags.h"

ABSL_FLAG(int, prefill_chunk_tokens, 512, "Prompt tokens computed per step (all requests).");
ABSL_FLAG(absl::Duration, kv_transfer_timeout, absl::Seconds(10),
          "Longest wait for a request's KV to land in its decode worker.");

int main(int argc, char** argv) {
  dsv3::prefill::PrefillService* service = nullptr;
  return dsv3::RunServerMain(
      argc, argv, "prefill",
      "dsv3-prefill: chunked, batched prompt passes; latent KV pushed over UCX.\n"
      "usage: dsv3-prefill --model DIR [--flags]",
      [&]() -> absl::StatusOr<dsv3::ServerParts> {
        DSV3_ASSIGN_OR_RETURN(auto resources,
                              dsv3::worker::LoadWorkerResourcesFromFlags("prefill"));
        dsv3::prefill::PrefillServiceOptions options;
        options.model_name = dsv3::worker::ModelNameFromFlags();
        options.scheduler.chunk_tokens = absl::GetFlag(FLAGS_prefill_chunk_tokens);
        options.scheduler.transfer_timeout = absl::GetFlag(FLAGS_kv_transfer_timeout);
        options.scheduler.prefix_cache = absl::GetFlag(FLAGS_prefix_cache);
        options.scheduler.prefix_cache_max_blocks = absl::GetFlag(FLAGS_prefix_cache_max_blocks);
        DSV3_ASSIGN_OR_RETURN(options.structured_outputs,
                              dsv3::worker::LoadStructuredOutputs(*resources.model));
        DSV3_ASSIGN_OR_RETURN(
            auto created, dsv3::prefill::PrefillService::Create(
                              *resources.model, dsv3::worker::KvLayoutFromFlags(*resources.model),
                              *resources.ucx, options));
        service = created.get();
        dsv3::ServerParts parts;
        parts.keep_alive.push_back(resources.model);
        parts.keep_alive.push_back(resources.experts);
        parts.keep_alive.push_back(resources.ucx);
        parts.services.push_back(service->NewStatusService());
        parts.services.push_back(std::move(created));
        parts.on_draining = [&service] { service->Drain(); };
        return parts;
      });
}
