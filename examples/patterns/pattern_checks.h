// SPDX-License-Identifier: MIT
// The pattern programs' outcome checks: each prints one line and counts the
// failures; finish() prints the verdict and gives main()'s exit code.
#pragma once

#include <cstdio>

namespace pattern {

inline int failures = 0;

inline void check(bool ok, const char *what)
{
    std::printf("  [%s] %s\n", ok ? "ok" : "FAILED", what);
    failures += ok ? 0 : 1;
}

inline int finish(const char *program)
{
    std::printf("%s: %s\n", program, failures == 0 ? "all checks passed" : "CHECKS FAILED");
    return failures == 0 ? 0 : 1;
}

} // namespace pattern
