// Moves bytes between one SSH channel and one socket, both ways, with bounded buffers:
// socket -> channel never exceeds the peer's SSH window; channel -> socket stops consuming
// (so libssh stops growing our window) while the socket is not writable.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <libssh/callbacks.h>
#include <libssh/libssh.h>

#include "server/common/pending_bytes.h"
#include "server/common/rate_limiter.h"
#include "server/common/unique_fd.h"
#include "server/loop/event_loop.h"
#include "server/metrics/engine_metrics.h"

namespace alknet {

// One scratch buffer per worker loop, shared by every relay on it: no per-packet allocation.
// Its size is also the most a relay reads from its socket and hands to one ssh_channel_write():
// libssh sends the first packet of a write at once and the rest in one send() after a poll(),
// so 256 KiB (8 packets of 32 KiB) costs about 2 send() and 2 poll() where 64 KiB cost 2 and 2.
struct RelayScratch {
  static constexpr size_t kSize = 256 * 1024;
  alignas(64) uint8_t data[kSize];
};

class ChannelRelay;

// The session that owns relays: told when a relay needs a Pump() after the current poll.
class RelayOwner {
 public:
  virtual ~RelayOwner() = default;
  virtual void NeedsAttention(ChannelRelay* relay) = 0;
  // A relay moved data by itself (socket event): let the owner service libssh state.
  virtual void AfterRelayIo() = 0;
};

struct RelayCounters {
  uint64_t to_target = 0;    // bytes written to the socket
  uint64_t from_target = 0;  // bytes written to the channel
};

class ChannelRelay final : public FdHandler {
 public:
  ChannelRelay(EventLoop& loop, RelayOwner& owner, RelayScratch& scratch, ssh_channel channel,
               UniqueFd target, ByteCounters byte_counters = {});
  ~ChannelRelay() override;

  // Installs channel callbacks and watches the socket.
  bool Start();

  // Runs outside libssh callbacks: applies EOF/close seen in callbacks, retries writes that a
  // rekey or a full window cut short, re-arms reading when the window reopened.
  void Pump();

  // True while the relay waits for something only a later Pump() can notice.
  bool WantsPump() const;

  // Closes socket and channel (no more callbacks into this object). Idempotent.
  void Close();
  bool finished() const { return finished_; }
  const RelayCounters& counters() const { return counters_; }
  // Also adds every byte to `tally` (shared with whoever aggregates, e.g. a client forward).
  void set_tally(std::shared_ptr<RelayCounters> tally) { tally_ = std::move(tally); }
  // What the owner counts this channel as in metrics (direct-tcpip unless set).
  ChannelKind kind() const { return kind_; }
  void set_kind(ChannelKind kind) { kind_ = kind; }
  // rate_limits.bandwidth_per_key: both directions draw from the key's shared buckets. An
  // empty bucket stops the relay reading that side (the socket, or libssh's channel buffer,
  // so libssh stops growing the client's window) until a timer sees tokens again: backpressure,
  // never a dropped byte. Before Start().
  void set_throttle(std::shared_ptr<KeyLimits> key, const MonotonicClock* clock) {
    throttle_key_ = std::move(key);
    throttle_clock_ = clock;
  }

  void OnFdEvents(uint32_t events) override;

 private:
  static int OnChannelData(ssh_session, ssh_channel, void* data, uint32_t len, int is_stderr,
                           void* self);
  static void OnChannelEof(ssh_session, ssh_channel, void* self);
  static void OnChannelClose(ssh_session, ssh_channel, void* self);

  void ReadFromTarget();
  void WriteToTarget();
  bool FlushToChannel();  // true when nothing is left pending
  void MaybeFinishHalfCloses();
  void UpdateInterest();
  void Fail();
  void RequestPump();
  void CountToTarget(size_t bytes);
  void CountFromTarget(size_t bytes);
  // Bandwidth: bytes `bucket` allows now, at most `want` (`want` when unthrottled).
  size_t Allowance(TokenBucket* bucket, size_t want);
  void Spend(TokenBucket* bucket, size_t bytes);
  TokenBucket* upload_bucket() const;
  TokenBucket* download_bucket() const;
  // An empty bucket: wait (one timer per relay) until a useful amount is back.
  void WaitForTokens(TokenBucket& bucket);
  void OnTokens();

  EventLoop& loop_;
  RelayOwner& owner_;
  RelayScratch& scratch_;
  ssh_channel channel_;
  UniqueFd target_;
  ssh_channel_callbacks_struct callbacks_{};

  // Bytes already taken from libssh, not yet on the socket.
  PendingBytes to_target_pending_{RelayScratch::kSize};
  // Bytes read from the socket, not yet accepted by libssh.
  PendingBytes to_channel_pending_{RelayScratch::kSize};
  bool libssh_holds_data_ = false;  // we left data in libssh's channel buffer
  bool window_blocked_ = false;
  bool target_eof_ = false;         // socket said EOF; channel EOF sent once pending drains
  bool channel_eof_sent_ = false;
  bool remote_eof_ = false;         // peer sent channel EOF
  bool target_write_shut_ = false;
  bool remote_closed_ = false;
  bool failed_ = false;
  bool finished_ = false;
  bool attention_requested_ = false;
  uint32_t interest_ = 0;
  RelayCounters counters_;
  ByteCounters byte_counters_;
  ChannelKind kind_ = ChannelKind::kDirectTcpip;
  std::shared_ptr<RelayCounters> tally_;
  std::shared_ptr<KeyLimits> throttle_key_;
  const MonotonicClock* throttle_clock_ = nullptr;
  bool upload_throttled_ = false;    // libssh holds data we may not take yet
  bool download_throttled_ = false;  // the socket is not read until tokens are back
  EventLoop::TimerId tokens_timer_ = 0;

  friend class SshServerSession;
};

}  // namespace alknet
