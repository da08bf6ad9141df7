// libFuzzer entry: DecodeStateFile (agent/state) on raw bytes and on payloads wrapped in a valid
// header and checksum (so the protobuf parse is reached). Properties: never crash; a decoded
// state re-encodes to a file that decodes to the same state; a file with a newer version is
// FailedPrecondition, anything else refused is DataLoss.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <openssl/sha.h>

#include <google/protobuf/stubs/logging.h>

#include "agent/state/state_store.h"

namespace {

void PutBigEndian(std::string& out, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// The file layout of state_store.h around `payload`, with a correct length and SHA-256.
std::string Wrap(std::string_view payload, uint32_t version) {
  std::string out = "ALKSTATE";
  PutBigEndian(out, version, 4);
  PutBigEndian(out, payload.size(), 8);
  out.append(payload);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(out.data()), out.size(), digest);
  out.append(reinterpret_cast<const char*>(digest), sizeof(digest));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Payloads with invalid UTF-8 in string fields are refused; protobuf's log of each is noise.
  google::protobuf::SetLogHandler([](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  // mode 0..2: wrapped payload with version 1, 0 or 2; otherwise the raw bytes as a file.
  std::string file = mode % 4 == 3 ? std::string(rest) : Wrap(rest, mode % 4 == 0 ? 1 : mode % 4 == 1 ? 0 : 2);
  absl::StatusOr<alknet::state::v1::State> decoded = alknet::state::DecodeStateFile(file, "fuzz");
  if (!decoded.ok()) {
    const absl::StatusCode code = decoded.status().code();
    if (code != absl::StatusCode::kDataLoss && code != absl::StatusCode::kFailedPrecondition) {
      __builtin_trap();
    }
    if (mode % 4 == 2 && code != absl::StatusCode::kFailedPrecondition) __builtin_trap();
    return 0;
  }
  if (mode % 4 == 1 || mode % 4 == 2) __builtin_trap();  // version 0 and newer never decode
  const std::string again = alknet::state::EncodeStateFile(*decoded);
  absl::StatusOr<alknet::state::v1::State> redecoded = alknet::state::DecodeStateFile(again, "fuzz");
  if (!redecoded.ok()) __builtin_trap();
  if (redecoded->SerializeAsString() != decoded->SerializeAsString()) __builtin_trap();
  return 0;
}
