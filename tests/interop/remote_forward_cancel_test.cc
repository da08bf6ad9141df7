// Security round, item 1: cancel-tcpip-forward while a forwarded-tcpip open of that forward is
// still unanswered. Stock ssh always answers opens, so a libssh client plays the client here.
#include <sys/socket.h>
#include <unistd.h>

#include <libssh/libssh.h>
#include <libssh/server.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace alknet::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A blocking libssh client session, authenticated with `key` (host key not checked: the agent's
// key is fresh per test).
class LibsshClient {
 public:
  LibsshClient(uint16_t port, const TestKey& key) {
    session_ = ssh_new();
    long timeout = 10;
    unsigned int port_option = port;
    ssh_options_set(session_, SSH_OPTIONS_HOST, "127.0.0.1");
    ssh_options_set(session_, SSH_OPTIONS_PORT, &port_option);
    ssh_options_set(session_, SSH_OPTIONS_USER, "tester");
    ssh_options_set(session_, SSH_OPTIONS_TIMEOUT, &timeout);
    if (ssh_connect(session_) != SSH_OK) {
      error_ = std::string("connect: ") + ssh_get_error(session_);
      return;
    }
    ssh_key private_key = nullptr;
    if (ssh_pki_import_privkey_file(key.private_path.c_str(), nullptr, nullptr, nullptr,
                                    &private_key) != SSH_OK) {
      error_ = "cannot read " + key.private_path;
      return;
    }
    int rc = ssh_userauth_publickey(session_, nullptr, private_key);
    ssh_key_free(private_key);
    if (rc != SSH_AUTH_SUCCESS) error_ = std::string("auth: ") + ssh_get_error(session_);
  }
  ~LibsshClient() {
    ssh_disconnect(session_);
    ssh_free(session_);
  }
  ssh_session session() const { return session_; }
  const std::string& error() const { return error_; }

  // Reads messages until the agent's forwarded-tcpip open arrives; left unanswered.
  ssh_message WaitForForwardedOpen() {
    for (int i = 0; i < 16; ++i) {
      ssh_message message = ssh_message_get(session_);
      if (message == nullptr) return nullptr;
      if (ssh_message_type(message) == SSH_REQUEST_CHANNEL_OPEN &&
          ssh_message_subtype(message) == SSH_CHANNEL_FORWARDED_TCPIP) {
        return message;
      }
      ssh_message_reply_default(message);
      ssh_message_free(message);
    }
    return nullptr;
  }

 private:
  ssh_session session_ = nullptr;
  std::string error_;
};

TEST(SecurityRound, Item1RemoteForwardCancelWithPendingOpenIsSafe) {
  TempDir dir;
  TestKey key = MakeKey(dir, "user_key");
  WriteFile(dir.File("authorized_keys"), key.public_line + "\n");
  AgentProcess agent(dir, {"--authorized-keys", dir.File("authorized_keys")});
  ASSERT_NE(agent.port(), 0);
  LibsshClient client(agent.port(), key);
  ASSERT_EQ(client.error(), "") << agent.Log();
  ssh_session session = client.session();

  // 1. A key allowed -R opens a forward.
  int bound = 0;
  ASSERT_EQ(ssh_channel_listen_forward(session, "127.0.0.1", 0, &bound), SSH_OK)
      << ssh_get_error(session) << agent.Log();
  ASSERT_GT(bound, 0);
  // 2. A connection arrives on the published port.
  int fd = ConnectTcp(static_cast<uint16_t>(bound));
  ASSERT_GE(fd, 0);
  // 3. The agent's forwarded-tcpip open reaches us and stays unanswered.
  ssh_message open = client.WaitForForwardedOpen();
  ASSERT_NE(open, nullptr) << ssh_get_error(session) << agent.Log();
  // 4. The cancel: the agent closes the listener while its open is still pending.
  ASSERT_EQ(ssh_channel_cancel_forward(session, "127.0.0.1", bound), SSH_OK)
      << ssh_get_error(session) << agent.Log();
  ASSERT_TRUE(agent.WaitForLog("remote forward cancelled")) << agent.Log();
  // 5. Any packet makes the agent poll its pending opens (before the fix: the freed listener,
  //    which the ASan build reports and aborts on). Then a round trip proves it still serves us.
  ASSERT_EQ(ssh_send_ignore(session, "any packet"), SSH_OK);
  int bound_again = 0;
  EXPECT_EQ(ssh_channel_listen_forward(session, "127.0.0.1", 0, &bound_again), SSH_OK)
      << ssh_get_error(session) << agent.Log();
  EXPECT_TRUE(agent.process().running()) << agent.Log();
  EXPECT_THAT(agent.Log(), Not(HasSubstr("AddressSanitizer")));

  // The pending open goes on to its end, as in sshd: answered now, it relays the connection
  // that was accepted before the cancel.
  ssh_channel channel = ssh_message_channel_request_open_reply_accept(open);
  ssh_message_free(open);
  ASSERT_NE(channel, nullptr) << ssh_get_error(session);
  ASSERT_EQ(send(fd, "ping", 4, MSG_NOSIGNAL), 4);
  char reply[8] = {};
  int got = ssh_channel_read_timeout(channel, reply, 4, 0, 10000);
  EXPECT_EQ(got, 4) << ssh_get_error(session) << agent.Log();
  EXPECT_EQ(std::string(reply, got > 0 ? static_cast<size_t>(got) : 0), "ping");
  // The cancelled port no longer accepts; the agent is still alive.
  close(fd);
  EXPECT_LT(ConnectTcp(static_cast<uint16_t>(bound)), 0);
  ssh_channel_close(channel);
  ssh_channel_free(channel);
  EXPECT_TRUE(agent.process().running()) << agent.Log();
}

}  // namespace
}  // namespace alknet::testing
