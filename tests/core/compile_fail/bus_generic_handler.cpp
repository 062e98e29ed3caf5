// SPDX-License-Identifier: MIT
// Must not compile: a generic lambda names no event type; bus.on<E>(f) would.
#include <sigreg/bus.h>

int main()
{
    sigreg::Bus bus;
    bus.on([](const auto &) {});
    return 0;
}
