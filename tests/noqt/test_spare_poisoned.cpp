// SPDX-License-Identifier: MIT
// AddressSanitizer check (Qt-free, no test framework): a reclaimed snapshot
// block that the registry keeps for reuse (a spare) is poisoned, so that a
// read of it, a reader that skipped the hazard protocol, is reported like a
// read after free. Without the poisoning such a read would go unnoticed: the
// memory is still allocated, by the registry itself.
//
// The program keeps the address of the registry's current block (through a
// mirror word, the way the typed bus reads blocks), makes a write replace
// that block, checks that it went to the spares rather than back to the
// allocator and that ASan sees it poisoned, and then reads it. Under ASan
// the read must stop the program with a "use-after-poison" report: CTest
// passes the test on that output (PASS_REGULAR_EXPRESSION; tests/CMakeLists.txt
// registers it only in builds with -fsanitize=address). If the read goes
// through, the program says so and exits 1, and the output does not match:
// the test fails.
#include <sigreg/detail/hazard.h>
#include <sigreg/detail/registry_core.h>
#include <sigreg/registry.h> // detail::makeNode

#include <atomic>
#include <cstdint>
#include <cstdio>

#if defined(SIGREG_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace {

struct Event {
    int n;
};

} // namespace

int main()
{
#if !defined(SIGREG_ASAN)
    std::fprintf(stderr, "test_spare_poisoned: built without AddressSanitizer, nothing to check\n");
    return 1;
#else
    using sigreg::detail::Block;
    using sigreg::detail::RegistryCore;

    std::atomic<std::uintptr_t> mirror{RegistryCore::emptyMirror()};
    RegistryCore core;
    core.setMirror(&mirror);

    const auto add = [&core](int priority) {
        return core.add(sigreg::detail::makeNode<Event>([](const Event &) {}), priority);
    };
    (void)add(0);
    const sigreg::HandlerId second = add(0); // appended in place: still the same block
    (void)add(0);

    const auto *old = reinterpret_cast<const Block *>(mirror.load() & ~RegistryCore::kMirrorDivert);
    if (old == reinterpret_cast<const Block *>(RegistryCore::emptyMirror())) {
        std::fprintf(stderr, "test_spare_poisoned: the registry still lists no handler\n");
        return 1;
    }
    const std::size_t sparesBefore = core.spareCapacity();

    // A removal copies the other two into a new block and publishes it; no
    // thread reads, so the old block is reclaimed at once, as a spare.
    if (!core.remove(second, true)) {
        std::fprintf(stderr, "test_spare_poisoned: remove() failed\n");
        return 1;
    }
    if (reinterpret_cast<const Block *>(mirror.load() & ~RegistryCore::kMirrorDivert) == old) {
        std::fprintf(stderr, "test_spare_poisoned: the removal did not replace the block\n");
        return 1;
    }
    if (core.spareCapacity() <= sparesBefore) {
        std::fprintf(stderr, "test_spare_poisoned: the old block was not kept as a spare\n");
        return 1;
    }

    if (!__asan_address_is_poisoned(old)) {
        std::fprintf(stderr, "test_spare_poisoned: the spare block is not poisoned\n");
        return 1;
    }
    std::fprintf(stderr, "test_spare_poisoned: reading the spare block (AddressSanitizer must stop this)\n");
    const volatile std::uint32_t capacity = old->capacity;
    std::fprintf(stderr, "test_spare_poisoned: read a spare block (capacity %u) unreported: it is not poisoned\n",
                 unsigned(capacity));
    return 1;
#endif
}
