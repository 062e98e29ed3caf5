// SPDX-License-Identifier: MIT
// Qt Test suite: QtRegistry::notifyAsync() and notifySequential() when an
// allocation on the notifying thread fails, and a marshalled call following
// its context to a new thread when an allocation on the forwarding thread
// fails (followingAMovedContextNeverLosesACallSilently).
//
// Both allocate on their way (the event's shared copy, the join or the
// sequential run, the list of pending futures, the request to Sigreg's
// completion thread). When one of those allocations fails, the promise of the
// API still holds:
//   * the call either throws std::bad_alloc or returns a future, and that
//     future finishes once the handlers' futures have finished: it never
//     hangs, whatever was not awaited;
//   * a handler future that could not be awaited is reported (with its
//     handler's id), never dropped silently, and no handler is reported twice.
//
// Method: this executable replaces the global operator new with one that can
// be armed, per thread, to fail the k-th allocation from now. Only the
// notifying thread is armed, so Sigreg's completion thread runs normally. The
// test sweeps k = 0, 1, 2, ... over every allocation one call makes, on a
// fresh registry each time, until a round makes fewer than k + 1.
#include <QtCore/QCoreApplication>
#include <QtCore/QFuture>
#include <QtCore/QPromise>
#include <QtTest/QTest>

#include <sigreg/qt/qtregistry.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <vector>

#include "../support/replace_new.h"
#include "qt_test_support.h"

namespace {

/// The event: large enough that Sigreg's shared copy of it bypasses its
/// block pool (blocks up to 1 KiB are recycled, not freed), so that ASan
/// sees a read of a freed copy.
struct Event {
    int value = 0;
    unsigned char pad[2048] = {};
};

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

/// Arms the failure of the k-th allocation from now on this thread, until
/// disarmed; fired() tells whether it happened.
class Arm {
public:
    explicit Arm(long k) noexcept { t_failCountdown = k; }
    ~Arm() { disarm(); }
    void disarm() noexcept
    {
        if (t_failCountdown >= 0)
            m_unfired = true;
        t_failCountdown = -1;
    }
    bool fired() const noexcept { return !m_unfired; }

private:
    bool m_unfired = false;
};

/// Handler ids reported through the error handler (any thread).
struct Reports {
    std::mutex mutex;
    std::vector<std::uint64_t> ids;
    void add(std::uint64_t id)
    {
        std::lock_guard lock(mutex);
        ids.push_back(id);
    }
    std::vector<std::uint64_t> take()
    {
        std::lock_guard lock(mutex);
        return ids;
    }
};

} // namespace

class tst_QtAllocationFailure : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void joinNeverHangs_data();
    void joinNeverHangs();
    void followingAMovedContextNeverLosesACallSilently();
};

void tst_QtAllocationFailure::joinNeverHangs_data()
{
    QTest::addColumn<bool>("sequential");
    QTest::addColumn<int>("finishedInWalk");
    // How many of the three async handlers' futures a later (sync) handler
    // finishes during the walk, if started: 0 leaves all of them for the
    // completion thread, 1 splits them between the walk's end and that
    // thread, 3 leaves none pending when the walk ends. notifySequential()
    // starts only the first during the walk (the others wait for it), so
    // there 0 leaves it pending and 1 finishes it before the walk ends.
    QTest::newRow("async, all pending") << false << 0;
    QTest::newRow("async, one finished in the walk") << false << 1;
    QTest::newRow("async, all finished in the walk") << false << 3;
    QTest::newRow("sequential, first pending") << true << 0;
    QTest::newRow("sequential, first finished in the walk") << true << 1;
}

