// Per-source penalties (OpenSSH 9.8 PerSourcePenalties): failed auth, leaving without
// authenticating, login grace exceeded and TLS probes add seconds to the source's netblock;
// a netblock whose penalty reached `min` is refused at accept until it has run down.
// Thread-safe (one mutex; the accept-time check is one hash lookup, none while empty).
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/netblock.h"

namespace alknet {

enum class PenaltyEvent { kAuthFail = 0, kNoAuth, kGraceExceeded, kProbe };
std::string_view PenaltyEventName(PenaltyEvent event);  // "authfail", "noauth", ...

// What happens when the table is full and a new netblock earns a penalty.
//  permissive: the new netblock is not recorded (it stays admitted); entries already in the
//              table keep their penalties (sshd's default).
//  deny-all:   every connection not exempt is refused until an entry expires.
enum class PenaltyOverflow { kPermissive, kDenyAll };

struct SourcePenaltyOptions {
  bool enabled = true;
  absl::Duration authfail = absl::Seconds(5);
  absl::Duration noauth = absl::Seconds(1);
  absl::Duration grace_exceeded = absl::Seconds(20);
  absl::Duration probe = absl::Seconds(5);
  absl::Duration min = absl::Seconds(15);   // refused once the remaining penalty reaches this
  absl::Duration max = absl::Minutes(10);   // the remaining penalty never exceeds this
  int max_sources = 65536;
  PenaltyOverflow overflow = PenaltyOverflow::kPermissive;
  int ipv4_netblock = 32;
  int ipv6_netblock = 64;
  std::vector<Netblock> exempt;
  absl::Duration log_interval = absl::Minutes(1);  // a refused netblock is logged once per this
};

struct PenaltyEntry {
  std::string netblock;      // "192.0.2.7/32"
  absl::Duration remaining;  // until the penalty is gone
  bool refused = false;      // reached `min`: connections are refused until it runs down
  PenaltyEvent last_event = PenaltyEvent::kAuthFail;
};

struct PenaltyCheck {
  bool refused = false;
  bool log = false;        // first refusal of this netblock in log_interval
  bool overflow = false;   // refused because the table overflowed in deny-all mode
};

class SourcePenalties {
 public:
  using Clock = std::function<absl::Time()>;
  explicit SourcePenalties(SourcePenaltyOptions options, Clock clock = [] { return absl::Now(); });

  // At accept, before any byte is sent. Unparsable sources are never refused.
  PenaltyCheck Check(std::string_view source_ip);
  void Penalise(std::string_view source_ip, PenaltyEvent event);

  // Takes effect for the next event and check; existing entries keep their time.
  void SetOptions(SourcePenaltyOptions options);
  SourcePenaltyOptions options() const;

  std::vector<PenaltyEntry> List();
  // Removes the entries inside `filter` (an address or CIDR; every entry when empty) and ends
  // a deny-all overflow. Returns how many were removed, or an error for a bad filter.
  absl::StatusOr<int> Clear(std::string_view filter);
  size_t size() const;

 private:
  struct Entry {
    absl::Time expiry;
    bool active = false;
    PenaltyEvent last_event = PenaltyEvent::kAuthFail;
    absl::Time last_logged = absl::InfinitePast();
  };
  bool Exempt(const IpAddress& ip) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void ExpireLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration PenaltyFor(PenaltyEvent event) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  Clock clock_;
  mutable absl::Mutex mu_;
  SourcePenaltyOptions options_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Netblock, Entry> table_ ABSL_GUARDED_BY(mu_);
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;  // deny-all in force
  absl::Time overflow_logged_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time last_expire_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::atomic<bool> maybe_refusing_{false};  // table non-empty or overflowed: Check must look
};

}  // namespace alknet
