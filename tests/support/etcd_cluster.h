// A real etcd cluster (Debian's etcd-server) of one or more members on loopback, for the fleet
// tests: start, kill and restart members, find the leader, compact.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/agent_process.h"

namespace alknet::testing {

class EtcdCluster {
 public:
  // Starts `members` members with data under `dir` and waits until the cluster has a leader.
  // available() is false (with the reason) when etcd is not installed or did not come up.
  EtcdCluster(const TempDir& dir, int members);
  ~EtcdCluster();

  bool available() const { return why_.empty(); }
  const std::string& why() const { return why_; }
  int size() const { return static_cast<int>(members_.size()); }
  // "127.0.0.1:p1,127.0.0.1:p2,...": every member's client address.
  std::string Endpoints() const;
  uint16_t client_port(int member) const { return members_[member].client_port; }

  void Kill(int member);                  // SIGKILL
  bool Restart(int member);               // same data and ports; waits until it answers
  bool RestartAll();                      // every member at once (quorum), then waits
  void Pause(int member);                 // SIGSTOP
  void Resume(int member);                // SIGCONT
  // The member that leads now (asked through etcdctl), nullopt if none answers.
  std::optional<int> Leader();
  // Runs `etcdctl <args>` against the running members; its stdout, nullopt on failure.
  std::optional<std::string> Ctl(const std::vector<std::string>& args);
  // Compacts the key space at the current revision; that revision.
  std::optional<long long> CompactAll();

 private:
  struct Member {
    std::string name;
    std::string data_dir;
    uint16_t client_port = 0;
    uint16_t peer_port = 0;
    std::unique_ptr<BackgroundProcess> process;
  };
  bool StartMember(int member, bool new_cluster);
  bool WaitHealthy(int member);

  std::string log_dir_;
  std::string initial_cluster_;
  std::vector<Member> members_;
  std::string why_;
};

}  // namespace alknet::testing
