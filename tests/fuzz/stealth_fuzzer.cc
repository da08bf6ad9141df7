// libFuzzer target: arbitrary client bytes into the TLS listener's decision logic.
// The first byte picks how the rest is split into reads (as a TLS peer may split them).
// Invariants: the banner verdict is stable once decided, the nginx imitation never answers with
// an SSH banner, every answer is a well-formed nginx response, and nothing follows a close.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/transport/stealth_responder.h"

namespace {

void Check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace alknet::stealth;
  if (size == 0) return 0;
  const size_t step = 1 + data[0] % 64;
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

  // Banner: growing prefixes never flip a final verdict.
  BannerVerdict decided = BannerVerdict::kNeedMore;
  size_t decided_line = 0;
  for (size_t end = 0; end <= input.size(); end += step) {
    BannerResult result = ClassifyBanner(input.substr(0, end));
    if (decided != BannerVerdict::kNeedMore) {
      Check(result.verdict == decided);
      if (decided == BannerVerdict::kSsh) Check(result.line_size == decided_line);
    } else if (result.verdict != BannerVerdict::kNeedMore) {
      decided = result.verdict;
      decided_line = result.line_size;
      Check(decided != BannerVerdict::kSsh ||
            (decided_line <= kMaxBannerLine && input.substr(0, 8) == "SSH-2.0-"));
    }
    if (end == input.size()) break;
    if (end + step > input.size()) end = input.size() - step;
  }

  // nginx: split reads, then a final consistency check of what came out.
  NginxEmulator emulator;
  std::string out;
  bool closed = false;
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  for (size_t at = 0; at < input.size(); at += step) {
    size_t before = out.size();
    NginxEmulator::Next next = emulator.Feed(input.substr(at, step), now, out);
    if (closed) Check(out.size() == before);  // nothing after the close
    if (next == NginxEmulator::Next::kCloseAfterWrite) closed = true;
  }
  Check(out.find("SSH-") == std::string::npos);
  Check(emulator.requests() <= kMaxKeepaliveRequests);
  // Every response starts with nginx's status line or is an HTTP/0.9 body.
  size_t at = 0;
  while (at < out.size()) {
    if (out.compare(at, 6, "<html>") == 0) break;
    Check(out.compare(at, 9, "HTTP/1.1 ") == 0);
    size_t head_end = out.find("\r\n\r\n", at);
    Check(head_end != std::string::npos);
    Check(out.find("\r\nServer: nginx/1.22.1\r\n", at) < head_end);
    size_t length_at = out.find("Content-Length: ", at);
    Check(length_at < head_end);
    size_t length = std::strtoul(out.c_str() + length_at + 16, nullptr, 10);
    head_end += 4;
    at = out.compare(head_end, 6, "<html>") == 0 ? head_end + length : head_end;
    Check(at <= out.size());
  }
  return 0;
}
