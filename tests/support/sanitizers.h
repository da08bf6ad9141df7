// ALKNET_TEST_SANITIZED is defined when the test is built with AddressSanitizer (GCC or clang).
#pragma once

#if defined(__SANITIZE_ADDRESS__)  // GCC
#define ALKNET_TEST_SANITIZED 1
#elif defined(__has_feature)  // clang
#if __has_feature(address_sanitizer)
#define ALKNET_TEST_SANITIZED 1
#endif
#endif
