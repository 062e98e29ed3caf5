// SPDX-License-Identifier: MIT
// The other translation unit of test_bus_filelocal.cpp: the same `static`
// functions, with a `Local` of another layout and a lambda type of its own.
#include <sigreg/bus.h>

namespace {
void (*g_emitLocal)(sigreg::Bus &) = nullptr;
void (*g_emitTag)(sigreg::Bus &) = nullptr;
} // namespace

// The same names, signatures and order of lambdas as in the other file.
static void setup(sigreg::Bus &bus, void *seen)
{
    struct Local {
        int a;
        int b;
    };
    bus.on([seen](const Local &e) { *static_cast<int *>(seen) += e.b - e.a; });
    g_emitLocal = [](sigreg::Bus &b) { b.emit(Local{1, 2}); };
}

static void setupTag(sigreg::Bus &bus, void *seen)
{
    auto tag = [] {};
    using Tag = decltype(tag);
    bus.on([seen](const Tag &) { ++*static_cast<int *>(seen); });
    g_emitTag = [](sigreg::Bus &b) { b.emit(Tag{}); };
}

namespace filelocal_other {
void registerHandlers(sigreg::Bus &bus, int *localSeen, int *tagSeen)
{
    setup(bus, localSeen);
    setupTag(bus, tagSeen);
}
void emitLocal(sigreg::Bus &bus)
{
    g_emitLocal(bus);
}
void emitTag(sigreg::Bus &bus)
{
    g_emitTag(bus);
}
} // namespace filelocal_other
