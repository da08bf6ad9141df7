// Parses and prints state.store: "file" or an etcd cluster URL.
#include "server/config/state_store_url.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/common/strings.h"

namespace alknet::config {
namespace {

constexpr std::string_view kDefaultPrefix = "/alknet";
constexpr size_t kMaxEndpoints = 16;
constexpr size_t kMaxPrefix = 256;

bool PrefixChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

absl::Status CheckPrefix(std::string_view prefix) {
  if (prefix.size() > kMaxPrefix) {
    return absl::InvalidArgumentError(absl::StrCat("prefix longer than ", kMaxPrefix, " characters"));
  }
  for (absl::string_view segment : absl::StrSplit(Sv(prefix.substr(1)), '/')) {
    if (segment.empty() || segment == "." || segment == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          "prefix '", Sv(prefix), "' has an empty, '.' or '..' segment"));
    }
    for (char c : segment) {
      if (!PrefixChar(c)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "prefix '", Sv(prefix), "' may only hold letters, digits, '.', '_', '-' and '/'"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string StateStoreUrl::ToString() const {
  if (kind == Kind::kFile) return "file";
  std::vector<std::string> hosts;
  for (const HostPort& endpoint : endpoints) hosts.push_back(endpoint.ToString());
  return absl::StrCat(tls ? "etcds://" : "etcd://", absl::StrJoin(hosts, ","), prefix);
}

absl::StatusOr<StateStoreUrl> ParseStateStoreUrl(std::string_view text) {
  StateStoreUrl url;
  if (text == "file") return url;
  std::string_view rest = text;
  if (rest.starts_with("etcd://")) {
    rest.remove_prefix(7);
  } else if (rest.starts_with("etcds://")) {
    rest.remove_prefix(8);
    url.tls = true;
  } else {
    return absl::InvalidArgumentError(
        "must be 'file' or etcd://host:port[,host:port...][/prefix] (etcds:// for TLS)");
  }
  url.kind = StateStoreUrl::Kind::kEtcd;
  size_t slash = rest.find('/');
  std::string_view hosts = rest.substr(0, slash);
  url.prefix = slash == std::string_view::npos ? std::string(kDefaultPrefix)
                                               : std::string(rest.substr(slash));
  while (url.prefix.size() > 1 && url.prefix.back() == '/') url.prefix.pop_back();
  if (url.prefix == "/") {
    return absl::InvalidArgumentError("the prefix must not be '/' alone (leave it out for /alknet)");
  }
  if (absl::Status prefix = CheckPrefix(url.prefix); !prefix.ok()) return prefix;
  if (hosts.empty()) return absl::InvalidArgumentError("no etcd endpoint (etcd://host:port/...)");
  for (absl::string_view host : absl::StrSplit(Sv(hosts), ',')) {
    if (url.endpoints.size() == kMaxEndpoints) {
      return absl::InvalidArgumentError(absl::StrCat("more than ", kMaxEndpoints, " etcd endpoints"));
    }
    absl::StatusOr<HostPort> endpoint = ParseHostPort(StdSv(host), /*allow_zero=*/false);
    if (!endpoint.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoint '", host, "': ", endpoint.status().message()));
    }
    // A name or IPv4 literal ([A-Za-z0-9.-]) or an IPv6 literal (hex digits, ':' and '.').
    bool v6 = endpoint->host.find(':') != std::string::npos;
    for (char c : endpoint->host) {
      bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
      bool ok = v6 ? (hex || c == ':' || c == '.') : (PrefixChar(c) && c != '_');
      if (!ok || endpoint->host.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("etcd endpoint '", host, "': not a host name or IP address"));
      }
    }
    url.endpoints.push_back(*std::move(endpoint));
  }
  return url;
}

}  // namespace alknet::config
