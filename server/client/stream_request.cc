// Answers a local connection waiting for its channel.
#include "server/client/stream_request.h"

#include <sys/socket.h>

#include <cerrno>

namespace alknet {
namespace {

bool WriteAll(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // a fresh socket takes 22 bytes: EAGAIN here means trouble
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

bool AnswerSuccess(StreamRequest& request) {
  if (request.kind != StreamRequest::Kind::kSocks) return true;
  sockaddr_storage local{};
  socklen_t len = sizeof(local);
  const sockaddr* bound = nullptr;
  if (getsockname(request.fd.get(), reinterpret_cast<sockaddr*>(&local), &len) == 0) {
    bound = reinterpret_cast<const sockaddr*>(&local);
  }
  return WriteAll(request.fd.get(), socks5::BuildReply(socks5::Reply::kSucceeded, bound));
}

void AnswerFailure(StreamRequest& request, socks5::Reply reply) {
  if (request.forward) request.forward->last_error = std::string(socks5::ReplyName(reply));
  if (request.kind == StreamRequest::Kind::kSocks && request.fd.valid()) {
    (void)WriteAll(request.fd.get(), socks5::BuildReply(reply));
  }
  request.fd.reset();
}

}  // namespace alknet
