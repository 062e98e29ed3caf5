// SPDX-License-Identifier: MIT
// Qt Test suite: exception safety of the writer operations when an
// allocation fails.
//
// The registry documents that add()/addGuarded()/batches/remove()/clear()/
// setErrorHandler() may throw std::bad_alloc. Whatever a writer does when an
// allocation fails, the registry must stay usable and consistent (the basic
// guarantee), and add() must not half-register a handler:
//   * a handler is registered (contains(id), counted by size()) exactly when
//     notify() calls it;
//   * a failed add() registers nothing and destroys the handler it was given;
//   * every handler object is destroyed exactly once (never leaked, never
//     twice) by the time the registry is gone;
//   * nothing is read after being freed (ASan turns that into a hard error).
//
// Method: this executable replaces the global operator new (all forms) with
// one that can be armed, per thread, to fail the k-th allocation from now. For
// each operation the test sweeps k = 0, 1, 2, ... over every allocation the
// operation makes, on a fresh registry each time, and checks the invariants
// after each attempt. Guard::reset()/resetNoWait() and guard destruction are
// noexcept and documented to terminate on allocation failure, so they are not
// swept here.
#include <QtTest/QTest>

#include <sigreg/registry.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "../support/replace_new.h"

namespace {

/// Allocations left before the armed failure; negative: disarmed.
constinit thread_local long t_failCountdown = -1;

} // namespace

// Fails the armed allocation (one failure per arming).
bool sigreg_test::beforeAllocation() noexcept
{
    if (t_failCountdown == 0) {
        t_failCountdown = -1;
        return false;
    }
    if (t_failCountdown > 0)
        --t_failCountdown;
    return true;
}


namespace {

struct Event {
    int value = 0;
};
using Reg = sigreg::Registry<Event>;
using sigreg::HandlerId;

struct Life {
    int calls = 0;
    int destroyed = 0;
};

/// A handler (or error handler) that reports calls and destruction of its
/// registered instance.
struct Probe {
    Life *life;
    explicit Probe(Life *l) : life(l) {}
    Probe(Probe &&o) noexcept : life(std::exchange(o.life, nullptr)) {}
    Probe(const Probe &) = delete;
    ~Probe()
    {
        if (life)
            ++life->destroyed;
    }
    void operator()(const Event &) const { ++life->calls; }
    void operator()(const sigreg::HandlerFailure &) const { ++life->calls; }
};

/// Arms the failure of the k-th allocation made by this thread from now on.
void armFailure(long k)
{
    t_failCountdown = k;
}
/// Disarms; returns whether the armed failure happened.
bool disarmFailure()
{
    const bool happened = t_failCountdown < 0;
    t_failCountdown = -1;
    return happened;
}

constexpr long kMaxSweep = 64;

} // namespace

class tst_AllocationFailure : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void injectorWorks();
    void batchRemoveAfterFailedCommit();
    void setErrorHandler_data();
    void setErrorHandler();
    void writerOperation_data();
    void writerOperation();
};

void tst_AllocationFailure::injectorWorks()
{
    // The sweep below is meaningless unless failures are really injected.
    armFailure(0);
    QVERIFY_THROWS_EXCEPTION(std::bad_alloc, (void)::operator new(8));
    QVERIFY(disarmFailure());
    armFailure(1);
    void *first = ::operator new(8);
    QVERIFY(::operator new(8, std::align_val_t(64), std::nothrow) == nullptr);
    QVERIFY(disarmFailure());
    ::operator delete(first);
    Reg reg;
    armFailure(0);
    QVERIFY_THROWS_EXCEPTION(std::bad_alloc, reg.add([](const Event &) {}));
    QVERIFY(disarmFailure());
    QVERIFY(reg.empty());
}

void tst_AllocationFailure::writerOperation_data()
{
    QTest::addColumn<QString>("op");
    // A use-after-free or double free ends the whole process, so the rows
    // whose failure mode (if the library is wrong) is a crash come last: the
    // rows before them still get reported.
    QTest::newRow("add (appended in place)") << "add append";
    QTest::newRow("batch add") << "batch add";
    QTest::newRow("remove") << "remove";
    QTest::newRow("removeNoWait") << "removeNoWait";
    QTest::newRow("batch add+remove") << "batch mixed";
    QTest::newRow("clear") << "clear";
    QTest::newRow("remove with reclamation pending") << "remove pending";
    QTest::newRow("add (inserted in front: new snapshot)") << "add front";
    QTest::newRow("addGuarded") << "addGuarded";
    // The same with reclaimed snapshots kept for reuse: the copy takes one.
    QTest::newRow("add (in front, spare blocks)") << "add front spares";
    QTest::newRow("remove (spare blocks)") << "remove spares";
    QTest::newRow("batch add+remove (spare blocks)") << "batch mixed spares";
}

