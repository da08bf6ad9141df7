// alknet-bench-scale-client: holds many authenticated SSH sessions and direct-tcpip channels
// open from one process, for bench/scale. Benchmark tool only: it does not verify host keys.
//
// Phase 1 connects --sessions sessions (key exchange + publickey auth), prints
//   "NEGOTIATED kex=K cipher=C" (what the first session's key exchange chose; C is
//   server->client) and "SESSIONS sessions=N failed=F ms=T". With --gate 1 it first prints
//   "STARTED" and waits for a line on stdin before connecting, so that a baseline can be
//   measured while this process (and the libraries it shares with the servers) already exists.
// and waits for a line on stdin. Phase 2 opens --channels direct-tcpip channels to
// --target-host:--target-port round-robin across the sessions, writes 16 bytes on each, reads
// them back, prints
//   "READY sessions=N channels=M echo_ok=K failed=F open_ms=T echo_ms=U"
// and holds everything until stdin reaches EOF. Errors go to stderr.

#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <libssh/libssh.h>

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 22;
  std::string user = "root";
  std::string key;
  int sessions = 1;
  int channels = 0;
  std::string target_host = "127.0.0.1";
  int target_port = 0;
  std::string ciphers = "chacha20-poly1305@openssh.com";
  std::string kex = "curve25519-sha256";
  int timeout_ms = 20000;
  bool gate = false;
};

constexpr int kEchoBytes = 16;

[[noreturn]] void Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --port P --key FILE [--host H] [--user U] [--sessions N]\n"
               "          [--channels M --target-port T [--target-host H]]\n"
               "          [--ciphers LIST] [--kex LIST] [--timeout-ms MS] [--gate 1]\n",
               argv0);
  std::exit(2);
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (i + 1 >= argc) Usage(argv[0]);
    const char* value = argv[++i];
    if (flag == "--host") o.host = value;
    else if (flag == "--port") o.port = std::atoi(value);
    else if (flag == "--user") o.user = value;
    else if (flag == "--key") o.key = value;
    else if (flag == "--sessions") o.sessions = std::atoi(value);
    else if (flag == "--channels") o.channels = std::atoi(value);
    else if (flag == "--target-host") o.target_host = value;
    else if (flag == "--target-port") o.target_port = std::atoi(value);
    else if (flag == "--ciphers") o.ciphers = value;
    else if (flag == "--kex") o.kex = value;
    else if (flag == "--timeout-ms") o.timeout_ms = std::atoi(value);
    else if (flag == "--gate") o.gate = std::atoi(value) != 0;
    else Usage(argv[0]);
  }
  if (o.key.empty() || o.port <= 0 || o.sessions <= 0 || o.channels < 0 ||
      (o.channels > 0 && o.target_port <= 0)) {
    Usage(argv[0]);
  }
  return o;
}

double MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

void RaiseFdLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// Opens and authenticates one session; nullptr (with a message on stderr) on failure.
ssh_session Connect(const Options& o, ssh_key key, int index) {
  ssh_session session = ssh_new();
  if (session == nullptr) return nullptr;
  bool no = false;
  long timeout_s = (o.timeout_ms + 999) / 1000;
  unsigned int port = static_cast<unsigned int>(o.port);
  ssh_options_set(session, SSH_OPTIONS_PROCESS_CONFIG, &no);
  ssh_options_set(session, SSH_OPTIONS_HOST, o.host.c_str());
  ssh_options_set(session, SSH_OPTIONS_PORT, &port);
  ssh_options_set(session, SSH_OPTIONS_USER, o.user.c_str());
  ssh_options_set(session, SSH_OPTIONS_TIMEOUT, &timeout_s);
  ssh_options_set(session, SSH_OPTIONS_KNOWNHOSTS, "/dev/null");
  ssh_options_set(session, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null");
  ssh_options_set(session, SSH_OPTIONS_CIPHERS_C_S, o.ciphers.c_str());
  ssh_options_set(session, SSH_OPTIONS_CIPHERS_S_C, o.ciphers.c_str());
  ssh_options_set(session, SSH_OPTIONS_KEY_EXCHANGE, o.kex.c_str());
  ssh_options_set(session, SSH_OPTIONS_HOSTKEYS, "ssh-ed25519");
  if (ssh_connect(session) != SSH_OK) {
    std::fprintf(stderr, "session %d: connect: %s\n", index, ssh_get_error(session));
    ssh_free(session);
    return nullptr;
  }
  int rc = ssh_userauth_publickey(session, nullptr, key);
  if (rc != SSH_AUTH_SUCCESS) {
    std::fprintf(stderr, "session %d: publickey auth: rc=%d %s\n", index, rc,
                 ssh_get_error(session));
    ssh_disconnect(session);
    ssh_free(session);
    return nullptr;
  }
  return session;
}

// Blocks until a line or EOF arrives on stdin; true for a line.
bool WaitForLine() {
  std::string line;
  return static_cast<bool>(std::getline(std::cin, line));
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = Parse(argc, argv);
  RaiseFdLimit();
  ssh_init();

  ssh_key key = nullptr;
  if (ssh_pki_import_privkey_file(o.key.c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK) {
    std::fprintf(stderr, "cannot read private key %s\n", o.key.c_str());
    return 1;
  }

  if (o.gate) {
    std::printf("STARTED\n");
    std::fflush(stdout);
    if (!WaitForLine()) return 0;
  }

  // Phase 1: sessions.
  std::vector<ssh_session> sessions;
  sessions.reserve(static_cast<size_t>(o.sessions));
  int session_failures = 0;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < o.sessions; ++i) {
    ssh_session session = Connect(o, key, i);
    if (session == nullptr) {
      ++session_failures;
      continue;
    }
    if (sessions.empty()) {
      const char* kex = ssh_get_kex_algo(session);
      const char* cipher = ssh_get_cipher_in(session);
      std::printf("NEGOTIATED kex=%s cipher=%s\n", kex != nullptr ? kex : "?",
                  cipher != nullptr ? cipher : "?");
    }
    sessions.push_back(session);
  }
  std::printf("SESSIONS sessions=%zu failed=%d ms=%.0f\n", sessions.size(), session_failures,
              MsSince(start));
  std::fflush(stdout);

  std::vector<ssh_channel> channels;
  int channel_failures = 0;
  int echo_ok = 0;
  double open_ms = 0;
  double echo_ms = 0;
  if (WaitForLine() && o.channels > 0 && !sessions.empty()) {
    // Phase 2: channels, round-robin over the sessions.
    channels.reserve(static_cast<size_t>(o.channels));
    std::vector<int> channel_index;
    start = std::chrono::steady_clock::now();
    for (int i = 0; i < o.channels; ++i) {
      ssh_session session = sessions[static_cast<size_t>(i) % sessions.size()];
      ssh_channel channel = ssh_channel_new(session);
      if (channel == nullptr) {
        std::fprintf(stderr, "channel %d: ssh_channel_new failed\n", i);
        ++channel_failures;
        continue;
      }
      int rc = ssh_channel_open_forward(channel, o.target_host.c_str(), o.target_port,
                                        "127.0.0.1", 40000 + (i % 20000));
      if (rc != SSH_OK) {
        if (channel_failures < 10) {
          std::fprintf(stderr, "channel %d: open_forward rc=%d: %s\n", i, rc,
                       ssh_get_error(session));
        }
        ++channel_failures;
        ssh_channel_free(channel);
        continue;
      }
      channels.push_back(channel);
      channel_index.push_back(i);
    }
    open_ms = MsSince(start);

    // Echo: write 16 distinct bytes on every channel first, then read each back.
    start = std::chrono::steady_clock::now();
    std::vector<std::string> payloads(channels.size());
    for (size_t c = 0; c < channels.size(); ++c) {
      char buf[kEchoBytes + 1];
      std::snprintf(buf, sizeof(buf), "alknet-%08u\n",
                    static_cast<unsigned>(channel_index[c]) % 100000000u);
      payloads[c].assign(buf, kEchoBytes);
      if (ssh_channel_write(channels[c], payloads[c].data(), kEchoBytes) != kEchoBytes) {
        std::fprintf(stderr, "channel %d: write failed\n", channel_index[c]);
      }
    }
    int mismatches = 0;
    for (size_t c = 0; c < channels.size(); ++c) {
      char got[kEchoBytes];
      int have = 0;
      while (have < kEchoBytes) {
        int n = ssh_channel_read_timeout(channels[c], got + have,
                                         static_cast<uint32_t>(kEchoBytes - have), 0,
                                         o.timeout_ms);
        if (n <= 0) break;
        have += n;
      }
      if (have == kEchoBytes && std::memcmp(got, payloads[c].data(), kEchoBytes) == 0) {
        ++echo_ok;
      } else if (mismatches++ < 10) {
        std::fprintf(stderr, "channel %d: echo got %d of %d bytes%s\n", channel_index[c], have,
                     kEchoBytes, have == kEchoBytes ? " (wrong content)" : "");
      }
    }
    echo_ms = MsSince(start);
    std::printf("READY sessions=%zu channels=%zu echo_ok=%d failed=%d open_ms=%.0f echo_ms=%.0f\n",
                sessions.size(), channels.size(), echo_ok, channel_failures, open_ms, echo_ms);
    std::fflush(stdout);
    while (WaitForLine()) {
    }
  }

  for (ssh_channel channel : channels) {
    ssh_channel_free(channel);
  }
  for (ssh_session session : sessions) {
    ssh_disconnect(session);
    ssh_free(session);
  }
  ssh_key_free(key);
  ssh_finalize();
  return 0;
}
