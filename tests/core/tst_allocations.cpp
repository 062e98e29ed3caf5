// SPDX-License-Identifier: MIT
// Qt Test suite: notify() does not allocate (and takes no lock: the last
// test parks a writer inside the registry's mutex through this allocator).
//
// This executable replaces every form of the global operator new/delete
// (plain, array, nothrow, aligned, sized) with versions that count calls, per
// thread and in total, then checks that notifications allocate nothing:
// 100,000 notifies with 0, 1 and 8 handlers, from one thread and from two
// threads at once, with and without an error handler installed (but no
// failures). Only the per-thread counter of the notifying thread is used for
// the assertions, so allocations by other threads (Qt, the test runner) cannot
// disturb the result.
//
// The one documented exception: a thread's first notification takes a
// per-thread hazard record, allocating it if no record of an exited thread is
// free for reuse. Each measuring thread therefore does one warm-up notify
// first, and the test checks that the warm-up allocated at most once.
#include <sigreg/registry.h>

#include <QtTest/QTest>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <latch>
#include <memory>
#include <new>
#include <stdexcept>
#include <thread>
#include <vector>

#include "../support/replace_new.h"

namespace {

std::atomic<std::uint64_t> g_allocations{0};
constinit thread_local std::uint64_t t_allocations = 0;

void countOne() noexcept
{
    ++t_allocations;
    g_allocations.fetch_add(1, std::memory_order_relaxed);
}

} // namespace

namespace {
// Set by a thread to have its next allocation block until g_releaseBlocked:
// a writer that allocates while it holds the registry's mutex stays inside
// it meanwhile (see notifyProceedsWhileAWriterHoldsTheMutex).
constinit thread_local bool t_blockNextAllocation = false;
std::atomic<bool> g_blockedInAllocation{false};
std::atomic<bool> g_releaseBlocked{false};
} // namespace

// Every allocation is counted, none fails.
bool sigreg_test::beforeAllocation() noexcept
{
    countOne();
    if (t_blockNextAllocation) {
        t_blockNextAllocation = false;
        g_blockedInAllocation.store(true);
        while (!g_releaseBlocked.load())
            std::this_thread::yield();
    }
    return true;
}


namespace {

struct Event {
    int value = 0;
};
using Reg = sigreg::Registry<Event>;

/// Keeps the compiler from eliding an allocation whose result is unused.
template <class T>
void escape(T *p)
{
    asm volatile("" : : "g"(p) : "memory");
}

/// Allocations made by the calling thread while running `f`.
template <class F>
std::uint64_t allocationsDuring(F &&f)
{
    const std::uint64_t before = t_allocations;
    f();
    return t_allocations - before;
}

} // namespace

class tst_Allocations : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void counterSeesEveryForm();
    void notifyAllocatesNothing_data();
    void notifyAllocatesNothing();
    void nestedNotifyAllocatesNothing();
    void throwingHandlerPathWorks();
    void notifyProceedsWhileAWriterHoldsTheMutex();
    void outOfOrderWritesReuseReclaimedSnapshots();
    void spareSnapshotsShrinkWithTheRegistry();
};

void tst_Allocations::counterSeesEveryForm()
{
    // Without this, a counter that never counts would pass every test below.
    QCOMPARE(allocationsDuring([] { ::operator delete(::operator new(16)); }), std::uint64_t(1));
    QCOMPARE(allocationsDuring([] { ::operator delete[](::operator new[](16)); }), std::uint64_t(1));
    QCOMPARE(allocationsDuring([] { ::operator delete(::operator new(16, std::nothrow)); }), std::uint64_t(1));
    QCOMPARE(allocationsDuring([] { ::operator delete[](::operator new[](16, std::nothrow)); }), std::uint64_t(1));
    QCOMPARE(allocationsDuring([] {
                 ::operator delete(::operator new(100, std::align_val_t(64)), std::align_val_t(64));
             }),
             std::uint64_t(1));
    QCOMPARE(allocationsDuring([] {
                 ::operator delete[](::operator new[](100, std::align_val_t(128)), std::align_val_t(128));
             }),
             std::uint64_t(1));
    QCOMPARE(allocationsDuring([] {
                 ::operator delete(::operator new(8, std::align_val_t(256), std::nothrow), std::align_val_t(256));
             }),
             std::uint64_t(1));
    // New-expressions, including an over-aligned type (like the library's
    // 64-byte aligned per-thread records and snapshots).
    struct alignas(64) Wide {
        char bytes[64];
    };
    QCOMPARE(allocationsDuring([] {
                 auto p = std::make_unique<Wide>();
                 escape(p.get());
                 QCOMPARE(reinterpret_cast<std::uintptr_t>(p.get()) % 64, std::uintptr_t(0));
             }),
             std::uint64_t(1));
    QCOMPARE(allocationsDuring([] {
                 std::vector<int> v(100);
                 escape(v.data());
             }),
             std::uint64_t(1));
    // And the library's own allocations are seen: registering allocates.
    Reg reg;
    QVERIFY(allocationsDuring([&] { reg.add([](const Event &) {}); }) >= 1);
}