void tst_AllocationFailure::writerOperation()
{
    QFETCH(QString, op);
    const bool spares = op.endsWith(QLatin1String(" spares"));
    if (spares)
        op.chop(7);
    // add()/addGuarded() return the id only on success, so a failed call
    // must register nothing (strong guarantee). A batch's ids are known
    // before commit(); for commit() the basic guarantee is checked.
    const bool adds = op.startsWith("add");
    const bool batchAdds = op.startsWith("batch");

    bool completedWithoutFailure = false;
    long injected = 0; // attempts in which the armed allocation failed
    for (long k = 0; k < kMaxSweep && !completedWithoutFailure; ++k) {
        // Handlers 0..2 exist before the operation; 3 removes 0 and 1 from
        // inside a notify (for "remove pending"); 4 is the one being added.
        std::vector<Life> lives(5);
        std::vector<std::optional<HandlerId>> ids(5);
        bool threw = false;
        std::optional<sigreg::Guard> guard;
        {
            Reg reg;
            for (int i = 0; i < 3; ++i)
                ids[std::size_t(i)] = reg.add(Probe(&lives[std::size_t(i)]));
            if (op == "remove pending") {
                // Removals from inside a notify leave retired snapshots and
                // removed handlers for the next reclamation to free.
                ids[3] = reg.add(-1, [&reg, &ids](const Event &) {
                    if (reg.contains(*ids[0])) {
                        reg.remove(*ids[0]);
                        reg.remove(*ids[1]);
                    }
                });
                reg.notify(Event{});
                QVERIFY(reg.pendingReclamation() > 0);
            }

            if (spares) {
                // Each removal copies the snapshot, and its reclamation keeps
                // the old one as a spare (nothing reads it).
                for (int i = 0; i < 8; ++i)
                    reg.remove(reg.add(-5, [](const Event &) {}));
            }

            armFailure(k);
            try {
                if (op == "add append")
                    ids[4] = reg.add(Probe(&lives[4]));
                else if (op == "add front")
                    ids[4] = reg.add(10, Probe(&lives[4]));
                else if (op == "addGuarded") {
                    guard.emplace(reg.addGuarded(10, Probe(&lives[4])));
                    ids[4] = guard->id();
                } else if (op == "batch add") {
                    auto batch = reg.batch();
                    ids[4] = batch.add(10, Probe(&lives[4])); // the id is known before commit()
                    (void)batch.commit();
                } else if (op == "remove")
                    reg.remove(*ids[1]);
                else if (op == "removeNoWait")
                    reg.removeNoWait(*ids[1]);
                else if (op == "remove pending")
                    reg.remove(*ids[2]);
                else if (op == "batch mixed") {
                    auto batch = reg.batch();
                    ids[4] = batch.add(10, Probe(&lives[4]));
                    batch.remove(*ids[0]);
                    (void)batch.commit();
                } else if (op == "clear")
                    reg.clear();
            } catch (const std::bad_alloc &) {
                threw = true;
            }
            const bool failed = disarmFailure();
            completedWithoutFailure = !failed;
            injected += failed ? 1 : 0;
            QVERIFY2(!threw || failed, "bad_alloc without an injected failure");

            // Consistency: registered exactly when called.
            for (Life &l : lives)
                l.calls = 0;
            reg.notify(Event{});
            std::size_t called = 0;
            for (std::size_t i = 0; i < lives.size(); ++i) {
                if (lives[i].calls > 1)
                    QFAIL(qPrintable(QStringLiteral("k=%1: handler %2 called %3 times by one notify")
                                         .arg(k).arg(i).arg(lives[i].calls)));
                called += std::size_t(lives[i].calls);
                if (i == 3) { // the lambda of "remove pending": never removed
                    if (ids[3] && !reg.contains(*ids[3]))
                        QFAIL(qPrintable(QStringLiteral("k=%1: an untouched handler is no longer registered").arg(k)));
                    continue;
                }
                if (ids[i] && bool(lives[i].calls) != reg.contains(*ids[i]))
                    QFAIL(qPrintable(QStringLiteral("k=%1 (%2): handler %3 %4 registered but %5 called")
                                         .arg(k)
                                         .arg(threw ? "threw" : "returned")
                                         .arg(i)
                                         .arg(reg.contains(*ids[i]) ? "is" : "is not")
                                         .arg(lives[i].calls ? "is" : "is not")));
            }
            if (op == "remove pending")
                ++called; // handler 3 is a lambda, not a Probe: it is registered and ran
            if (reg.size() != called)
                QFAIL(qPrintable(QStringLiteral("k=%1 (%2): size() is %3 but notify called %4 handlers")
                                     .arg(k).arg(threw ? "threw" : "returned").arg(reg.size()).arg(called)));
            if (adds && threw) {
                // A failed add registers nothing and has destroyed the handler.
                if (lives[4].calls != 0)
                    QFAIL(qPrintable(QStringLiteral("k=%1: add threw, yet the handler is called").arg(k)));
                if (lives[4].destroyed != 1)
                    QFAIL(qPrintable(QStringLiteral("k=%1: add threw; the handler was destroyed %2 times, expected 1")
                                         .arg(k).arg(lives[4].destroyed)));
            }
            if (adds && !threw && lives[4].calls != 1)
                QFAIL(qPrintable(QStringLiteral("k=%1: add returned, yet the handler is not called").arg(k)));
            guard.reset();
        }
        // No leak, no double destruction.
        for (std::size_t i = 0; i < lives.size(); ++i) {
            const bool existed = i < 3 || (i == 4 && (adds || batchAdds));
            const int expected = existed ? 1 : 0;
            if (lives[i].destroyed != expected)
                QFAIL(qPrintable(QStringLiteral("k=%1 (%2): handler %3 destroyed %4 times, expected %5")
                                     .arg(k)
                                     .arg(threw ? "threw" : "returned")
                                     .arg(i)
                                     .arg(lives[i].destroyed)
                                     .arg(expected)));
        }
    }
    QVERIFY2(completedWithoutFailure, "the sweep did not reach an attempt without failure");
    if (spares && op == "remove") {
        // Its copy takes a spare block and its bookkeeping has room: a
        // removal in steady state allocates nothing, so nothing can fail.
        QVERIFY2(injected == 0, "a removal allocated although a spare block was there");
        return;
    }
    QVERIFY2(injected > 0, "the operation allocated nothing: the sweep tested nothing");
}

