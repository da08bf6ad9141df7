// Caps connections of one kind across all sources and per source, an IPv6 source counted per
// /64 (one host usually owns the whole prefix). Thread-safe; a ticket gives its slot back
// when destroyed.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace alknet {

class ConnectionBudget;

// Holds one slot of a ConnectionBudget until destroyed. The budget must outlive it.
class BudgetTicket {
 public:
  BudgetTicket(ConnectionBudget* budget, std::string key) : budget_(budget), key_(std::move(key)) {}
  BudgetTicket(const BudgetTicket&) = delete;
  BudgetTicket& operator=(const BudgetTicket&) = delete;
  ~BudgetTicket();

 private:
  ConnectionBudget* budget_;
  std::string key_;
};

enum class BudgetVerdict { kAdmitted, kTotalLimit, kSourceLimit };

// The per-source key of an IP literal: IPv4 as is, IPv6 as its /64 ("2001:db8:1:2::/64"); an
// IPv4-mapped IPv6 address counts as its IPv4 address. Anything unparsable is its own key.
std::string BudgetSourceKey(std::string_view ip);

class ConnectionBudget {
 public:
  ConnectionBudget(int max_total, int max_per_source)
      : max_total_(max_total), max_per_source_(max_per_source) {}

  // A ticket when admitted; otherwise nullptr and `verdict` says which cap was hit.
  std::unique_ptr<BudgetTicket> TryAdmit(std::string_view source_ip, BudgetVerdict* verdict);

  int in_use() const;
  int in_use_by(std::string_view source_ip) const;

 private:
  friend class BudgetTicket;
  void Release(const std::string& key);

  const int max_total_;
  const int max_per_source_;
  mutable absl::Mutex mu_;
  int total_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, int> per_source_ ABSL_GUARDED_BY(mu_);
};

}  // namespace alknet
