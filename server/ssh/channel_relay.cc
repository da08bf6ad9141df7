// Moves bytes between one SSH channel and one socket, both ways, with bounded buffers.
#include "server/ssh/channel_relay.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace alknet {
namespace {

// write(2) that retries EINTR; returns bytes written, 0 on EAGAIN, -1 on a real error.
ssize_t WriteSome(int fd, const void* data, size_t len) {
  for (;;) {
    ssize_t n = ::send(fd, data, len, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    if (errno == ENOTSOCK) {
      n = ::write(fd, data, len);
      if (n >= 0) return n;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    }
    return -1;
  }
}

}  // namespace

ChannelRelay::ChannelRelay(EventLoop& loop, RelayOwner& owner, RelayScratch& scratch,
                           ssh_channel channel, UniqueFd target, ByteCounters byte_counters)
    : loop_(loop), owner_(owner), scratch_(scratch), channel_(channel), target_(std::move(target)),
      byte_counters_(byte_counters) {}

void ChannelRelay::CountToTarget(size_t bytes) {
  counters_.to_target += bytes;
  if (tally_) tally_->to_target += bytes;
  ByteTally::Add(byte_counters_.upstream, bytes);
  ByteTally::Add(byte_counters_.key_upstream, bytes);
}

void ChannelRelay::CountFromTarget(size_t bytes) {
  counters_.from_target += bytes;
  if (tally_) tally_->from_target += bytes;
  ByteTally::Add(byte_counters_.downstream, bytes);
  ByteTally::Add(byte_counters_.key_downstream, bytes);
}

ChannelRelay::~ChannelRelay() { Close(); }

TokenBucket* ChannelRelay::upload_bucket() const {
  return throttle_key_ != nullptr && !throttle_key_->upload.unlimited() ? &throttle_key_->upload : nullptr;
}

TokenBucket* ChannelRelay::download_bucket() const {
  return throttle_key_ != nullptr && !throttle_key_->download.unlimited() ? &throttle_key_->download
                                                                          : nullptr;
}

size_t ChannelRelay::Allowance(TokenBucket* bucket, size_t want) {
  if (bucket == nullptr) return want;
  return static_cast<size_t>(
      bucket->Available(throttle_clock_->NowNanos(), static_cast<int64_t>(want)));
}

void ChannelRelay::Spend(TokenBucket* bucket, size_t bytes) {
  if (bucket != nullptr) bucket->Take(throttle_clock_->NowNanos(), static_cast<int64_t>(bytes));
}

void ChannelRelay::WaitForTokens(TokenBucket& bucket) {
  throttle_key_->bandwidth_waits.fetch_add(1, std::memory_order_relaxed);
  if (tokens_timer_ != 0) return;
  // Wake when a useful chunk (16 KiB, or the whole burst if smaller) is back, and at most every
  // 5 ms: a throttled relay wakes at most 200 times a second, reading what accrued meanwhile.
  constexpr double kUsefulChunk = 16 * 1024;
  constexpr int64_t kMinWaitNanos = 5 * 1000 * 1000;
  const int64_t wait = std::max<int64_t>(
      bucket.NanosUntil(throttle_clock_->NowNanos(), kUsefulChunk), kMinWaitNanos);
  // The callback captures one pointer, which std::function keeps inline, and the loop reuses
  // timer queue nodes: re-arming allocates nothing in steady state.
  tokens_timer_ = loop_.AddTimer(absl::Nanoseconds(wait), [this] {
    tokens_timer_ = 0;
    OnTokens();
  });
}

void ChannelRelay::OnTokens() {
  if (finished_) return;
  const bool upload = upload_throttled_;
  const bool download = download_throttled_;
  upload_throttled_ = false;
  download_throttled_ = false;
  if (upload) WriteToTarget();  // pulls what libssh holds (and reopens the window)
  if (download && !finished_) ReadFromTarget();
  Pump();
  owner_.AfterRelayIo();
}

bool ChannelRelay::Start() {
  ssh_callbacks_init(&callbacks_);
  callbacks_.userdata = this;
  callbacks_.channel_data_function = &ChannelRelay::OnChannelData;
  callbacks_.channel_eof_function = &ChannelRelay::OnChannelEof;
  callbacks_.channel_close_function = &ChannelRelay::OnChannelClose;
  if (ssh_set_channel_callbacks(channel_, &callbacks_) != SSH_OK) return false;
  interest_ = EPOLLIN;
  return loop_.Watch(target_.get(), interest_, this).ok();
}

int ChannelRelay::OnChannelData(ssh_session, ssh_channel, void* data, uint32_t len, int is_stderr,
                                void* self_ptr) {
  auto* self = static_cast<ChannelRelay*>(self_ptr);
  if (self->finished_ || self->failed_ || self->target_write_shut_ || is_stderr) return len;
  if (self->libssh_holds_data_ || !self->to_target_pending_.empty()) {
    // Keep order: older bytes wait in libssh's buffer, which freezes our window.
    self->libssh_holds_data_ = true;
    self->RequestPump();
    return 0;
  }
  TokenBucket* bucket = self->upload_bucket();
  const size_t allowed = self->Allowance(bucket, len);
  if (allowed == 0) {
    // No tokens: leave it all in libssh's buffer (our window stops growing) until OnTokens.
    self->libssh_holds_data_ = true;
    self->upload_throttled_ = true;
    self->WaitForTokens(*bucket);
    return 0;
  }
  ssize_t written = WriteSome(self->target_.get(), data, allowed);
  if (written < 0) {
    self->failed_ = true;
    self->RequestPump();
    return len;
  }
  self->Spend(bucket, static_cast<size_t>(written));
  self->CountToTarget(static_cast<size_t>(written));
  if (allowed < len && static_cast<size_t>(written) == allowed) {
    self->libssh_holds_data_ = true;
    self->upload_throttled_ = true;
    self->WaitForTokens(*bucket);
    return static_cast<int>(written);
  }
  if (static_cast<uint32_t>(written) < len) {
    self->libssh_holds_data_ = true;
    self->RequestPump();  // arm EPOLLOUT after the poll returns
  }
  return static_cast<int>(written);
}

void ChannelRelay::OnChannelEof(ssh_session, ssh_channel, void* self_ptr) {
  auto* self = static_cast<ChannelRelay*>(self_ptr);
  self->remote_eof_ = true;
  self->RequestPump();
}

void ChannelRelay::OnChannelClose(ssh_session, ssh_channel, void* self_ptr) {
  auto* self = static_cast<ChannelRelay*>(self_ptr);
  self->remote_closed_ = true;
  self->RequestPump();
}

void ChannelRelay::RequestPump() {
  if (attention_requested_ || finished_) return;
  attention_requested_ = true;
  owner_.NeedsAttention(this);
}

bool ChannelRelay::WantsPump() const {
  return !finished_ && (window_blocked_ || !to_channel_pending_.empty());
}

void ChannelRelay::OnFdEvents(uint32_t events) {
  if (finished_) return;
  if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) WriteToTarget();
  if (!finished_ && (events & (EPOLLIN | EPOLLERR | EPOLLHUP))) ReadFromTarget();
  Pump();
  owner_.AfterRelayIo();
}

