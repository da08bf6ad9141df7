// The per-source penalty table: accumulate, cap, refuse over the threshold, expire, overflow.
#include "server/engine/source_penalties.h"

#include <algorithm>

namespace alknet {

std::string_view PenaltyEventName(PenaltyEvent event) {
  switch (event) {
    case PenaltyEvent::kAuthFail: return "authfail";
    case PenaltyEvent::kNoAuth: return "noauth";
    case PenaltyEvent::kGraceExceeded: return "grace-exceeded";
    case PenaltyEvent::kProbe: return "probe";
  }
  return "unknown";
}

SourcePenalties::SourcePenalties(SourcePenaltyOptions options, Clock clock)
    : clock_(std::move(clock)), options_(std::move(options)) {}

void SourcePenalties::SetOptions(SourcePenaltyOptions options) {
  absl::MutexLock lock(&mu_);
  options_ = std::move(options);
  if (!options_.enabled) {
    table_.clear();
    overflowed_ = false;
    maybe_refusing_ = false;
  }
}

SourcePenaltyOptions SourcePenalties::options() const {
  absl::ReaderMutexLock lock(&mu_);
  return options_;
}

bool SourcePenalties::Exempt(const IpAddress& ip) const {
  for (const Netblock& block : options_.exempt) {
    if (block.Contains(ip)) return true;
  }
  return false;
}

absl::Duration SourcePenalties::PenaltyFor(PenaltyEvent event) const {
  switch (event) {
    case PenaltyEvent::kAuthFail: return options_.authfail;
    case PenaltyEvent::kNoAuth: return options_.noauth;
    case PenaltyEvent::kGraceExceeded: return options_.grace_exceeded;
    case PenaltyEvent::kProbe: return options_.probe;
  }
  return absl::ZeroDuration();
}

void SourcePenalties::ExpireLocked(absl::Time now) {
  last_expire_ = now;
  absl::erase_if(table_, [now](const auto& item) { return item.second.expiry <= now; });
  if (overflowed_ && table_.size() < static_cast<size_t>(options_.max_sources)) overflowed_ = false;
  maybe_refusing_ = overflowed_ || !table_.empty();
}

PenaltyCheck SourcePenalties::Check(std::string_view source_ip) {
  PenaltyCheck check;
  if (!maybe_refusing_.load(std::memory_order_relaxed)) return check;
  absl::StatusOr<IpAddress> ip = ParseIpAddress(source_ip);
  if (!ip.ok()) return check;
  absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  if (!options_.enabled || Exempt(*ip)) return check;
  Netblock key = NetblockOf(*ip, options_.ipv4_netblock, options_.ipv6_netblock);
  auto it = table_.find(key);
  if (it != table_.end() && it->second.expiry <= now) {
    table_.erase(it);
    it = table_.end();
  }
  if (it != table_.end() && it->second.active) {
    check.refused = true;
    if (now - it->second.last_logged >= options_.log_interval) {
      it->second.last_logged = now;
      check.log = true;
    }
    return check;
  }
  if (overflowed_) {
    // Deny-all lasts until an entry expires (looked for at most once a second).
    if (now - last_expire_ >= absl::Seconds(1)) ExpireLocked(now);
    if (overflowed_) {
      check.refused = true;
      check.overflow = true;
      if (now - overflow_logged_ >= options_.log_interval) {
        overflow_logged_ = now;
        check.log = true;
      }
    }
  }
  return check;
}

void SourcePenalties::Penalise(std::string_view source_ip, PenaltyEvent event) {
  absl::StatusOr<IpAddress> ip = ParseIpAddress(source_ip);
  if (!ip.ok()) return;
  absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  absl::Duration add = PenaltyFor(event);
  if (!options_.enabled || add <= absl::ZeroDuration() || Exempt(*ip)) return;
  Netblock key = NetblockOf(*ip, options_.ipv4_netblock, options_.ipv6_netblock);
  auto it = table_.find(key);
  if (it == table_.end()) {
    if (table_.size() >= static_cast<size_t>(options_.max_sources)) {
      // Full: drop what has expired (at most once a second, so a flood costs no scans).
      if (now - last_expire_ >= absl::Seconds(1)) ExpireLocked(now);
      if (table_.size() >= static_cast<size_t>(options_.max_sources)) {
        if (options_.overflow == PenaltyOverflow::kDenyAll) {
          overflowed_ = true;
          maybe_refusing_ = true;
        }
        return;  // permissive: this netblock goes unrecorded
      }
    }
    it = table_.emplace(key, Entry{now, false, event}).first;
  }
  Entry& entry = it->second;
  if (entry.expiry < now) entry.expiry = now;
  entry.expiry = std::min(entry.expiry + add, now + options_.max);
  entry.last_event = event;
  if (!entry.active && entry.expiry - now >= options_.min) entry.active = true;
  maybe_refusing_ = true;
}

std::vector<PenaltyEntry> SourcePenalties::List() {
  absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  ExpireLocked(now);
  std::vector<PenaltyEntry> out;
  out.reserve(table_.size());
  for (const auto& [key, entry] : table_) {
    out.push_back({key.ToString(), entry.expiry - now, entry.active, entry.last_event});
  }
  std::sort(out.begin(), out.end(),
            [](const PenaltyEntry& a, const PenaltyEntry& b) { return a.netblock < b.netblock; });
  return out;
}

absl::StatusOr<int> SourcePenalties::Clear(std::string_view filter) {
  std::optional<Netblock> within;
  if (!filter.empty()) {
    absl::StatusOr<Netblock> parsed = ParseCidr(filter);
    if (!parsed.ok()) return parsed.status();
    within = *parsed;
  }
  absl::MutexLock lock(&mu_);
  int removed = 0;
  absl::erase_if(table_, [&](const auto& item) {
    const Netblock& key = item.first;
    bool match = true;
    if (within) {
      // The entry's netblock lies inside the filter, or the filter inside the entry.
      match = within->Contains(key.base()) || key.Contains(within->base());
    }
    removed += match ? 1 : 0;
    return match;
  });
  overflowed_ = false;
  maybe_refusing_ = !table_.empty();
  return removed;
}

size_t SourcePenalties::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return table_.size();
}

}  // namespace alknet