void tst_QtAllocationFailure::joinNeverHangs()
{
    QFETCH(bool, sequential);
    QFETCH(int, finishedInWalk);
    constexpr int kAsync = 3;
    // A thread's first notify takes its hazard record, an allocation that is
    // documented to terminate when it fails (notify() is noexcept): take it
    // now, unarmed.
    sigreg::QtRegistry<int> warmUp;
    warmUp.notify(0);
    bool sawThrow = false, sawReport = false;
    long k = 0;
    for (;; ++k) {
        QVERIFY2(k < 1000, "the sweep does not end");
        // Made before arming: the promises are the handlers', not Sigreg's.
        std::vector<std::shared_ptr<QPromise<void>>> promises;
        for (int i = 0; i < kAsync; ++i)
            promises.push_back(std::make_shared<QPromise<void>>());
        std::atomic<int> started{0};
        // Where each async handler saw the event: Sigreg's shared copy, which
        // must stay readable while the handler's future runs, also when a
        // failed allocation left that future unawaited (ASan checks in CI).
        std::array<std::atomic<const Event *>, kAsync> seen{};
        Reports reports;
        reports.ids.reserve(16); // the error handler allocates nothing while armed
        std::set<std::uint64_t> asyncIds;

        sigreg::QtRegistry<Event> reg;
        reg.setErrorHandler([&reports](const sigreg::HandlerFailure &f) { reports.add(f.handler.value()); });
        for (int i = 0; i < kAsync; ++i) {
            const sigreg::HandlerId id = reg.add(10 - i, [&promises, &started, &seen, i](const Event &e) {
                seen[std::size_t(i)].store(&e, std::memory_order_release);
                ++started;
                promises[std::size_t(i)]->start();
                return promises[std::size_t(i)]->future();
            });
            asyncIds.insert(id.value());
        }
        reg.add(0, [&promises, finishedInWalk](const Event &) {
            // Not armed: the sweep is over Sigreg's allocations. (When Qt
            // cannot allocate the call-out event of a finish, a
            // QFutureWatcher already watching the future never hears of it:
            // Qt's own limit, which no library above it can see.)
            const long armed = t_failCountdown;
            t_failCountdown = -1;
            for (int i = 0; i < finishedInWalk; ++i) {
                if (promises[std::size_t(i)]->future().isStarted())
                    promises[std::size_t(i)]->finish();
            }
            t_failCountdown = armed;
        });

        QFuture<void> joined;
        bool threw = false;
        Arm arm(k);
        try {
            const Event event{7};
            joined = sequential ? reg.notifySequential(event) : reg.notifyAsync(event);
        } catch (const std::bad_alloc &) {
            threw = true;
        }
        arm.disarm();
        const bool fired = arm.fired();

        // Finish every handler future that is running (notifySequential()
        // starts the later ones on the completion thread as their
        // predecessors finish); the join must then finish, whatever the
        // failed allocation left unawaited.
        int badReads = 0;
        const auto finishStarted = [&promises, &joined, &seen, &badReads] {
            for (std::size_t i = 0; i < promises.size(); ++i) {
                auto &p = promises[i];
                if (p->future().isStarted() && !p->future().isFinished()) {
                    // The handler's work reads the event, then ends.
                    const Event *e = seen[i].load(std::memory_order_acquire);
                    if (!e || e->value != 7)
                        ++badReads;
                    p->finish();
                }
            }
            return joined.isFinished();
        };
        if (!threw)
            QTRY_VERIFY2_WITH_TIMEOUT(finishStarted(), qPrintable(QStringLiteral("k = %1").arg(k)), 20000);
        else
            finishStarted();
        QVERIFY(threw || !joined.isCanceled());
        QCOMPARE(badReads, 0);

        // Reports come from this thread or the completion thread; once the
        // join finished, every future it awaited has been reported on (a
        // report precedes the arrival at the join). Without a failure no
        // handler is reported at all.
        const std::vector<std::uint64_t> ids = reports.take();
        std::set<std::uint64_t> unique(ids.begin(), ids.end());
        QCOMPARE(unique.size(), ids.size()); // none twice
        for (std::uint64_t id : ids)
            QVERIFY(asyncIds.count(id) == 1); // only the async handlers
        if (!fired)
            QVERIFY(ids.empty());
        QVERIFY(started.load() <= kAsync);
        sawThrow |= threw;
        sawReport |= !ids.empty();
        if (!fired)
            break; // k is past the last allocation the call makes
    }
    QVERIFY2(k > 0, "the call allocated nothing: the sweep tested nothing");
    // The sweep reached the failure paths it is for: at least one failure
    // surfaced somewhere (a throw, or a reported handler).
    QVERIFY(sawThrow || sawReport);
}

