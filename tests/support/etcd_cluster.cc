// Starts and drives etcd members for the fleet tests (tests/support/etcd_cluster.h).
#include "tests/support/etcd_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/support/test_ports.h"

namespace alknet::testing {
namespace {

std::optional<std::string> RunCapture(const std::vector<std::string>& argv) {
  int out[2];
  if (::pipe(out) != 0) return std::nullopt;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0) ::dup2(null, 2);
    ::close(out[0]);
    ::close(out[1]);
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::setenv("ETCDCTL_API", "3", 1);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  std::string text;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(out[0], buffer, sizeof buffer)) > 0) text.append(buffer, static_cast<size_t>(n));
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return text;
}

// The number after `"name":` in etcdctl's JSON, if any.
std::optional<unsigned long long> JsonNumber(const std::string& json, std::string_view name,
                                             size_t from = 0) {
  std::string needle = absl::StrCat("\"", std::string(name), "\":");
  size_t at = json.find(needle, from);
  if (at == std::string::npos) return std::nullopt;
  at += needle.size();
  size_t end = json.find_first_not_of("0123456789", at);
  unsigned long long value = 0;
  if (!absl::SimpleAtoi(json.substr(at, end - at), &value)) return std::nullopt;
  return value;
}

}  // namespace

EtcdCluster::EtcdCluster(const TempDir& dir, int members) : log_dir_(dir.path()) {
  if (::access("/usr/bin/etcd", X_OK) != 0 || ::access("/usr/bin/etcdctl", X_OK) != 0) {
    why_ = "etcd or etcdctl is not installed (Debian: etcd-server, etcd-client)";
    return;
  }
  std::vector<std::string> peers;
  for (int i = 0; i < members; ++i) {
    Member member;
    member.name = absl::StrCat("m", i);
    member.data_dir = dir.File(absl::StrCat("etcd-", member.name));
    member.client_port = PickFreePort();
    member.peer_port = PickFreePort();
    peers.push_back(absl::StrCat(member.name, "=http://127.0.0.1:", member.peer_port));
    members_.push_back(std::move(member));
  }
  initial_cluster_ = absl::StrJoin(peers, ",");
  for (int i = 0; i < members; ++i) {
    if (!StartMember(i, true)) return;
  }
  for (int i = 0; i < members; ++i) {
    if (!WaitHealthy(i)) {
      why_ = absl::StrCat("etcd member ", i, " did not become healthy: ",
                          members_[i].process->Stderr().substr(0, 2000));
      return;
    }
  }
}

EtcdCluster::~EtcdCluster() {
  for (Member& member : members_) {
    if (member.process) member.process->Signal(SIGKILL);
  }
}

bool EtcdCluster::StartMember(int i, bool new_cluster) {
  Member& member = members_[i];
  std::string client = absl::StrCat("http://127.0.0.1:", member.client_port);
  std::string peer = absl::StrCat("http://127.0.0.1:", member.peer_port);
  member.process = std::make_unique<BackgroundProcess>(
      std::vector<std::string>{"/usr/bin/etcd", "--name", member.name, "--data-dir",
                               member.data_dir, "--listen-client-urls", client,
                               "--advertise-client-urls", client, "--listen-peer-urls", peer,
                               "--initial-advertise-peer-urls", peer, "--initial-cluster",
                               initial_cluster_, "--initial-cluster-state",
                               new_cluster ? "new" : "existing", "--initial-cluster-token",
                               "alknet-test", "--heartbeat-interval", "50", "--election-timeout",
                               "500"},
      log_dir_, member.name);
  if (!WaitForListener(*member.process, member.client_port, std::chrono::seconds(20))) {
    why_ = absl::StrCat("etcd member ", i, " did not listen: ",
                        member.process->Stderr().substr(0, 2000));
    return false;
  }
  return true;
}

bool EtcdCluster::WaitHealthy(int i) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < until) {
    if (RunCapture({"/usr/bin/etcdctl", "--endpoints",
                    absl::StrCat("127.0.0.1:", members_[i].client_port), "--command-timeout=1s",
                    "endpoint", "health"})) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::string EtcdCluster::Endpoints() const {
  std::vector<std::string> out;
  for (const Member& member : members_) out.push_back(absl::StrCat("127.0.0.1:", member.client_port));
  return absl::StrJoin(out, ",");
}

void EtcdCluster::Kill(int i) {
  members_[i].process->Signal(SIGKILL);
  members_[i].process->Wait(std::chrono::seconds(5));
}

bool EtcdCluster::Restart(int i) {
  members_[i].process.reset();
  return StartMember(i, false) && WaitHealthy(i);
}

bool EtcdCluster::RestartAll() {
  for (int i = 0; i < size(); ++i) {
    members_[i].process.reset();
    if (!StartMember(i, false)) return false;
  }
  for (int i = 0; i < size(); ++i) {
    if (!WaitHealthy(i)) return false;
  }
  return true;
}

void EtcdCluster::Pause(int i) { members_[i].process->Signal(SIGSTOP); }

void EtcdCluster::Resume(int i) { members_[i].process->Signal(SIGCONT); }

std::optional<std::string> EtcdCluster::Ctl(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"/usr/bin/etcdctl", "--endpoints", Endpoints(),
                                "--command-timeout=3s"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCapture(argv);
}

std::optional<int> EtcdCluster::Leader() {
  for (int i = 0; i < size(); ++i) {
    if (!members_[i].process || !members_[i].process->running()) continue;
    std::optional<std::string> json =
        RunCapture({"/usr/bin/etcdctl", "--endpoints",
                    absl::StrCat("127.0.0.1:", members_[i].client_port), "--command-timeout=1s",
                    "endpoint", "status", "-w", "json"});
    if (!json) continue;
    std::optional<unsigned long long> member_id = JsonNumber(*json, "member_id");
    std::optional<unsigned long long> leader = JsonNumber(*json, "leader");
    if (member_id && leader && *member_id == *leader) return i;
  }
  return std::nullopt;
}

std::optional<long long> EtcdCluster::CompactAll() {
  std::optional<std::string> json = Ctl({"endpoint", "status", "-w", "json"});
  if (!json) return std::nullopt;
  std::optional<unsigned long long> revision = JsonNumber(*json, "revision");
  if (!revision) return std::nullopt;
  if (!Ctl({"compact", absl::StrCat(*revision)})) return std::nullopt;
  return static_cast<long long>(*revision);
}

}  // namespace alknet::testing
