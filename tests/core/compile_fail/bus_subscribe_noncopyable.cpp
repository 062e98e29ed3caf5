// SPDX-License-Identifier: MIT
// Must not compile: a pull receiver keeps copies, and this event cannot be copied.
#include <sigreg/bus.h>

#include <memory>

struct Unique {
    std::unique_ptr<int> payload;
};

int main()
{
    sigreg::Bus bus;
    bus.on([](const Unique &) {}); // fine: push handlers get a reference
    auto rx = bus.subscribe<Unique>();
    return 0;
}
