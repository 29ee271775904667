#include "router/tcp_peer_state.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace dsv3::router {
namespace {

// Text address -> the 16 bytes inet_diag wants (IPv4 in the first 4); false if unparsable.
bool ParseAddress(const std::string& text, int family, uint32_t out[4]) {
  std::memset(out, 0, 16);
  return inet_pton(family, text.c_str(), out) == 1;
}

}  // namespace

TcpPeerState QueryTcpPeerState(const std::string& local_addr, int local_port,
                               const std::string& remote_addr, int remote_port) {
  const int family = local_addr.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  message.header.nlmsg_len = sizeof(message);
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST;  // one exact socket, no dump
  message.request.sdiag_family = static_cast<uint8_t>(family);
  message.request.sdiag_protocol = IPPROTO_TCP;
  message.request.idiag_states = ~0U;
  inet_diag_sockid& id = message.request.id;
  id.idiag_sport = htons(static_cast<uint16_t>(local_port));
  id.idiag_dport = htons(static_cast<uint16_t>(remote_port));
  id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  if (!ParseAddress(local_addr, family, id.idiag_src) ||
      !ParseAddress(remote_addr, family, id.idiag_dst)) {
    return TcpPeerState::kUnknown;
  }

  const int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return TcpPeerState::kUnknown;
  TcpPeerState state = TcpPeerState::kUnknown;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  timeval timeout{0, 200000};  // the kernel answers at once; never hang a handler on it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  if (sendto(fd, &message, sizeof(message), 0, reinterpret_cast<sockaddr*>(&kernel),
             sizeof(kernel)) == static_cast<ssize_t>(sizeof(message))) {
    alignas(nlmsghdr) char buffer[8192];
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n >= static_cast<ssize_t>(sizeof(nlmsghdr))) {
      const auto* reply = reinterpret_cast<const nlmsghdr*>(buffer);
      if (NLMSG_OK(reply, static_cast<unsigned>(n))) {
        if (reply->nlmsg_type == NLMSG_ERROR) {
          const auto* error = static_cast<const nlmsgerr*>(NLMSG_DATA(reply));
          // No such socket: it is gone (closed and reaped).
          if (error->error == -ENOENT) state = TcpPeerState::kClosed;
        } else if (reply->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
                   reply->nlmsg_len >= NLMSG_LENGTH(sizeof(inet_diag_msg))) {
          const auto* diag = static_cast<const inet_diag_msg*>(NLMSG_DATA(reply));
          switch (diag->idiag_state) {
            case TCP_CLOSE_WAIT:
            case TCP_LAST_ACK:
            case TCP_CLOSE:
            case TCP_CLOSING:
              state = TcpPeerState::kClosed;
              break;
            default:
              state = TcpPeerState::kOpen;
          }
        }
      }
    }
  }
  close(fd);
  return state;
}

}  // namespace dsv3::router
