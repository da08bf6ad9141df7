// Unit tests for SHA256 key fingerprints (as ssh-keygen -l) and strict base64 coding.
#include "server/auth/fingerprint.h"

#include <string>

#include "gtest/gtest.h"

namespace alknet::auth {
namespace {

// Key blobs (base64) of keys made with ssh-keygen, and the SHA256 field `ssh-keygen -lf` printed.
struct FingerprintCase {
  std::string_view blob_base64;
  std::string_view fingerprint;
};

class FingerprintTest : public ::testing::TestWithParam<FingerprintCase> {};

TEST_P(FingerprintTest, MatchesSshKeygen) {
  std::optional<std::string> blob = Base64Decode(GetParam().blob_base64);
  ASSERT_TRUE(blob.has_value());
  EXPECT_EQ(Sha256Fingerprint(*blob), GetParam().fingerprint);
}

INSTANTIATE_TEST_SUITE_P(
    SshKeygen, FingerprintTest,
    ::testing::Values(
        FingerprintCase{"AAAAC3NzaC1lZDI1NTE5AAAAIObAnDs+QOg1+6AZ+iMEVmwdt/k10vLmiDPBQX2+vh5u",
                        "SHA256:zZaw2odR50zt1mfgw5n44O1CRqNmXsr4P32rjeOUs3U"},
        FingerprintCase{"AAAAC3NzaC1lZDI1NTE5AAAAIBnr2SlN2/jUhEKmkOVzUyQ0ygUzMJGSpgiPh+F7oJiG",
                        "SHA256:g9WemqhmHIBzruvSndwU0Uy4T6AsYBKK8k7TyKs02mQ"},
        FingerprintCase{
            "AAAAB3NzaC1yc2EAAAADAQABAAABAQCuzAdYs/Fb/E0BxNj4oUoIh8U8omsD+CW8+6L3aKwVnCCtHoQKka0lg3"
            "yLt5vJ5mq3/iae42pdf3NBcXL2rnDVjbPuhQLySJt9D2av26VzyWndTII0xi8qLUtlVKh+S1/DA09n5om7Kx4Q"
            "v2BGQp5k9XVlbUegyZypn2jtrHKvgS4F62VeGggWRP5g/gucTCZ5K7V+v1PyPiPCZWXkrQjGZ3Y6dDVRUd2vjy"
            "VnJGxvHkeK4RmxZw87bAaWSXuHTDwC2kXccQFKurtVKiBjQIlVfomiomUpaxvizedjKceD3vuim3eHWYPuKAv3"
            "ZxjqiFYnNwZ55QicpGxMAS5LM9qp",
            "SHA256:+NJIhnnd26OSiyrt/Wi4qLxJ2Q0S8WARMv6MrwNFh8c"},
        FingerprintCase{
            "AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBEFEazSI0Vsk6WOEX8Gc0OUJBK78BCPEjA"
            "UWoLon4O7vC4GWwq1PdGgkjX3wSlGAGNaCDEEBIJYThjlqtzP/O8BpDtSRv6igS77H+e/QkgXdeV9qn9g7xyzE"
            "QDzeOX3jZw==",
            "SHA256:ahZ6I+IsfThlsZELBvoRRBKeTUId6s0624yINgJbEng"},
        FingerprintCase{
            "AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIObAnDs+QOg1+6AZ+iMEVmwdt/k10vLmiDPBQX2+vh"
            "5uAAAABHNzaDo=",
            "SHA256:B1i1njLY3/GXTAAuMjIDKyQnCDIekpxEUpXHDkt/gXI"}));

TEST(Sha256FingerprintTest, EmptyBlobHasTheSha256OfNothing) {
  // SHA-256("") = e3b0c442...b855, base64 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=
  EXPECT_EQ(Sha256Fingerprint(""), "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU");
}

// ---- base64 ----

struct Base64Case {
  std::string plain;
  std::string padded;
  std::string unpadded;
};

class Base64VectorTest : public ::testing::TestWithParam<Base64Case> {};

TEST_P(Base64VectorTest, EncodesAndDecodes) {
  const Base64Case& c = GetParam();
  EXPECT_EQ(Base64Encode(c.plain), c.padded);
  EXPECT_EQ(Base64Encode(c.plain, /*pad=*/false), c.unpadded);
  EXPECT_EQ(Base64Decode(c.padded), std::optional<std::string>(c.plain));
}

// RFC 4648 section 10, plus bytes that use '+', '/' and NUL.
INSTANTIATE_TEST_SUITE_P(
    Rfc4648, Base64VectorTest,
    ::testing::Values(Base64Case{"", "", ""}, Base64Case{"f", "Zg==", "Zg"},
                      Base64Case{"fo", "Zm8=", "Zm8"}, Base64Case{"foo", "Zm9v", "Zm9v"},
                      Base64Case{"foob", "Zm9vYg==", "Zm9vYg"},
                      Base64Case{"fooba", "Zm9vYmE=", "Zm9vYmE"},
                      Base64Case{"foobar", "Zm9vYmFy", "Zm9vYmFy"},
                      Base64Case{std::string("\xfb\xff\x00", 3), "+/8A", "+/8A"},
                      Base64Case{std::string("\0", 1), "AA==", "AA"}));

class Base64RejectTest : public ::testing::TestWithParam<std::string> {};

TEST_P(Base64RejectTest, StrictDecodeRejects) {
  EXPECT_FALSE(Base64Decode(GetParam()).has_value()) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Malformed, Base64RejectTest,
                         ::testing::Values("Zg",        // missing padding
                                           "Zg=",       // short padding
                                           "Zm9vY",     // length not a multiple of 4
                                           "Zm9v\n",    // whitespace
                                           "Zm 9v",     // whitespace inside
                                           "Zm9v$A==",  // outside the alphabet
                                           "Zm-_",      // base64url alphabet
                                           "=Zm9",      // padding first
                                           "Zg==Zm9v",  // padding in the middle
                                           "Z===",      // three padding characters
                                           "====",      // only padding
                                           "Zh==",      // non-zero unused bits (2 pad)
                                           "Zm9=",      // non-zero unused bits (1 pad)
                                           std::string("Zm\0v", 4)));

TEST(Base64Test, RoundTripsEveryByteAndLength) {
  std::string data;
  for (int i = 0; i < 300; ++i) {
    data += static_cast<char>((i * 37 + 11) & 0xff);
    const std::string encoded = Base64Encode(data);
    ASSERT_EQ(encoded.size() % 4, 0u);
    ASSERT_EQ(Base64Decode(encoded), std::optional<std::string>(data)) << i;
  }
}

}  // namespace
}  // namespace alknet::auth