void tst_Allocations::notifyAllocatesNothing_data()
{
    QTest::addColumn<int>("handlers");
    QTest::addColumn<int>("threads");
    QTest::addColumn<bool>("errorHandler");
    for (int threads : {1, 2}) {
        for (int handlers : {0, 1, 8}) {
            for (bool sink : {false, true})
                QTest::addRow("%d handlers, %d thread(s)%s", handlers, threads, sink ? ", error handler" : "")
                    << handlers << threads << sink;
        }
    }
}

void tst_Allocations::notifyAllocatesNothing()
{
    QFETCH(int, handlers);
    QFETCH(int, threads);
    QFETCH(bool, errorHandler);
    constexpr int kNotifies = 100000;

    Reg reg;
    std::atomic<std::uint64_t> work{0}; // handlers do observable work
    for (int i = 0; i < handlers; ++i)
        reg.add(i % 3 - 1, [&work](const Event &e) { work.fetch_add(std::uint64_t(e.value), std::memory_order_relaxed); });
    std::atomic<std::uint64_t> failures{0};
    if (errorHandler)
        reg.setErrorHandler([&failures](const sigreg::HandlerFailure &) { failures.fetch_add(1); });

    std::vector<std::uint64_t> warmup(std::size_t(threads), ~std::uint64_t(0));
    std::vector<std::uint64_t> measured(std::size_t(threads), ~std::uint64_t(0));
    std::latch warmedUp(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            // First notify on this thread: may take a hazard record (once).
            warmup[std::size_t(t)] = allocationsDuring([&] { reg.notify(Event{1}); });
            warmedUp.arrive_and_wait(); // all threads measure at the same time
            measured[std::size_t(t)] = allocationsDuring([&] {
                for (int k = 0; k < kNotifies; ++k)
                    reg.notify(Event{1});
            });
        });
    }
    for (std::thread &th : pool)
        th.join();

    for (int t = 0; t < threads; ++t) {
        QVERIFY2(warmup[std::size_t(t)] <= 1, "a thread's first notify may allocate its record, at most once");
        QCOMPARE(measured[std::size_t(t)], std::uint64_t(0));
    }
    // The notifications did happen and reached every handler.
    QCOMPARE(work.load(), std::uint64_t(threads) * std::uint64_t(kNotifies + 1) * std::uint64_t(handlers));
    QCOMPARE(failures.load(), std::uint64_t(0));
    QCOMPARE(reg.failureCount(), std::uint64_t(0));
}

void tst_Allocations::nestedNotifyAllocatesNothing()
{
    // Nesting within the inline hazard levels never allocates; deeper nesting
    // allocates an overflow chunk once per thread record, then never again.
    for (int depth : {4, 12}) {
        Reg reg;
        int calls = 0;
        reg.add([&](const Event &e) {
            ++calls;
            if (e.value > 1)
                reg.notify(Event{e.value - 1});
        });
        std::uint64_t warm = 0, measured = 0;
        std::thread th([&] {
            warm = allocationsDuring([&] { reg.notify(Event{depth}); });
            measured = allocationsDuring([&] {
                for (int k = 0; k < 10000; ++k)
                    reg.notify(Event{depth});
            });
        });
        th.join();
        QVERIFY2(warm <= 2, "record + at most one overflow chunk");
        QCOMPARE(measured, std::uint64_t(0));
        QCOMPARE(calls, depth * 10001);
    }
}

void tst_Allocations::throwingHandlerPathWorks()
{
    // The failure path may allocate (the exception object, the error handler's
    // own work); it must just work and be counted.
    Reg reg;
    int after = 0;
    int reported = 0;
    reg.add([](const Event &) { throw std::runtime_error("failure on the allocation-counted path"); });
    reg.add([](const Event &) { throw 7; });
    reg.add(-1, [&](const Event &) { ++after; });
    for (int i = 0; i < 500; ++i)
        reg.notify(Event{});
    reg.setErrorHandler([&](const sigreg::HandlerFailure &f) {
        reported += f.exception ? 1 : 0;
    });
    for (int i = 0; i < 500; ++i)
        reg.notify(Event{});
    QCOMPARE(after, 1000);
    QCOMPARE(reported, 1000);
    QCOMPARE(reg.failureCount(), std::uint64_t(2000));
    QCOMPARE(reg.unhandledFailureCount(), std::uint64_t(1000));

    // Having gone through the failure path leaves nothing that makes later
    // successful notifications allocate.
    reg.clear();
    reg.add([&](const Event &) { ++after; });
    reg.notify(Event{}); // this thread is long warmed up; still, be fair
    QCOMPARE(allocationsDuring([&] {
                 for (int i = 0; i < 10000; ++i)
                     reg.notify(Event{});
             }),
             std::uint64_t(0));
    QCOMPARE(after, 1000 + 10001);
}

