// The channel relays of one SSH session, server or client side: owns them, keeps the list of
// relays that asked to be pumped, and runs the pump pass after each poll of the session.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "server/loop/event_loop.h"
#include "server/ssh/channel_relay.h"

namespace alknet {

class RelaySet {
 public:
  explicit RelaySet(EventLoop& loop) : loop_(loop) {}

  // Starts the relay (channel callbacks, socket watch) and owns it, with a first pump queued
  // (data may already wait on either side). False if it could not start; it is then deleted.
  bool Start(std::unique_ptr<ChannelRelay> relay);
  // From RelayOwner::NeedsAttention: pump it in the next pass.
  void RequestPump(ChannelRelay* relay) { attention_.push_back(relay); }
  // Pumps the relays that asked, for a few rounds while `active()` holds. Each relay that
  // finished goes to `finished`, then is deleted after the current event.
  void Pump(absl::FunctionRef<bool()> active, absl::FunctionRef<void(const ChannelRelay&)> finished);
  // Closes every relay, each shown to `closing` first (session teardown).
  void CloseAll(absl::FunctionRef<void(const ChannelRelay&)> closing);

  size_t size() const { return relays_.size(); }
  template <typename Visit>
  void ForEach(Visit visit) const {
    for (const auto& [raw, relay] : relays_) visit(*relay);
  }

 private:
  EventLoop& loop_;
  absl::flat_hash_map<ChannelRelay*, std::unique_ptr<ChannelRelay>> relays_;
  std::vector<ChannelRelay*> attention_;
  // The pass being pumped; swapped with attention_ and cleared, so both keep their capacity
  // (no allocation per pass once a session has seen its most relays at once).
  std::vector<ChannelRelay*> batch_;
};

}  // namespace alknet
