// SPDX-License-Identifier: MIT
// Qt-free test of the bus's type identity for types that only one
// translation unit can see and that another file spells alike: a local class
// of a function with internal linkage, and a lambda's type there. GCC marks
// their stored names ('*'); clang does not, and CI builds this test with
// clang too (the core-only-clang preset) for that reason. The other file,
// test_bus_filelocal_other.cpp, has the same `static` functions, with a
// `Local` of another layout: sharing a channel would hand one file's handler
// the other file's event.
//
// Prints "N passed, M failed" and exits non-zero if anything failed.
#include <sigreg/bus.h>

#include <cstdio>

namespace filelocal_other {
void registerHandlers(sigreg::Bus &bus, int *localSeen, int *tagSeen);
void emitLocal(sigreg::Bus &bus);
void emitTag(sigreg::Bus &bus);
} // namespace filelocal_other

namespace {
int g_passed = 0;
int g_failed = 0;
void check(bool ok, const char *what)
{
    if (ok) {
        ++g_passed;
    } else {
        ++g_failed;
        std::printf("FAILED: %s\n", what);
    }
}
} // namespace

// The same names, signatures and order of lambdas as in the other file.
static void setup(sigreg::Bus &bus, void *seen)
{
    struct Local {
        double x;
    };
    bus.on([seen](const Local &e) { *static_cast<double *>(seen) += e.x + 1; });
}

static void setupTag(sigreg::Bus &bus, void *seen)
{
    auto tag = [] {};
    using Tag = decltype(tag);
    bus.on([seen](const Tag &) { ++*static_cast<int *>(seen); });
}

int main()
{
    sigreg::Bus bus;
    double localHere = 0;
    int tagHere = 0;
    setup(bus, &localHere);
    setupTag(bus, &tagHere);
    int localThere = 0, tagThere = 0;
    filelocal_other::registerHandlers(bus, &localThere, &tagThere);
    check(bus.typeCount() == 4, "each file's Local and lambda type has its own channel");

    filelocal_other::emitLocal(bus);
    check(localHere == 0, "this file's handler does not get the other file's Local");
    check(localThere == 1, "the other file's handler gets it");

    filelocal_other::emitTag(bus);
    check(tagHere == 0, "this file's handler does not get the other file's lambda type");
    check(tagThere == 1, "the other file's handler gets it");

    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
