// SPDX-License-Identifier: MIT
// Uses the installed headers and library exactly as an outside project would.
#include <sigreg/bus.h>
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

    int passed = 0;
    int failed = 0;
    const std::string expected = "high:a;low:a;high:b;";
    if (seen != expected || registry.size() != 1) {
        std::printf("install consumer: registry got '%s', size %zu\n", seen.c_str(), registry.size());
        ++failed;
    } else {
        ++passed;
    }

    // The typed bus: a push handler, and a receiver that lags.
    sigreg::Bus bus;
    int pushed = 0;
    bus.on([&](const int &v) { pushed += v; });
    sigreg::Receiver<int> rx = bus.subscribe<int>(2);
    for (int i = 1; i <= 3; ++i)
        bus.emit(i);
    const auto lag = rx.tryReceive();
    const auto next = rx.tryReceive();
    if (pushed != 6 || lag.status() != sigreg::ReceiveStatus::Lagged || lag.lagged() != 1 || !next
        || *next != 2 || bus.typeCount() != 1) {
        std::printf("install consumer: bus pushed %d, lag %llu, typeCount %zu\n", pushed,
                    static_cast<unsigned long long>(lag.lagged()), bus.typeCount());
        ++failed;
    } else {
        ++passed;
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
