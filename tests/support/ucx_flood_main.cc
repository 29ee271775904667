// ucx-flood HEX_ADDRESS: connects to the UCX worker at that address over shared memory
// (posix,cma,self) and sends it 30,000-byte active messages as fast as it can, until
// killed. The tests kill it mid-message to stop the target's shared-memory receive ring
// (transport/ucx/ucx_context.h). The messages use the context's ping id without asking for
// an answer, which every worker ignores.

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "transport/ucx/ucx_context.h"
#include "transport/ucx/ucx_peer.h"

int main(int argc, char** argv) {
  using namespace dsv3::transport;
  if (argc != 2) {
    std::fprintf(stderr, "usage: ucx-flood HEX_UCX_WORKER_ADDRESS\n");
    return 2;
  }
  UcxOptions options;
  options.transports = "posix,cma,self";
  options.peer_error_handling = false;
  auto context = UcxContext::Create(options);
  if (!context.ok()) {
    std::fprintf(stderr, "%s\n", context.status().ToString().c_str());
    return 1;
  }
  UcxPeerCache peers(**context);
  auto peer = peers.Get(absl::HexStringToBytes(argv[1]));
  if (!peer.ok()) {
    std::fprintf(stderr, "%s\n", peer.status().ToString().c_str());
    return 1;
  }
  std::fprintf(stderr, "flooding\n");
  // Several fragments a message: a kill lands inside one often (with 8-byte messages, not
  // once in 300 kills).
  std::vector<char> payload(30000);
  constexpr unsigned kPingAmId = 1;  // ucx_context.cc's; 16 header bytes: not a ping
  uint64_t header[2] = {0, 0};
  while (true) {
    auto r = (*peer)->Post([&](ucp_ep_h ep) {
      ucp_request_param_t param{};
      param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      param.flags = UCP_AM_SEND_FLAG_EAGER;
      return ucp_am_send_nbx(ep, kPingAmId, header, sizeof(header), payload.data(), payload.size(),
                             &param);
    });
    if (!r.ok() || UCS_PTR_IS_ERR(*r)) {
      std::fprintf(stderr, "send failed\n");
      return 1;
    }
    if (*r != nullptr) {
      while (ucp_request_check_status(*r) == UCS_INPROGRESS) {
        ucp_worker_progress((*context)->worker());
      }
      ucp_request_free(*r);
    }
    ++header[0];
  }
}
