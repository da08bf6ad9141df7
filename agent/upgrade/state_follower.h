// After a binary upgrade, the old process follows the state file the new one writes: API keys
// that disappear from it (alknet-admin keys rm) are reported so their old sessions end too.
#pragma once

#include <sys/stat.h>

#include <set>
#include <string>
#include <vector>

#include "server/common/log.h"

namespace alknet::agent {

class StateFollower {
 public:
  // Reads the state file's API keys now: the baseline.
  StateFollower(std::string path, Logger& logger);
  // Cheap when the file did not change (one stat). Fingerprints of the API keys that were in the
  // file at the last look and are not any more. An unreadable file changes nothing.
  std::vector<std::string> PollRemoved();

 private:
  bool Changed();
  std::set<std::string> ReadFingerprints(bool* ok);

  std::string path_;
  Logger& logger_;
  struct stat last_{};
  std::set<std::string> keys_;
};

}  // namespace alknet::agent
