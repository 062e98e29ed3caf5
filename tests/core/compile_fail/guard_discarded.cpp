// SPDX-License-Identifier: MIT
// Must not compile with -Werror=unused-result: a guard that is discarded
// removes its handler at once, so Guard and the calls that return one are
// [[nodiscard]]. check_guard_discarded.cmake builds this and expects the
// diagnostic on every line marked "discarded" below.
#include <sigreg/registry.h>

struct Event {
};

int main()
{
    sigreg::Registry<Event> registry;
    registry.addGuarded([](const Event &) {});                 // discarded
    registry.addGuarded(5, [](const Event &) {});              // discarded
    registry.guard(registry.add([](const Event &) {}));        // discarded
    sigreg::Guard kept = registry.addGuarded([](const Event &) {});
    registry.notify(Event{});
    return kept.isActive() ? 0 : 1;
}
