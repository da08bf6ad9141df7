// The admin API over SSH: libssh client session + direct-tcpip channel to alknet-admin:0,
// relayed to a socketpair by one thread (the only thread touching the session after Open).
#include "admin-cli/ssh_bridge.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/common/strings.h"

namespace alknet::admin_cli {
namespace {

bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

std::string ServerFingerprint(ssh_session session) {
  ssh_key key = nullptr;
  if (ssh_get_server_publickey(session, &key) != SSH_OK) return "";
  unsigned char* hash = nullptr;
  size_t length = 0;
  std::string result;
  if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &length) == SSH_OK) {
    char* text = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, length);
    if (text != nullptr) {
      result = text;
      ssh_string_free_char(text);
    }
    ssh_clean_pubkey_hash(&hash);
  }
  ssh_key_free(key);
  return result;
}

}  // namespace

absl::StatusOr<SshTarget> ParseSshUrl(std::string_view url) {
  constexpr std::string_view kScheme = "ssh://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return absl::InvalidArgumentError(absl::StrCat("--via: '", Sv(url), "' is not ssh://[user@]host[:port]"));
  }
  std::string_view rest = url.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  SshTarget target;
  if (size_t at = rest.rfind('@'); at != std::string_view::npos) {
    target.user = std::string(rest.substr(0, at));
    rest = rest.substr(at + 1);
  }
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return absl::InvalidArgumentError("--via: missing ']'");
    target.host = std::string(rest.substr(1, close - 1));
    rest = rest.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return absl::InvalidArgumentError("--via: expected ':port' after ']'");
      port = rest.substr(1);
    }
  } else if (size_t colon = rest.find(':'); colon != std::string_view::npos) {
    target.host = std::string(rest.substr(0, colon));
    port = rest.substr(colon + 1);
  } else {
    target.host = std::string(rest);
  }
  if (target.host.empty()) return absl::InvalidArgumentError("--via: missing host");
  if (!port.empty()) {
    int number = 0;
    if (!absl::SimpleAtoi(Sv(port), &number) || number < 1 || number > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("--via: invalid port '", Sv(port), "'"));
    }
    target.port = number;
  }
  return target;
}

absl::StatusOr<std::unique_ptr<SshBridge>> SshBridge::Open(const SshTarget& target,
                                                           const std::string& identity,
                                                           const HostKeyCheck& check) {
  std::unique_ptr<SshBridge> bridge(new SshBridge());
  ssh_session session = ssh_new();
  if (session == nullptr) return absl::ResourceExhaustedError("ssh_new failed");
  bridge->session_ = session;
  std::string user = target.user;
  if (user.empty()) {
    const char* env = std::getenv("USER");
    user = env != nullptr && *env != '\0' ? env : "alknet";
  }
  int port = target.port;
  long timeout_s = 15;
  int no = 0;
  ssh_options_set(session, SSH_OPTIONS_PROCESS_CONFIG, &no);
  ssh_options_set(session, SSH_OPTIONS_HOST, target.host.c_str());
  ssh_options_set(session, SSH_OPTIONS_PORT, &port);
  ssh_options_set(session, SSH_OPTIONS_USER, user.c_str());
  ssh_options_set(session, SSH_OPTIONS_TIMEOUT, &timeout_s);
  if (!check.known_hosts.empty()) {
    ssh_options_set(session, SSH_OPTIONS_KNOWNHOSTS, check.known_hosts.c_str());
    ssh_options_set(session, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null");
  }
  std::string where = absl::StrCat(target.host, ":", target.port);
  if (ssh_connect(session) != SSH_OK) {
    return absl::UnavailableError(absl::StrCat("ssh ", where, ": ", ssh_get_error(session)));
  }
  if (!check.insecure_accept_any) {
    if (!check.fingerprint.empty()) {
      std::string actual = ServerFingerprint(session);
      if (actual != check.fingerprint) {
        return absl::UnauthenticatedError(absl::StrCat("ssh ", where, ": host key ", actual,
                                                       " does not match --host-key-fingerprint ",
                                                       check.fingerprint));
      }
    } else {
      enum ssh_known_hosts_e known = ssh_session_is_known_server(session);
      if (known != SSH_KNOWN_HOSTS_OK) {
        std::string_view why = known == SSH_KNOWN_HOSTS_CHANGED ? "has CHANGED"
                               : known == SSH_KNOWN_HOSTS_OTHER ? "is of another type than the known one"
                                                                : "is not in the known hosts file";
        return absl::UnauthenticatedError(absl::StrCat(
            "ssh ", where, ": host key ", ServerFingerprint(session), " ", Sv(why),
            " (use --known-hosts FILE or --host-key-fingerprint SHA256:...)"));
      }
    }
  }
  ssh_key key = nullptr;
  if (ssh_pki_import_privkey_file(identity.c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK) {
    return absl::InvalidArgumentError(absl::StrCat("--identity: cannot read private key ", identity));
  }
  int rc = ssh_userauth_publickey(session, nullptr, key);
  ssh_key_free(key);
  if (rc != SSH_AUTH_SUCCESS) {
    return absl::UnauthenticatedError(absl::StrCat("ssh ", where, ": key ", identity, " was not accepted"));
  }
  ssh_channel channel = ssh_channel_new(session);
  if (channel == nullptr) return absl::ResourceExhaustedError("ssh_channel_new failed");
  bridge->channel_ = channel;
  if (ssh_channel_open_forward(channel, "alknet-admin", 0, "127.0.0.1", 0) != SSH_OK) {
    return absl::PermissionDeniedError(absl::StrCat(
        "ssh ", where, ": the agent refused the admin channel (the key needs the admin role): ",
        ssh_get_error(session)));
  }
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return absl::ResourceExhaustedError("socketpair failed");
  }
  bridge->grpc_fd_ = fds[0];
  bridge->bridge_fd_ = fds[1];
  SshBridge* raw = bridge.get();
  bridge->thread_ = std::thread([raw] { raw->Run(); });
  return bridge;
}

int SshBridge::TakeGrpcFd() {
  int fd = grpc_fd_;
  grpc_fd_ = -1;
  return fd;
}

void SshBridge::Run() {
  char buffer[32768];
  int ssh_fd = ssh_get_fd(session_);
  while (!stop_.load()) {
    pollfd fds[2] = {{bridge_fd_, POLLIN, 0}, {ssh_fd, POLLIN, 0}};
    ::poll(fds, 2, 20);
    if (fds[0].revents != 0) {
      ssize_t n = ::read(bridge_fd_, buffer, sizeof(buffer));
      if (n <= 0) {
        ssh_channel_send_eof(channel_);
        break;
      }
      if (ssh_channel_write(channel_, buffer, static_cast<uint32_t>(n)) != n) break;
    }
    int n = 0;
    while ((n = ssh_channel_read_nonblocking(channel_, buffer, sizeof(buffer), 0)) > 0) {
      if (!WriteAll(bridge_fd_, buffer, static_cast<size_t>(n))) break;
    }
    if (n == SSH_ERROR || ssh_channel_is_eof(channel_) || !ssh_channel_is_open(channel_)) break;
  }
  ::shutdown(bridge_fd_, SHUT_RDWR);
}

SshBridge::~SshBridge() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (bridge_fd_ >= 0) ::close(bridge_fd_);
  if (grpc_fd_ >= 0) ::close(grpc_fd_);
  if (channel_ != nullptr) {
    ssh_channel_close(channel_);
    ssh_channel_free(channel_);
  }
  if (session_ != nullptr) {
    ssh_disconnect(session_);
    ssh_free(session_);
  }
}

}  // namespace alknet::admin_cli
