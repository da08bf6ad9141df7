// libFuzzer target: authorized_keys parsing, then from=/permitopen matching on what parsed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/auth/address_patterns.h"
#include "server/auth/authorized_keys.h"
#include "server/auth/fingerprint.h"

namespace {

// Client addresses every parsed from= list is tried against, covering both families and the
// v4-mapped form.
constexpr std::string_view kClientAddresses[] = {
    "192.0.2.7", "10.1.2.3", "2001:db8::1", "::ffff:192.0.2.7", "::1", "0.0.0.0",
};

void Check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace alknet::auth;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const ParsedKeys parsed = ParseAuthorizedKeys(text, "fuzz");

  for (const AuthorizedKey& key : parsed.keys) {
    // Invariants of an accepted line.
    Check(!key.key_type.empty());
    Check(!key.blob.empty());
    Check(key.fingerprint == Sha256Fingerprint(key.blob));
    Check(Base64Decode(Base64Encode(key.blob)) == key.blob);
    Check(key.source.rfind("fuzz:", 0) == 0);
    for (const std::string& entry : key.options.from) Check(IsValidSourcePattern(entry));
    for (const HostPortPattern& pattern : key.options.permit_open) {
      Check(!pattern.host.empty());
      Check(pattern.any_port || pattern.port != 0);
    }

    for (std::string_view ip : kClientAddresses) SourceAllowed(key.options.from, ip);
    // The comment is arbitrary text: use it as an (often malformed) client address too.
    SourceAllowed(key.options.from, key.comment);
    DestinationAllowed(key.options.permit_open, key.comment, 22);
    DestinationAllowed(key.options.permit_open, "localhost", 443);
    for (const std::string& entry : key.options.from) WildcardMatch(entry, key.comment);
  }
  // The raw text as a single line (possibly blank, a comment, or too long) must never crash.
  if (size <= 16 * 1024) {
    absl::StatusOr<AuthorizedKey> single = ParseAuthorizedKeyLine(text);
    (void)single;
  }
  return 0;
}
