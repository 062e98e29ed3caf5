// SPDX-License-Identifier: MIT
// Uses the installed headers and library exactly as an outside project would.
#include <sigreg/registry.h>

#include <cstdio>
#include <string>

int main()
{
    sigreg::Registry<std::string> registry;
    std::string seen;
    registry.add(1, [&](const std::string &s) { seen += "high:" + s + ";"; });
    sigreg::Guard guard = registry.addGuarded([&](const std::string &s) { seen += "low:" + s + ";"; });
    registry.notify("a");
    guard.reset();
    registry.notify("b");

    const std::string expected = "high:a;low:a;high:b;";
    if (seen != expected || registry.size() != 1) {
        std::printf("install consumer: got '%s', size %zu\n", seen.c_str(), registry.size());
        std::printf("0 passed, 1 failed\n");
        return 1;
    }
    std::printf("1 passed, 0 failed\n");
    return 0;
}