void ChannelRelay::ReadFromTarget() {
  if (failed_ || target_eof_ || remote_closed_) return;
  if (!FlushToChannel()) return;
  uint32_t window = ssh_channel_window_size(channel_);
  if (window == 0) {
    window_blocked_ = true;
    return;
  }
  window_blocked_ = false;
  TokenBucket* bucket = download_bucket();
  size_t want = Allowance(bucket, std::min<size_t>(window, RelayScratch::kSize));
  if (want == 0) {
    download_throttled_ = true;  // stop reading the socket: TCP backpressure reaches the target
    WaitForTokens(*bucket);
    return;
  }
  ssize_t n;
  do {
    n = ::read(target_.get(), scratch_.data, want);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) failed_ = true;
    return;
  }
  if (n == 0) {
    target_eof_ = true;
    return;
  }
  Spend(bucket, static_cast<size_t>(n));
  int accepted = ssh_channel_write(channel_, scratch_.data, static_cast<uint32_t>(n));
  if (accepted < 0) {
    failed_ = true;
    return;
  }
  CountFromTarget(static_cast<size_t>(accepted));
  if (accepted < n) {
    // A rekey or a shrinking window cut the write short: keep the rest, stop reading until sent.
    to_channel_pending_.Assign(scratch_.data + accepted, static_cast<size_t>(n - accepted));
  }
}

bool ChannelRelay::FlushToChannel() {
  if (to_channel_pending_.empty()) return true;
  uint32_t window = ssh_channel_window_size(channel_);
  if (window == 0) {
    window_blocked_ = true;
    return false;
  }
  uint32_t len = static_cast<uint32_t>(std::min<size_t>(to_channel_pending_.size(), window));
  int accepted = ssh_channel_write(channel_, to_channel_pending_.data(), len);
  if (accepted < 0) {
    failed_ = true;
    return false;
  }
  CountFromTarget(static_cast<size_t>(accepted));
  to_channel_pending_.Consume(static_cast<size_t>(accepted));
  return to_channel_pending_.empty();
}