void tst_Allocations::notifyProceedsWhileAWriterHoldsTheMutex()
{
    // notify() takes no lock (nor does size()): a writer stopped inside the
    // registry's mutex must not hold up other threads' notifications. A
    // remove() allocates nothing before it takes the mutex and allocates its
    // next snapshot under it, so blocking the writer thread's next
    // allocation parks it there. If notify() took the writer's mutex, the
    // notifier would wait for the writer, which waits for this test: the
    // watchdog below turns that deadlock into a failure.
    Reg reg;
    std::atomic<int> calls{0};
    const sigreg::HandlerId victim = reg.add([&calls](const Event &) { calls.fetch_add(1); });
    reg.add(-1, [&calls](const Event &) { calls.fetch_add(1); });
    reg.notify(Event{}); // this thread's record, taken before anything blocks
    calls.store(0);

    g_blockedInAllocation.store(false);
    g_releaseBlocked.store(false);
    std::atomic<bool> removed{false};
    std::thread writer([&] {
        t_blockNextAllocation = true;
        removed.store(reg.remove(victim));
    });
    const auto watchdog = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!g_blockedInAllocation.load() && std::chrono::steady_clock::now() < watchdog)
        std::this_thread::yield();
    QVERIFY2(g_blockedInAllocation.load(), "the writer never allocated inside remove()");

    constexpr int kNotifies = 1000;
    std::atomic<bool> notified{false};
    std::size_t sizeSeen = 0;
    bool emptySeen = true;
    std::thread notifier([&] {
        for (int i = 0; i < kNotifies; ++i)
            reg.notify(Event{});
        sizeSeen = reg.size();
        emptySeen = reg.empty();
        notified.store(true);
    });
    while (!notified.load() && std::chrono::steady_clock::now() < watchdog)
        std::this_thread::yield();
    const bool notifiedWhileWriterInside = notified.load();
    const bool writerStillInside = !removed.load();
    g_releaseBlocked.store(true); // lets both go on, also on failure
    notifier.join();
    writer.join();

    QVERIFY2(writerStillInside, "the writer finished before the notifications: nothing was tested");
    QVERIFY2(notifiedWhileWriterInside, "notify() waited for a writer holding the registry's mutex");
    QCOMPARE(calls.load(), 2 * kNotifies); // the removal was not published yet
    QCOMPARE(sizeSeen, std::size_t(2));
    QVERIFY(!emptySeen);
    QVERIFY(removed.load());
    reg.notify(Event{});
    QCOMPARE(calls.load(), 2 * kNotifies + 1);
}

QTEST_GUILESS_MAIN(tst_Allocations)
void tst_Allocations::outOfOrderWritesReuseReclaimedSnapshots()
{
    // An add that does not go last, and every removal, copies the handler
    // array into a new snapshot. The snapshots reclaimed after such writes
    // are reused for the next copies: in steady state an add allocates its
    // handler only, and a removal nothing (a run of writes to a large
    // registry would otherwise return each copy to malloc and fault the next
    // one in).
    Reg reg;
    std::atomic<int> calls{0};
    const auto handler = [&calls](const Event &) { calls.fetch_add(1, std::memory_order_relaxed); };
    for (int i = 0; i < 100; ++i)
        reg.add(i < 50 ? 2 : 0, handler);
    const auto round = [&] {
        const sigreg::HandlerId middle = reg.add(1, handler); // between the two halves: a copy
        QVERIFY(reg.remove(middle));                          // a copy
    };
    for (int i = 0; i < 16; ++i)
        round(); // warm-up: fills the spares and the writer's lists
    constexpr int kRounds = 1000;
    const std::uint64_t allocations = allocationsDuring([&] {
        for (int i = 0; i < kRounds; ++i)
            round();
    });
    QCOMPARE(allocations, std::uint64_t(kRounds)); // the handlers' nodes only
    reg.notify(Event{1});
    QCOMPARE(calls.load(), 100);
    QCOMPARE(reg.size(), std::size_t(100));
}

void tst_Allocations::spareSnapshotsShrinkWithTheRegistry()
{
    // The reused snapshots are bounded by the registry's current size: after
    // it shrank, the large ones are freed, not kept for good.
    sigreg::detail::RegistryCore core;
    const auto add = [&core](int priority) {
        return core.add(sigreg::detail::makeNode<Event>([](const Event &) {}), priority);
    };
    for (int i = 0; i < 2000; ++i)
        add(int((std::uint32_t(i) * 2654435761u) >> 20)); // pseudo-random: most adds copy
    QVERIFY2(core.spareCapacity() > 2000, "no snapshot was kept for reuse: nothing to check");
    QVERIFY(core.spareCapacity() <= sigreg::detail::RegistryCore::kSpareBlocks * (4 * 2000 + 64));
    QCOMPARE(core.clear(true), std::size_t(2000));
    // The handlers have gone; so have the spares made for them.
    QVERIFY2(core.spareCapacity() <= sigreg::detail::RegistryCore::kSpareBlocks * 64,
             qPrintable(QStringLiteral("%1 entries kept after clear()").arg(core.spareCapacity())));
    for (int i = 0; i < 10; ++i)
        add(-i); // still works, from small blocks
    QCOMPARE(core.size(), std::size_t(10));
}

#include "tst_allocations.moc"
