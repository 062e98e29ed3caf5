// SPDX-License-Identifier: MIT
// Qt-free test of the core (plain C++20, no test framework): the only test
// of a build with SIGREG_WITH_QT=OFF, and an independent cross-check of the
// Qt Test suites. It deliberately takes other routes than those suites:
// expected orders come from a std::multimap, waiting is checked with a
// global sequence of time stamps, allocations with one process-wide counter.
//
// Prints one line per failed check, then exactly "N passed, M failed" (N, M
// count checks) and exits non-zero if anything failed.
#include <sigreg/bus.h>
#include <sigreg/registry.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../support/replace_new.h"

// ---------------------------------------------------------------------------
// A minimal check facility.
// ---------------------------------------------------------------------------
namespace {
int g_passed = 0;
int g_failed = 0;
const char *g_case = "";

void check(bool ok, const char *expr, const char *file, int line)
{
    if (ok) {
        ++g_passed;
        return;
    }
    ++g_failed;
    std::printf("FAIL [%s] %s:%d: %s\n", g_case, file, line, expr);
}
} // namespace

#define CHECK(...) check(static_cast<bool>(__VA_ARGS__), #__VA_ARGS__, __FILE__, __LINE__)

// ---------------------------------------------------------------------------
// Process-wide allocation counter: every replaceable operator new counts.
// ---------------------------------------------------------------------------
namespace {
std::atomic<long> g_news{0};
} // namespace

bool sigreg_test::beforeAllocation() noexcept
{
    g_news.fetch_add(1, std::memory_order_relaxed);
    return true;
}

namespace {

} // namespace


