// SPDX-License-Identifier: MIT
// Companion translation unit of tst_bus.cpp (linked into the same test
// executable): event types spelled exactly like some in tst_bus.cpp.
//
//   * LocalEvent and Boxed<LocalEvent> live in an anonymous namespace here and
//     there: they are different types (internal linkage) with the same mangled
//     name, so they must get different channels.
//   * BusTwinEvent is defined identically in both files with external linkage:
//     one type (ODR), so both files must reach the same channel.
//
// The functions below are the only way tst_bus.cpp touches this file's types.
#include <sigreg/bus.h>

#include <typeinfo>
#include <vector>

namespace {

struct LocalEvent {
    int value = 0;
};

template <class T>
struct Boxed {
    T inner;
};

} // namespace

namespace tst_bus_twin {
struct BusTwinEvent {
    int value = 0;
};
} // namespace tst_bus_twin

namespace tst_bus_other {

void onLocal(sigreg::Bus &bus, std::vector<int> *seen)
{
    bus.on([seen](const LocalEvent &e) { seen->push_back(e.value); });
}

void emitLocal(sigreg::Bus &bus, int value)
{
    bus.emit(LocalEvent{value});
}

bool hasLocalChannel(const sigreg::Bus &bus)
{
    return bus.hasChannel<LocalEvent>();
}

std::size_t localHandlerCount(const sigreg::Bus &bus)
{
    return bus.handlerCount<LocalEvent>();
}

void onBoxed(sigreg::Bus &bus, std::vector<int> *seen)
{
    bus.on([seen](const Boxed<LocalEvent> &e) { seen->push_back(e.inner.value); });
}

void emitBoxed(sigreg::Bus &bus, int value)
{
    bus.emit(Boxed<LocalEvent>{LocalEvent{value}});
}

void emitTwin(sigreg::Bus &bus, int value)
{
    bus.emit(tst_bus_twin::BusTwinEvent{value});
}

const std::type_info &localTypeInfo()
{
    return typeid(LocalEvent);
}

} // namespace tst_bus_other
