// authorized_keys lines rendered from parsed keys, and the RSA key size of a key blob.
#include "server/auth/key_text.h"

#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "server/auth/fingerprint.h"
#include "server/auth/wire_reader.h"
#include "server/common/strings.h"

namespace alknet::auth {

int RsaModulusBits(std::string_view blob) {
  SshWireReader reader(blob);
  std::string_view type, exponent, modulus;
  if (!reader.ReadString(type) || !reader.ReadString(exponent) || !reader.ReadString(modulus)) {
    return 0;
  }
  while (!modulus.empty() && modulus.front() == 0) modulus.remove_prefix(1);
  if (modulus.empty()) return 0;
  int bits = static_cast<int>(modulus.size()) * 8;
  for (auto top = static_cast<unsigned char>(modulus.front()); (top & 0x80) == 0; top <<= 1) --bits;
  return bits;
}

std::string OptionsText(std::string_view line, const AuthorizedKey& key) {
  size_t from = 0;
  while (true) {
    size_t at = line.find(key.key_type, from);
    if (at == std::string_view::npos) return "";
    from = at + 1;
    if (at != 0 && line[at - 1] != ' ' && line[at - 1] != '\t') continue;
    std::string_view after = line.substr(at + key.key_type.size());
    if (after.empty() || (after[0] != ' ' && after[0] != '\t')) continue;
    std::string_view token = StdSv(absl::StripLeadingAsciiWhitespace(Sv(after)));
    token = token.substr(0, token.find_first_of(" \t"));
    std::optional<std::string> decoded = Base64Decode(token);
    if (decoded && *decoded == key.blob) {
      return std::string(absl::StripAsciiWhitespace(Sv(line.substr(0, at))));
    }
  }
}

std::string RenderHostPort(const HostPortPattern& pattern) {
  std::string host = pattern.host.find(':') != std::string::npos ? absl::StrCat("[", pattern.host, "]")
                                                                  : pattern.host;
  return absl::StrCat(host, ":", pattern.any_port ? "*" : absl::StrCat(pattern.port));
}

std::string QuoteOptionValue(std::string_view value) {
  std::string out = "\"";
  for (char c : value) {
    if (c == '"') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string RenderOptions(const KeyOptions& options) {
  std::vector<std::string> parts;
  if (options.restrict) parts.push_back("restrict");
  if (options.cert_authority) parts.push_back("cert-authority");
  if (!options.from.empty()) {
    parts.push_back(absl::StrCat("from=", QuoteOptionValue(absl::StrJoin(options.from, ","))));
  }
  for (const auto& pattern : options.permit_open) {
    parts.push_back(absl::StrCat("permitopen=", QuoteOptionValue(RenderHostPort(pattern))));
  }
  for (const auto& pattern : options.permit_listen) {
    parts.push_back(absl::StrCat("permitlisten=", QuoteOptionValue(RenderHostPort(pattern))));
  }
  if (options.expiry) {
    parts.push_back(absl::StrCat(
        "expiry-time=",
        QuoteOptionValue(absl::FormatTime("%Y%m%d%H%M%SZ", *options.expiry, absl::UTCTimeZone()))));
  }
  if (!options.principals.empty()) {
    parts.push_back(absl::StrCat("principals=", QuoteOptionValue(absl::StrJoin(options.principals, ","))));
  }
  if (options.command) parts.push_back(absl::StrCat("command=", QuoteOptionValue(*options.command)));
  struct Flag {
    bool value;
    std::string_view name;
  };
  for (const Flag& flag : {Flag{options.port_forwarding, "port-forwarding"}, Flag{options.pty, "pty"},
                           Flag{options.agent_forwarding, "agent-forwarding"},
                           Flag{options.x11_forwarding, "x11-forwarding"},
                           Flag{options.user_rc, "user-rc"}}) {
    if (options.restrict && flag.value) parts.push_back(std::string(flag.name));
    if (!options.restrict && !flag.value) parts.push_back(absl::StrCat("no-", Sv(flag.name)));
  }
  return absl::StrJoin(parts, ",");
}

std::string KeyLine(std::string_view options, const AuthorizedKey& key) {
  std::string line;
  if (!options.empty()) absl::StrAppend(&line, Sv(options), " ");
  absl::StrAppend(&line, key.key_type, " ", Base64Encode(key.blob));
  if (!key.comment.empty()) absl::StrAppend(&line, " ", key.comment);
  return line;
}

}  // namespace alknet::auth