void ChannelRelay::WriteToTarget() {
  if (failed_ || target_write_shut_) return;
  while (!to_target_pending_.empty()) {
    ssize_t written = WriteSome(target_.get(), to_target_pending_.data(), to_target_pending_.size());
    if (written < 0) {
      failed_ = true;
      return;
    }
    if (written == 0) return;
    CountToTarget(static_cast<size_t>(written));
    to_target_pending_.Consume(static_cast<size_t>(written));
  }
  // Our buffer is empty: pull what we left in libssh's buffer (this also reopens our window).
  if (upload_throttled_) return;  // OnTokens pulls it
  TokenBucket* bucket = upload_bucket();
  while (libssh_holds_data_) {
    int available = ssh_channel_poll(channel_, 0);
    if (available <= 0) {  // 0 = empty, SSH_EOF / SSH_ERROR: nothing more to move
      libssh_holds_data_ = false;
      return;
    }
    size_t want = Allowance(bucket, std::min<size_t>(static_cast<size_t>(available), RelayScratch::kSize));
    if (want == 0) {
      upload_throttled_ = true;
      WaitForTokens(*bucket);
      return;
    }
    int n = ssh_channel_read_nonblocking(channel_, scratch_.data, static_cast<uint32_t>(want), 0);
    if (n <= 0) {
      libssh_holds_data_ = false;
      return;
    }
    Spend(bucket, static_cast<size_t>(n));
    ssize_t written = WriteSome(target_.get(), scratch_.data, static_cast<size_t>(n));
    if (written < 0) {
      failed_ = true;
      return;
    }
    CountToTarget(static_cast<size_t>(written));
    if (written < n) {
      to_target_pending_.Assign(scratch_.data + written, static_cast<size_t>(n - written));
      return;
    }
  }
}

void ChannelRelay::MaybeFinishHalfCloses() {
  if (target_eof_ && !channel_eof_sent_ && to_channel_pending_.empty()) {
    ssh_channel_send_eof(channel_);
    channel_eof_sent_ = true;
  }
  if (remote_eof_ && !target_write_shut_ && !libssh_holds_data_ && to_target_pending_.empty()) {
    ::shutdown(target_.get(), SHUT_WR);
    target_write_shut_ = true;
  }
}

void ChannelRelay::Pump() {
  attention_requested_ = false;
  if (finished_) return;
  if (!failed_) {
    if (!remote_closed_ && (!to_channel_pending_.empty() || window_blocked_)) {
      if (FlushToChannel() && ssh_channel_window_size(channel_) > 0) window_blocked_ = false;
    }
    // After the peer's CLOSE too: what it sent before is still owed to the target (libssh keeps
    // a closed channel's unread data readable until it is drained).
    if (libssh_holds_data_ && to_target_pending_.empty() && !upload_throttled_) WriteToTarget();
    if (!remote_closed_) MaybeFinishHalfCloses();
  }
  const bool target_owed_nothing = !libssh_holds_data_ && to_target_pending_.empty();
  if (failed_ || (remote_closed_ && target_owed_nothing) || (channel_eof_sent_ && target_write_shut_)) {
    Close();
    return;
  }
  UpdateInterest();
  if (WantsPump()) RequestPump();  // waiting on the window or a rekey: retry after the next poll
}

void ChannelRelay::UpdateInterest() {
  uint32_t wanted = 0;
  if (!target_eof_ && !remote_closed_ && !window_blocked_ && !download_throttled_ &&
      to_channel_pending_.empty()) {
    wanted |= EPOLLIN;
  }
  if (!target_write_shut_ &&
      ((libssh_holds_data_ && !upload_throttled_) || !to_target_pending_.empty())) {
    wanted |= EPOLLOUT;
  }
  if (wanted != interest_) {
    interest_ = wanted;
    (void)loop_.Modify(target_.get(), wanted);
  }
}

void ChannelRelay::Fail() { failed_ = true; }

void ChannelRelay::Close() {
  if (finished_) return;
  finished_ = true;
  if (tokens_timer_ != 0) {
    loop_.CancelTimer(tokens_timer_);
    tokens_timer_ = 0;
  }
  // However the relay ended (its own socket event, a pump, the session), the owner reaps it.
  owner_.NeedsAttention(this);
  if (target_.valid()) {
    loop_.Unwatch(target_.get());
    target_.reset();
  }
  if (channel_ != nullptr) {
    ssh_remove_channel_callbacks(channel_, &callbacks_);
    if (!channel_eof_sent_ && !remote_closed_ && !failed_) ssh_channel_send_eof(channel_);
    ssh_channel_close(channel_);
    ssh_channel_free(channel_);
    channel_ = nullptr;
  }
}

}  // namespace alknet
