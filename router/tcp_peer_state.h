#ifndef DSV3_ROUTER_TCP_PEER_STATE_H_
#define DSV3_ROUTER_TCP_PEER_STATE_H_

// Whether the client of a TCP connection has closed it, asked of the kernel by the
// connection's four addresses (NETLINK_SOCK_DIAG, as `ss` does), without the socket.
//
// Why: httplib does not hand its socket to a handler, and a non-streaming completion holds
// its handler until the whole answer is ready; a client that gives up meanwhile (a timeout,
// Ctrl-C) must cancel the request, as it does for streams, instead of leaving it to run to
// its deadline.

#include <string>

namespace dsv3::router {

enum class TcpPeerState {
  kOpen,     // established (or any state but the ones below)
  kClosed,   // the peer sent FIN or RST: CLOSE_WAIT, LAST_ACK, CLOSE, or no such socket
  kUnknown,  // the kernel could not be asked (no sock_diag here): assume open
};

// `local_*` is this end (the server's address and port), `remote_*` the client's; IPv4 or
// IPv6 text addresses as httplib reports them.
TcpPeerState QueryTcpPeerState(const std::string& local_addr, int local_port,
                               const std::string& remote_addr, int remote_port);

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_TCP_PEER_STATE_H_
