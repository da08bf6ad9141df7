// alknet-admin's command table (the one source of its options, --help, completion and man page).
#include "admin-cli/command_table.h"

namespace alknet::admin_cli {

const cli::Program& AdminProgram() {
  static const cli::Program* const program = new cli::Program{
      .name = "alknet-admin",
      .summary = "command-line client of the alknet-agent admin API",
      .synopsis = "[connection options] [--json] COMMAND ...",
      .description =
          "alknet-admin talks to a running alknet-agent over its admin API (gRPC): keys, limits, "
          "sessions and the client role's forwards. It prints tables, or JSON with --json.\n\n"
          "Connection (default: --socket $ALKNET_ADMIN_SOCKET, else admin.socket of $ALKNET_CONFIG, "
          "else ./var/admin.sock if it exists, else admin.socket of /etc/alknet/agent.yaml if that "
          "exists): the agent's Unix socket; a TCP listener with mutual TLS "
          "(--server); or through SSH with an admin-role key (--via).",
      .commands =
          {
              {.words = {"status"},
               .help = "version, uptime, listeners, readiness",
               .options = {{"--all", "", "also list every replica of the fleet (state.store etcd)"}}},
              {.words = {"agent", "upgrade"},
               .help = "start the binary now on disk with the agent's listening sockets (as SIGUSR2); "
                       "prints the new pid once it serves"},
              {.words = {"keys", "add"},
               .args = "FILE|-",
               .help = "add one public key (from a file or standard input)",
               .options = {{"--comment", "C", "comment stored with the key"},
                           {"--from", "PATTERN[,...]", "source address patterns the key may log in from"},
                           {"--permit-open", "HOST:PORT", "a destination the key may open; repeatable"},
                           {"--permit-listen", "[HOST:]PORT", "a remote forward the key may request; repeatable"},
                           {"--expiry", "YYYYMMDD[HHMM[SS]][Z]", "the key stops working at this time"},
                           {"--role", "tunnel|admin", "tunnel (default) or admin (may reach the admin API)"},
                           {"--cert-authority", "", "the key is a user CA: certificates it signed log in"},
                           {"--principals", "A,B", "with --cert-authority: the principals accepted"}}},
              {.words = {"keys", "list"}, .help = "every key (API keys, then authorized_keys files)"},
              {.words = {"keys", "rm"},
               .args = "FINGERPRINT",
               .help = "remove an API key",
               .options = {{"--kill", "", "also disconnect its sessions"}}},
              {.words = {"keys", "import"},
               .args = "FILE|-",
               .help = "add an authorized_keys file, all or nothing",
               .options = {{"--role", "tunnel|admin", "the role of every imported key"},
                           {"--skip-existing", "", "skip keys already present instead of failing"}}},
              {.words = {"keys", "export"},
               .help = "API keys as authorized_keys text",
               .options = {{"--include-files", "", "also the keys of the authorized_keys files"}}},
              {.words = {"policy", "get"}, .help = "the limits and forwarding policy in force"},
              {.words = {"policy", "set"},
               .args = "KEY=VALUE...",
               .help = "change limits and rate limits, e.g. policy set max_sessions=500 bandwidth_per_key=10MB; "
                       "forwarding=FILE replaces the forwarding section with FILE's (YAML, - for stdin); "
                       "forwarding.default_action=deny"},
              {.words = {"policy", "test"},
               .help = "which forwarding rule decides a key's channel to HOST:PORT, and why",
               .options = {{"--key", "FINGERPRINT", "the key (SHA256:...) opening the channel"},
                           {"--to", "HOST:PORT", "the destination (-R: the bind address and port)"},
                           {"--direction", "local|remote", "-L/-D/-W (default) or -R"},
                           {"--transport", "tcp|tls|quic", "the session's transport (default tcp)"}}},
              {.words = {"policy", "check"},
               .args = "FILE",
               .help = "validate a config file's limits without applying them"},
              {.words = {"penalties", "list"}, .help = "penalised sources (netblocks) and time left"},
              {.words = {"penalties", "clear"},
               .args = "[SOURCE]",
               .help = "lift the penalties of an address or CIDR at once (all without SOURCE)"},
              {.words = {"sessions", "list"},
               .help = "live sessions (never their destinations)",
               .options = {{"--all", "", "every replica's (state.store etcd), with a REPLICA column"}}},
              {.words = {"sessions", "kill"},
               .args = "[ID]",
               .help = "disconnect a session by id, or every session of a key with --key",
               .options = {{"--key", "FINGERPRINT", "disconnect every session of this key"},
                           {"--reason", "TEXT", "the reason logged and sent to the client"},
                           {"--replica", "ID|*", "on that replica of the fleet (* with --key: on all)"}}},
              {.words = {"forwards", "list"}, .help = "the client role's forwards and their state"},
              {.words = {"forwards", "add"},
               .help = "add a forward to an upstream of the client role",
               .options = {{"--kind", "dynamic|local|remote", "SOCKS5 listener, -L or -R"},
                           {"--upstream", "NAME", "the upstream that carries it"},
                           {"--listen", "HOST:PORT", "where it listens"},
                           {"--target", "HOST:PORT", "local and remote: where connections go"},
                           {"--id", "ID", "its id (default: generated)"},
                           {"--replica", "ID|*", "the fleet replica that runs it (default: this one; * all)"}}},
              {.words = {"forwards", "rm"}, .args = "ID", .help = "remove a forward added over the API"},
              {.words = {"completion"},
               .args = "bash|zsh",
               .help = "print the shell completion script (cmake --install installs both)",
               .choices = {"bash", "zsh"}},
              {.words = {"manpage"}, .help = "print the alknet-admin(1) manual page (roff)"},
          },
      .global_options =
          {
              {.title = "Connection",
               .options = {{"--socket", "PATH", "the agent's Unix socket (<state_dir>/admin.sock)"},
                           {"--server", "HOST:PORT", "the agent's TCP admin listener, mutual TLS"},
                           {"--tls-cert", "FILE", "with --server: the client certificate"},
                           {"--tls-key", "FILE", "with --server: its private key"},
                           {"--tls-ca", "FILE", "with --server: the CA that signed the agent's certificate"},
                           {"--tls-server-name", "NAME", "with --server: the name to check in its certificate"},
                           {"--via", "ssh://[USER@]HOST[:PORT]", "through SSH, with an admin-role key"},
                           {"--identity", "KEY", "with --via: the private key"},
                           {"--known-hosts", "FILE", "with --via: check the host key against this file"},
                           {"--host-key-fingerprint", "SHA256:...", "with --via: the expected host key"},
                           {"--insecure-accept-any-host-key", "", "with --via: do not check the host key"},
                           {"--timeout", "SECONDS", "per call (default 30)"}}},
              {.title = "Output",
               .options = {{"--json", "", "print JSON instead of tables"},
                           {"--help", "", "show help (of a command, after it) and exit (-h)"}}},
          },
      .sections =
          {
              {"Environment",
               "ALKNET_ADMIN_SOCKET: the default Unix socket. ALKNET_CONFIG: a config file whose "
               "admin.socket is the default when ALKNET_ADMIN_SOCKET is not set."},
              {"Exit status",
               "0: done. 1: the agent refused or could not be reached (the gRPC status name is on "
               "standard error). 2: a usage error."},
              {"See also", "alknet-agent(1)"},
          },
  };
  return *program;
}

}  // namespace alknet::admin_cli
