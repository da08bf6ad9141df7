// The channel relays of one SSH session and their pump pass.
#include "server/ssh/relay_set.h"

#include <algorithm>

namespace alknet {

bool RelaySet::Start(std::unique_ptr<ChannelRelay> relay) {
  if (!relay->Start()) {
    relay->Close();
    loop_.DeleteLater(std::move(relay));
    return false;
  }
  ChannelRelay* raw = relay.get();
  relays_.emplace(raw, std::move(relay));
  attention_.push_back(raw);
  return true;
}

void RelaySet::Pump(absl::FunctionRef<bool()> active,
                    absl::FunctionRef<void(const ChannelRelay&)> finished) {
  // Relays re-queue themselves while they wait (window, rekey); a few rounds settle nested
  // requests raised while pumping.
  for (int round = 0; round < 4 && !attention_.empty() && active(); ++round) {
    batch_.clear();
    batch_.swap(attention_);  // attention_ takes batch_'s old capacity
    std::sort(batch_.begin(), batch_.end());
    batch_.erase(std::unique(batch_.begin(), batch_.end()), batch_.end());
    for (ChannelRelay* relay : batch_) {
      auto it = relays_.find(relay);
      if (it == relays_.end()) continue;
      relay->Pump();
      if (relay->finished()) {
        finished(*relay);
        loop_.DeleteLater(std::move(it->second));
        relays_.erase(it);
      }
    }
    if (round == 0 && !attention_.empty()) {
      // Waiting relays (window, rekey) are retried on the next poll, not spun on here.
      bool only_waiting = true;
      for (ChannelRelay* relay : attention_) only_waiting &= relay->WantsPump();
      if (only_waiting) break;
    }
  }
}

void RelaySet::CloseAll(absl::FunctionRef<void(const ChannelRelay&)> closing) {
  for (auto& [raw, relay] : relays_) {
    closing(*relay);
    relay->Close();
    loop_.DeleteLater(std::move(relay));
  }
  relays_.clear();
  attention_.clear();
  batch_.clear();
}

}  // namespace alknet
