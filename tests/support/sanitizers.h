// SPDX-License-Identifier: MIT
// Which sanitizer a test runs under, for suites that scale their work down
// (sanitizers slow threads and allocations by 2-20x).
#pragma once

namespace sigreg_test {

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kUnderTsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kUnderTsan = true;
#else
inline constexpr bool kUnderTsan = false;
#endif
#else
inline constexpr bool kUnderTsan = false;
#endif

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kUnderAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kUnderAsan = true;
#else
inline constexpr bool kUnderAsan = false;
#endif
#else
inline constexpr bool kUnderAsan = false;
#endif

inline constexpr bool kUnderSanitizer = kUnderTsan || kUnderAsan;

} // namespace sigreg_test