void tst_AllocationFailure::setErrorHandler_data()
{
    QTest::addColumn<bool>("replacing");
    QTest::newRow("first install") << false;
    QTest::newRow("replace") << true;
}

void tst_AllocationFailure::setErrorHandler()
{
    QFETCH(bool, replacing);
    bool completedWithoutFailure = false;
    long injected = 0; // attempts in which the armed allocation failed
    for (long k = 0; k < kMaxSweep && !completedWithoutFailure; ++k) {
        Life first, second;
        bool threw = false;
        {
            Reg reg;
            reg.add([](const Event &) { throw std::runtime_error("x"); });
            if (replacing)
                reg.setErrorHandler(Probe(&first));
            armFailure(k);
            try {
                reg.setErrorHandler(Probe(&second));
            } catch (const std::bad_alloc &) {
                threw = true;
            }
            completedWithoutFailure = !disarmFailure();
            injected += completedWithoutFailure ? 0 : 1;
            reg.notify(Event{});
            // At most one error handler is installed: the old one (failed
            // replacement), the new one, or none (failed first install).
            const int sinkCalls = first.calls + second.calls;
            if (sinkCalls + int(reg.unhandledFailureCount()) != 1 || (replacing && sinkCalls != 1))
                QFAIL(qPrintable(QStringLiteral("k=%1: %2 error handlers called, %3 unhandled")
                                     .arg(k).arg(sinkCalls).arg(reg.unhandledFailureCount())));
            if (!threw && second.calls != 1)
                QFAIL(qPrintable(QStringLiteral("k=%1: setErrorHandler returned but the new handler is not installed").arg(k)));
        }
        const int expectedFirst = replacing ? 1 : 0;
        if (first.destroyed != expectedFirst || second.destroyed != 1)
            QFAIL(qPrintable(QStringLiteral("k=%1 (%2): error handlers destroyed %3 and %4 times, expected %5 and 1")
                                 .arg(k)
                                 .arg(threw ? "threw" : "returned")
                                 .arg(first.destroyed)
                                 .arg(second.destroyed)
                                 .arg(expectedFirst)));
    }
    QVERIFY(completedWithoutFailure);
    QVERIFY2(injected > 0, "the operation allocated nothing: the sweep tested nothing");
}

void tst_AllocationFailure::batchRemoveAfterFailedCommit()
{
    // A commit that fails leaves the batch as it was, so that a later
    // remove() of an id the batch added still finds that add (it used to
    // miss it when the failed commit had re-sorted the adds by priority:
    // the handler then got registered although removed). Every allocation
    // of the commit in turn.
    bool sawFailure = false;
    for (long k = 0;; ++k) {
        QVERIFY2(k < kMaxSweep, "the sweep does not end");
        Reg reg;
        reg.notify(Event{}); // the thread's hazard record, unarmed
        int lowCalls = 0, highCalls = 0;
        auto batch = reg.batch();
        const HandlerId low = batch.add(0, [&](const Event &) { ++lowCalls; });
        const HandlerId high = batch.add(10, [&](const Event &) { ++highCalls; });
        bool failed = false;
        armFailure(k);
        try {
            (void)batch.commit();
        } catch (const std::bad_alloc &) {
            failed = true;
        }
        if (!disarmFailure())
            break; // past the commit's last allocation
        if (!failed)
            continue; // a failure the commit absorbed (std::stable_sort's nothrow buffer)
        sawFailure = true;
        batch.remove(low);
        const sigreg::BatchResult r = batch.commit();
        QCOMPARE(r.added, std::size_t(1));
        QVERIFY(!reg.contains(low));
        QVERIFY(reg.contains(high));
        reg.notify(Event{});
        QCOMPARE(lowCalls, 0);
        QCOMPARE(highCalls, 1);
    }
    QVERIFY(sawFailure);
}

QTEST_GUILESS_MAIN(tst_AllocationFailure)
#include "tst_allocationfailure.moc"