void tst_QtAllocationFailure::followingAMovedContextNeverLosesACallSilently()
{
    // A queued call goes to the thread its context was last seen in, `from`;
    // the context has moved on to a thread Sigreg has never posted to. The
    // drain in `from` follows the context: it makes the new thread's mailbox
    // (the mailbox, its receiver, the connections to the thread's end, the
    // directory entry) and posts there. Each of those allocations fails in
    // turn (only `from` is armed, only while it drains). The call must then
    // be either delivered in the new thread or reported with its handler's
    // id, exactly one of the two; and the new thread must get later calls.
    // Each round's new thread is a fresh QThread at the same address (the
    // same stack slot): a thread left listed in Sigreg's directory without
    // its end-of-thread connections (before 7842d05) stayed listed after it
    // ended, and the next round's thread inherited the stale entry, whose
    // calls were lost. ASan in CI checks that nothing half-made is read or
    // leaked.
    sigreg_test::Worker from("from");
    int reported = 0;
    long k = 0;
    for (;; ++k) {
        QVERIFY2(k < 1000, "the sweep does not end");
        sigreg_test::Worker to("to");
        auto *ctx = new QObject;
        ctx->moveToThread(from.thread());
        std::atomic<int> inTo{0}, inFrom{0};
        Reports reports;
        reports.ids.reserve(16); // the error handler allocates nothing while armed
        sigreg::QtRegistry<int> reg;
        reg.setErrorHandler([&reports](const sigreg::HandlerFailure &f) { reports.add(f.handler.value()); });
        QThread *const toThread = to.thread();
        const sigreg::HandlerId id = reg.add(ctx, [&inTo, &inFrom, toThread](int) {
            (QThread::currentThread() == toThread ? inTo : inFrom).fetch_add(1);
        }, Qt::QueuedConnection);
        reg.notify(0);
        QTRY_COMPARE(inFrom.load(), 1); // the state knows `from`, whose mailbox is warm
        QVERIFY(from.run([ctx, toThread] { ctx->moveToThread(toThread); }));

        // `from` is held busy while the call is queued behind the hold; then
        // armed, it drains that call (sendPostedEvents()) and is disarmed.
        std::atomic<bool> fired{false};
        {
            sigreg_test::BusyCall hold(from.context, [k, &fired] {
                Arm arm(k);
                QCoreApplication::sendPostedEvents();
                arm.disarm();
                fired = arm.fired();
            });
            QTRY_VERIFY(hold.isBusy());
            reg.notify(1);
        } // released, and waited for
        QTRY_VERIFY2_WITH_TIMEOUT(inTo.load() + int(reports.take().size()) >= 1,
                                  qPrintable(QStringLiteral("k = %1: the call was lost").arg(k)), 20000);
        from.sync();
        to.sync();
        const std::vector<std::uint64_t> ids = reports.take();
        QCOMPARE(inFrom.load(), 1);
        QCOMPARE(inTo.load() + int(ids.size()), 1);
        if (!ids.empty())
            QCOMPARE(ids.front(), id.value());
        if (!fired.load())
            QCOMPARE(inTo.load(), 1);
        reported += int(ids.size());

        // Later calls reach the context in its new thread.
        reg.notify(2);
        QTRY_COMPARE_WITH_TIMEOUT(inTo.load() + int(ids.size()), 2, 20000);
        QVERIFY(to.run([ctx] { delete ctx; }));
        QCOMPARE(reg.count(), 0);
        if (!fired.load())
            break; // k is past the last allocation the drain makes
    }
    QVERIFY2(k > 0, "the drain allocated nothing: the sweep tested nothing");
    QVERIFY(reported > 0); // some failure lost the call, and said so
    qInfo("%ld allocations swept; %d lost the call and reported it", k, reported);
}

QTEST_GUILESS_MAIN(tst_QtAllocationFailure)
#include "tst_qtallocationfailure.moc"
