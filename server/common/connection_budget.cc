// Caps connections of one kind across all sources and per source (IPv6 per /64).
#include "server/common/connection_budget.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace alknet {

std::string BudgetSourceKey(std::string_view ip) {
  std::string text(ip);
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) != 1) return text;  // IPv4 (or not an address)
  if (IN6_IS_ADDR_V4MAPPED(&v6)) {
    char v4[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, &v6.s6_addr[12], v4, sizeof(v4)) != nullptr) return v4;
    return text;
  }
  std::memset(&v6.s6_addr[8], 0, 8);  // keep the /64 prefix
  char prefix[INET6_ADDRSTRLEN];
  if (inet_ntop(AF_INET6, &v6, prefix, sizeof(prefix)) == nullptr) return text;
  return std::string(prefix) + "/64";
}

BudgetTicket::~BudgetTicket() {
  if (budget_ != nullptr) budget_->Release(key_);
}

std::unique_ptr<BudgetTicket> ConnectionBudget::TryAdmit(std::string_view source_ip,
                                                         BudgetVerdict* verdict) {
  std::string key = BudgetSourceKey(source_ip);
  absl::MutexLock lock(&mu_);
  if (total_ >= max_total_) {
    *verdict = BudgetVerdict::kTotalLimit;
    return nullptr;
  }
  auto [it, inserted] = per_source_.try_emplace(key, 0);
  if (it->second >= max_per_source_) {
    *verdict = BudgetVerdict::kSourceLimit;
    return nullptr;
  }
  ++it->second;
  ++total_;
  *verdict = BudgetVerdict::kAdmitted;
  return std::make_unique<BudgetTicket>(this, std::move(key));
}

int ConnectionBudget::in_use() const {
  absl::MutexLock lock(&mu_);
  return total_;
}

int ConnectionBudget::in_use_by(std::string_view source_ip) const {
  std::string key = BudgetSourceKey(source_ip);
  absl::MutexLock lock(&mu_);
  auto it = per_source_.find(key);
  return it == per_source_.end() ? 0 : it->second;
}

void ConnectionBudget::Release(const std::string& key) {
  absl::MutexLock lock(&mu_);
  --total_;
  auto it = per_source_.find(key);
  if (it != per_source_.end() && --it->second <= 0) per_source_.erase(it);
}

}  // namespace alknet