namespace {

struct Tick {
    std::uint32_t n;
};
using Reg = sigreg::Registry<Tick>;
using sigreg::HandlerId;

// ---------------------------------------------------------------------------
// Priorities and ties: expected order from a multimap keyed by descending
// priority (equal keys keep insertion order), registration mixing add(),
// addGuarded() and appends that fall before/after existing priorities.
// ---------------------------------------------------------------------------
void prioritiesAndTies()
{
    Reg reg;
    std::multimap<int, int, std::greater<int>> expected;
    std::string trace;
    std::vector<sigreg::Guard> guards;
    std::uint32_t x = 2024;
    for (int i = 0; i < 60; ++i) {
        x = x * 1103515245u + 12345u;
        const int prio = int((x >> 16) % 7u) - 3; // many ties
        expected.emplace(prio, i);
        auto h = [&trace, i](const Tick &) { trace += std::to_string(i) + ','; };
        if (i % 4 == 0)
            guards.push_back(reg.addGuarded(prio, h));
        else
            reg.add(prio, h);
    }
    std::string want;
    for (const auto &[prio, i] : expected)
        want += std::to_string(i) + ',';
    reg.notify(Tick{0});
    CHECK(trace == want);
    CHECK(reg.size() == 60);

    // Dropping the guarded quarter keeps the others in the same order.
    guards.clear();
    std::string wantAfter;
    for (const auto &[prio, i] : expected)
        if (i % 4 != 0)
            wantAfter += std::to_string(i) + ',';
    trace.clear();
    reg.notify(Tick{0});
    CHECK(trace == wantAfter);
    CHECK(reg.size() == 45);
}

// ---------------------------------------------------------------------------
// Guard removal: scopes, containers, release, a guard outliving its registry.
// ---------------------------------------------------------------------------
void guardRemoval()
{
    int hits = 0;
    auto reg = std::make_unique<Reg>();
    {
        sigreg::Guard scoped = reg->addGuarded([&](const Tick &) { hits += 1; });
        reg->notify(Tick{0});
        CHECK(hits == 1);
        CHECK(reg->contains(scoped.id()));
    }
    reg->notify(Tick{0});
    CHECK(hits == 1);
    CHECK(reg->empty());

    sigreg::Guard kept = reg->addGuarded([&](const Tick &) { hits += 100; });
    const HandlerId keptId = kept.release();
    sigreg::Guard moved;
    {
        sigreg::Guard temp = reg->addGuarded([&](const Tick &) { hits += 10; });
        moved = std::move(temp);
    } // temp is empty: nothing removed
    reg->notify(Tick{0});
    CHECK(hits == 111);
    CHECK(reg->contains(keptId));
    CHECK(moved.reset());
    CHECK(!moved.reset());

    sigreg::Guard orphan = reg->addGuarded([&](const Tick &) { hits += 1000; });
    reg.reset(); // registry gone first
    CHECK(orphan.isActive());
    CHECK(!orphan.reset()); // harmless
}

// ---------------------------------------------------------------------------
// Error handler receives the failing handler's id.
// ---------------------------------------------------------------------------
void errorHandlerWithId()
{
    Reg reg;
    std::vector<std::pair<HandlerId, std::string>> reports;
    reg.setErrorHandler([&](const sigreg::HandlerFailure &f) {
        reports.emplace_back(f.handler, f.what ? std::string(f.what) : std::string("(non-std)"));
    });
    int quiet = 0;
    reg.add([&](const Tick &) { ++quiet; });
    const HandlerId a = reg.add([](const Tick &t) {
        if (t.n % 2 == 1)
            throw std::out_of_range("odd tick");
    });
    const HandlerId b = reg.add(-7, [](const Tick &) { throw std::string("a string, not an exception"); });
    for (std::uint32_t n = 0; n < 4; ++n)
        reg.notify(Tick{n});
    CHECK(quiet == 4);
    // Ticks 0..3: b fails every time, a on ticks 1 and 3; a runs before b.
    const std::vector<std::pair<HandlerId, std::string>> want{
        {b, "(non-std)"}, {a, "odd tick"}, {b, "(non-std)"}, {b, "(non-std)"}, {a, "odd tick"}, {b, "(non-std)"}};
    CHECK(reports == want);
    CHECK(reg.failureCount() == 6);
    CHECK(reg.unhandledFailureCount() == 0);
}

// ---------------------------------------------------------------------------
// Reentrant self-removal: a countdown handler that unregisters itself on its
// third call, and one that drops its own guard. Each carries a sentinel whose
// destructor must not run while that handler is still executing (the state a
// handler captured has to outlive its own removal). The counters are globals
// so that reading them does not go through the handler's own captures. (A
// removal may legitimately reclaim *other*, earlier removed handlers, hence
// one counter per sentinel.)
// ---------------------------------------------------------------------------
int g_destroyed[2] = {0, 0};
int g_destroyedDuringOwnCall = 0;

struct Sentinel {
    explicit Sentinel(int which) : index(which) {}
    Sentinel(const Sentinel &) = delete;
    ~Sentinel() { ++g_destroyed[index]; }
    int index;
};

void reentrantSelfRemoval()
{
    g_destroyed[0] = g_destroyed[1] = 0;
    g_destroyedDuringOwnCall = 0;
    int countdownCalls = 0;
    bool removedResult = false;
    int guardedCalls = 0;
    int tailCalls = 0;
    HandlerId countdown;
    auto ownGuard = std::make_unique<sigreg::Guard>();
    {
        Reg reg;
        countdown = reg.add([&, s = std::make_shared<Sentinel>(0)](const Tick &) {
            if (++countdownCalls == 3) {
                removedResult = reg.remove(countdown);
                g_destroyedDuringOwnCall += g_destroyed[0];
            }
        });
        *ownGuard = reg.addGuarded(1, [&, s = std::make_unique<Sentinel>(1)](const Tick &) {
            ++guardedCalls;
            ownGuard.reset(); // destroys the guard that owns this very handler
            g_destroyedDuringOwnCall += g_destroyed[1];
        });
        reg.add(-1, [&](const Tick &) { ++tailCalls; });

        for (std::uint32_t n = 0; n < 6; ++n)
            reg.notify(Tick{n});
        CHECK(removedResult);
        CHECK(countdownCalls == 3);
        CHECK(guardedCalls == 1);
        CHECK(tailCalls == 6);
        CHECK(reg.size() == 1);
        CHECK(!reg.contains(countdown));
    }
    CHECK(g_destroyedDuringOwnCall == 0);
    CHECK(g_destroyed[0] == 1); // each exactly once, by the end
    CHECK(g_destroyed[1] == 1);
}

// ---------------------------------------------------------------------------
// Removal waits (two threads): the handler runs for a while on a notifier
// thread; the main thread removes it meanwhile. Every event takes a stamp
// from one global sequence: the handler's end must precede remove()'s return.
// ---------------------------------------------------------------------------
void removalWaitsWithTwoThreads()
{
    for (int round = 0; round < 5; ++round) {
        Reg reg;
        std::atomic<std::uint64_t> clock{0};
        std::atomic<std::uint64_t> handlerEnd{0};
        std::atomic<bool> inside{false};
        std::atomic<int> calls{0};
        const HandlerId id = reg.add([&](const Tick &) {
            calls.fetch_add(1);
            inside.store(true);
            // Busy for a while (the duration only makes overlap likely; the
            // check below does not depend on it).
            const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(15);
            while (std::chrono::steady_clock::now() < until)
                std::this_thread::yield();
            handlerEnd.store(clock.fetch_add(1) + 1);
        });
        std::thread notifier([&] { reg.notify(Tick{0}); });
        while (!inside.load())
            std::this_thread::yield();
        const bool removed = reg.remove(id);
        const std::uint64_t removeReturn = clock.fetch_add(1) + 1;
        notifier.join();
        CHECK(removed);
        CHECK(handlerEnd.load() != 0);
        CHECK(handlerEnd.load() < removeReturn);
        reg.notify(Tick{1});
        CHECK(calls.load() == 1);
    }
}

// ---------------------------------------------------------------------------
// Zero allocations over 100,000 notifies (after this thread's first notify,
// which may take a per-thread record).
// ---------------------------------------------------------------------------
void zeroAllocations()
{
    // The counter must be live, or the check below proves nothing.
    const long probeBefore = g_news.load();
    ::operator delete(::operator new(32));
    CHECK(g_news.load() == probeBefore + 1);

    Reg reg;
    std::uint64_t sum = 0;
    for (int i = 0; i < 4; ++i)
        reg.add(i - 2, [&sum](const Tick &t) { sum += t.n; });
    reg.setErrorHandler([](const sigreg::HandlerFailure &) {});
    reg.notify(Tick{0}); // warm-up
    const long before = g_news.load();
    for (std::uint32_t n = 0; n < 100000; ++n)
        reg.notify(Tick{n});
    const long after = g_news.load();
    CHECK(after - before == 0);
    CHECK(sum == 4ull * (99999ull * 100000ull / 2));
}


// ===========================================================================
// sigreg::Bus: the typed event bus.
// ===========================================================================

struct BusNote {
    std::uint32_t n;
};
struct BusOther {
    std::uint32_t n;
};

// ---------------------------------------------------------------------------
// Handlers: channels on demand, the type deduced from the handler, order
// from a multimap (as above), emit to an unknown type a no-op.
// ---------------------------------------------------------------------------
void busHandlers()
{
    sigreg::Bus bus;
    bus.emit(BusNote{0}); // nobody listens: nothing happens, no channel
    CHECK(bus.typeCount() == 0);
    CHECK(!bus.hasChannel<BusNote>());

    std::multimap<int, int, std::greater<int>> expected;
    std::string trace;
    for (int i = 0; i < 12; ++i) {
        const int prio = (i * 7) % 5 - 2;
        expected.emplace(prio, i);
        bus.on(prio, [&trace, i](const BusNote &) { trace += std::to_string(i) + ','; });
    }
    CHECK(bus.typeCount() == 1);
    CHECK(bus.handlerCount<BusNote>() == 12);
    std::uint32_t otherSum = 0;
    const HandlerId other = bus.on([&](BusOther o) { otherSum += o.n; });
    CHECK(bus.typeCount() == 2);

    bus.emit(BusNote{1});
    std::string want;
    for (const auto &[prio, i] : expected)
        want += std::to_string(i) + ',';
    CHECK(trace == want);
    CHECK(otherSum == 0);
    bus.emit(BusOther{5});
    bus.emit(BusOther{6});
    CHECK(otherSum == 11);
    CHECK(bus.remove<BusOther>(other));
    bus.emit(BusOther{100});
    CHECK(otherSum == 11);
    CHECK(bus.typeCount() == 2); // channels stay
}

// ---------------------------------------------------------------------------
// Receivers: exact lag counts computed here from first principles (a
// receiver of capacity C holds the newest C events), for several capacities.
// ---------------------------------------------------------------------------
void busReceiverLag()
{
    sigreg::Bus bus;
    for (const std::size_t capacity : {std::size_t(1), std::size_t(4), std::size_t(5), std::size_t(512)}) {
        for (const std::uint32_t emits : {0u, 1u, 4u, 5u, 6u, 511u, 512u, 513u, 2000u}) {
            sigreg::Receiver<BusNote> rx = bus.subscribe<BusNote>(capacity);
            for (std::uint32_t i = 0; i < emits; ++i)
                bus.emit(BusNote{i});
            // Expected: a lag report of the oldest ones, then the newest `capacity`.
            std::vector<std::int64_t> want;
            const std::uint32_t kept = std::uint32_t(std::min<std::size_t>(emits, capacity));
            if (emits > kept)
                want.push_back(-std::int64_t(emits - kept));
            for (std::uint32_t i = emits - kept; i < emits; ++i)
                want.push_back(i);
            std::vector<std::int64_t> got;
            for (;;) {
                sigreg::ReceiveResult<BusNote> r = rx.tryReceive();
                if (r.status() == sigreg::ReceiveStatus::Received)
                    got.push_back(r->n);
                else if (r.status() == sigreg::ReceiveStatus::Lagged)
                    got.push_back(-std::int64_t(r.lagged()));
                else
                    break;
            }
            CHECK(got == want);
            CHECK(rx.missedCount() == emits - kept);
            rx.unsubscribe();
            CHECK(rx.tryReceive().status() == sigreg::ReceiveStatus::Closed);
        }
    }
    // A receiver does not see what was emitted before it subscribed.
    sigreg::Receiver<BusNote> late = bus.subscribe<BusNote>(8);
    CHECK(late.tryReceive().status() == sigreg::ReceiveStatus::Empty);
    bool threw = false;
    try {
        (void)bus.subscribe<BusNote>(0);
    } catch (const std::invalid_argument &) {
        threw = true;
    }
    CHECK(threw);
}

// ---------------------------------------------------------------------------
// Blocking receives across threads: a consumer thread waits in receive()
// for every event of a producer (capacity large enough: nothing lost), and
// a waiting receive() ends with Closed when the bus is destroyed. Order is
// checked with a global sequence of stamps: the consumer's Closed comes
// after the destruction started.
// ---------------------------------------------------------------------------
void busBlockingAcrossThreads()
{
    constexpr std::uint32_t kEvents = 5000;
    auto bus = std::make_unique<sigreg::Bus>();
    sigreg::Receiver<BusNote> rx = bus->subscribe<BusNote>(kEvents);
    std::atomic<std::uint64_t> clock{0};
    std::atomic<std::uint64_t> closedAt{0};
    std::atomic<std::uint32_t> inOrder{0};
    std::atomic<bool> otherStatus{false};
    std::thread consumer([&] {
        for (std::uint32_t expected = 0;; ++expected) {
            sigreg::ReceiveResult<BusNote> r = rx.receive();
            if (r.status() == sigreg::ReceiveStatus::Closed) {
                closedAt.store(clock.fetch_add(1) + 1);
                return;
            }
            if (r.status() != sigreg::ReceiveStatus::Received) {
                otherStatus.store(true);
                return;
            }
            if (r->n == expected)
                inOrder.fetch_add(1);
        }
    });
    std::thread producer([&] {
        for (std::uint32_t i = 0; i < kEvents; ++i)
            bus->emit(BusNote{i});
    });
    producer.join();
    // Give the consumer time to drain and block (only makes the case likely).
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (inOrder.load() < kEvents && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const std::uint64_t destroyedAt = clock.fetch_add(1) + 1;
    bus.reset();
    consumer.join();
    CHECK(!otherStatus.load());
    CHECK(inOrder.load() == kEvents);
    CHECK(closedAt.load() > destroyedAt);
    CHECK(rx.missedCount() == 0);

    // receiveFor() gives up when nothing comes.
    sigreg::Bus quiet;
    sigreg::Receiver<BusNote> idle = quiet.subscribe<BusNote>();
    CHECK(idle.receiveFor(std::chrono::milliseconds(5)).status() == sigreg::ReceiveStatus::TimedOut);
}

// ---------------------------------------------------------------------------
// Shutdown: ShutdownInitiated once, whoever calls first; emits allocate
// nothing (the process-wide counter) once warmed up.
// ---------------------------------------------------------------------------
void busShutdownAndNoAllocation()
{
    sigreg::Bus bus;
    std::atomic<int> shutdowns{0};
    bus.on([&](const sigreg::ShutdownInitiated &) { shutdowns.fetch_add(1); });
    std::atomic<int> firsts{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t)
        threads.emplace_back([&] { firsts.fetch_add(bus.initiateShutdown() ? 1 : 0); });
    for (std::thread &t : threads)
        t.join();
    CHECK(!bus.initiateShutdown());
    CHECK(firsts.load() == 1);
    CHECK(shutdowns.load() == 1);
    CHECK(bus.isShuttingDown());

    std::uint64_t sum = 0;
    bus.on([&sum](const BusNote &t) { sum += t.n; });
    sigreg::Receiver<BusNote> rx = bus.subscribe<BusNote>(16);
    bus.emit(BusNote{0}); // warm-up
    bus.emit(BusOther{0}); // a type without a channel: looked up once
    const long before = g_news.load();
    for (std::uint32_t n = 0; n < 10000; ++n) {
        bus.emit(BusNote{n});
        bus.emit(BusOther{n});
    }
    const long after = g_news.load();
    CHECK(after - before == 0);
    CHECK(sum == 9999ull * 10000ull / 2);
}

} // namespace

int main()
{
    struct Case {
        const char *name;
        void (*run)();
    };
    const Case cases[] = {
        {"prioritiesAndTies", prioritiesAndTies},
        {"guardRemoval", guardRemoval},
        {"errorHandlerWithId", errorHandlerWithId},
        {"reentrantSelfRemoval", reentrantSelfRemoval},
        {"removalWaitsWithTwoThreads", removalWaitsWithTwoThreads},
        {"zeroAllocations", zeroAllocations},
        {"busHandlers", busHandlers},
        {"busReceiverLag", busReceiverLag},
        {"busBlockingAcrossThreads", busBlockingAcrossThreads},
        {"busShutdownAndNoAllocation", busShutdownAndNoAllocation},
    };
    for (const Case &c : cases) {
        g_case = c.name;
        const int failedBefore = g_failed;
        try {
            c.run();
        } catch (const std::exception &e) {
            check(false, e.what(), "(exception)", 0);
        } catch (...) {
            check(false, "unknown exception", "(exception)", 0);
        }
        if (g_failed != failedBefore)
            std::printf("case %s: %d check(s) failed\n", c.name, g_failed - failedBefore);
    }
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
