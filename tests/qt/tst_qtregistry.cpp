// SPDX-License-Identifier: MIT
// Tests of sigreg::QtRegistry<E>: inline and thread-affine dispatch, lifetime,
// failures, signals and properties.
#include "qt_test_support.h"

#include <sigreg/qt/qtregistry.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QDeadlineTimer>
#include <QtCore/QEventLoop>
#include <QtCore/QPromise>
#include <QtCore/QScopeGuard>
#include <QtCore/QSemaphore>
#include <QtCore/QThread>
#include <QtCore/QTimer>
#include <QtTest/QSignalSpy>
#include <QtTest/QTest>

#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

using sigreg::HandlerId;
using sigreg::QtRegistry;
using sigreg_test::Worker;

namespace {

/// An event that counts its copies.
struct Counted {
    static inline std::atomic<int> copies{0};
    int value = 0;
    explicit Counted(int v) : value(v) {}
    Counted(const Counted &o) : value(o.value) { copies.fetch_add(1); }
    Counted &operator=(const Counted &) = delete;
};

struct MoveOnlyEvent {
    std::unique_ptr<int> p;
};

/// Aligned beyond the 64 bytes of the facade's pooled blocks.
struct alignas(256) OverAligned {
    int value = 0;
};

bool isAligned(const OverAligned &e)
{
    return reinterpret_cast<std::uintptr_t>(&e) % alignof(OverAligned) == 0;
}

} // namespace

class tst_QtRegistry : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void inlineHandlersRunInPriorityOrder();
    void countPropertyAndSignal();
    void invalidArguments();
    void nonCopyableEventInline();
    void overAlignedEvent();
    void autoRunsInlineOnContextThread();
    void autoIsMarshalledFromOtherThread();
    void directRunsOnNotifyingThread();
    void queuedAlwaysQueues();
    void blockingQueuedFromOtherThread();
    void blockingQueuedFromOwnThreadRunsDirectly();
    void blockingQueuedHandlerRemovesItself();
    void blockingQueuedToFinishedThreadReturns();
    void eventCopiedOncePerNotify();
    void aWakeupQtDeletesUndeliveredIsNotWaitedForForever();
    void aWakeupLostWithTheApplicationIsMadeUpByTheNextOne();
    void aWakeupPostedByAnotherThreadIsHandedOverVisibly();
    void perProducerOrderPreserved();
    void burstSharesOneWakeup();
    void longDrainYieldsToTheEventLoop();
    void nestedEventLoopDrainsMailbox_data();
    void nestedEventLoopDrainsMailbox();
    void blockingQueuedIntoNestedEventLoop();
    void contextDestroyedRemovesHandler();
    void contextDestroyedWithEventsInFlight();
    void removalDropsQueuedEvents();
    void removeWaitsForRunningMarshalledCall();
    void registryDestroyedWithEventsQueued();
    void contextMovedToAnotherThread();
    void guardRemovesContextHandler();
    void blockingQueuedAfterMoveFromOldThread();
    void blockingQueuedFromNewThreadBeforeOldOneSawTheMove();
    void movedContextDestroyedWhileOldThreadReadsIt_data();
    void movedContextDestroyedWhileOldThreadReadsIt();
    void contextDeathWaitsWhileAnotherRemovalWaits();
    void handlerAddedForFinishedThread();
    void threadlessContextGetsNoEvents();
    void contextOutlivesItsThread();
    void contextPulledIntoANewThreadAtAFreedThreadsAddress();
    void contextThreadRestarted();
    void lostWakeupIsMadeUp();
    void contextMovedAwayBeforeItsThreadEnded();
    void blockingQueuedAfterMoveToCallerWhileOldThreadWaits();
    void notifierThatLosesTheRaceToRecordAMoveQueues();
    void contextMovingBackAndForthKeepsNoMorePerMove();
    void blockingQueuedFindsTheContextMovedToItMeanwhile();
    void inlineFailureReported();
    void marshalledFailureReported();
    void removalDoesNotWaitForTheErrorHandlerOfAMarshalledCall();
    void failureSlotAndCallbackMayThrow_data();
    void failureSlotAndCallbackMayThrow();
};

void tst_QtRegistry::inlineHandlersRunInPriorityOrder()
{
    QtRegistry<int> reg;
    std::vector<int> order;
    reg.add([&](int) { order.push_back(1); });
    reg.add(5, [&](int) { order.push_back(2); });
    reg.add(&reg, [&](int) { order.push_back(3); }); // Auto, context in this thread: inline
    reg.add(5, [&](int) { order.push_back(4); });
    reg.notify(0);
    QCOMPARE(order, (std::vector<int>{2, 4, 1, 3}));
}

void tst_QtRegistry::countPropertyAndSignal()
{
    QtRegistry<int> reg;
    QSignalSpy spy(&reg, &sigreg::QtRegistryBase::countChanged);
    QCOMPARE(reg.property("count").toInt(), 0);
    const HandlerId a = reg.add([](int) {});
    QObject ctx;
    reg.add(&ctx, [](int) {});
    QCOMPARE(reg.count(), 2);
    QCOMPARE(reg.property("count").toInt(), 2);
    QCOMPARE(spy.count(), 2);
    QVERIFY(reg.remove(a));
    QVERIFY(!reg.remove(a));
    QCOMPARE(spy.count(), 3);
    {
        sigreg::Guard g = reg.addGuarded([](int) {});
        QCOMPARE(reg.count(), 2);
    }
    QCOMPARE(reg.count(), 1);
    QCOMPARE(spy.count(), 5);
    QCOMPARE(reg.clear(), 1);
    QCOMPARE(reg.count(), 0);
    QCOMPARE(spy.count(), 6);
}

void tst_QtRegistry::invalidArguments()
{
    QtRegistry<int> reg;
    QObject ctx;
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, reg.add(nullptr, [](int) {}));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, reg.add(&ctx, [](int) {}, Qt::UniqueConnection));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument,
                             reg.add(&ctx, [](int) {}, Qt::ConnectionType(Qt::QueuedConnection | Qt::UniqueConnection)));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, reg.add(&ctx, std::function<void(int)>()));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, reg.add(std::function<void(int)>()));
    QCOMPARE(reg.count(), 0);
}

void tst_QtRegistry::nonCopyableEventInline()
{
    QtRegistry<MoveOnlyEvent> reg;
    int seen = 0;
    reg.add([&](const MoveOnlyEvent &e) { seen = *e.p; });
    reg.notify(MoveOnlyEvent{std::make_unique<int>(7)});
    QCOMPARE(seen, 7);
}

void tst_QtRegistry::overAlignedEvent()
{
    // An over-aligned event is valid for every kind of handler; its queued
    // copy must be aligned as the type asks (it once did not compile at all,
    // not even for a registry of inline handlers).
    Worker w;
    QtRegistry<OverAligned> reg;
    std::atomic<int> sum{0};
    std::atomic<int> misaligned{0};
    const auto check = [&](const OverAligned &e) {
        if (!isAligned(e))
            ++misaligned;
        sum += e.value;
    };
    reg.add(check);
    reg.add(w.context, check, Qt::BlockingQueuedConnection);
    reg.add(w.context, check, Qt::QueuedConnection);
    reg.add([&](const OverAligned &e) {
        check(e);
        QPromise<void> done;
        done.start();
        done.finish();
        return done.future();
    });
    reg.notify(OverAligned{1});
    w.sync();
    QCOMPARE(sum.load(), 4);
    reg.notifyAsync(OverAligned{10}).waitForFinished();
    w.sync();
    QCOMPARE(sum.load(), 44);
    QCOMPARE(misaligned.load(), 0);
    QCOMPARE(reg.failureCount(), quint64(0));
}

void tst_QtRegistry::autoRunsInlineOnContextThread()
{
    QtRegistry<int> reg;
    QObject ctx;
    int calls = 0;
    reg.add(&ctx, [&](int) { ++calls; });
    reg.notify(1);
    QCOMPARE(calls, 1); // no event loop needed: it ran inline
}

void tst_QtRegistry::autoIsMarshalledFromOtherThread()
{
    Worker w;
    QtRegistry<int> reg;
    std::atomic<QThread *> ranIn{nullptr};
    std::atomic<int> sum{0};
    reg.add(w.context, [&](int v) {
        ranIn = QThread::currentThread();
        sum += v;
    });
    reg.notify(3);
    reg.notify(4);
    w.sync();
    QCOMPARE(sum.load(), 7);
    QCOMPARE(ranIn.load(), w.thread());
}

void tst_QtRegistry::directRunsOnNotifyingThread()
{
    Worker w;
    QtRegistry<int> reg;
    QThread *ranIn = nullptr;
    reg.add(w.context, [&](int) { ranIn = QThread::currentThread(); }, Qt::DirectConnection);
    reg.notify(1);
    QCOMPARE(ranIn, QThread::currentThread());
}

void tst_QtRegistry::queuedAlwaysQueues()
{
    QtRegistry<int> reg;
    QObject ctx;
    int calls = 0;
    reg.add(&ctx, [&](int) { ++calls; }, Qt::QueuedConnection);
    reg.notify(1);
    reg.notify(2);
    QCOMPARE(calls, 0);
    QTRY_COMPARE(calls, 2);
}

void tst_QtRegistry::blockingQueuedFromOtherThread()
{
    Worker w;
    QtRegistry<int> reg;
    std::atomic<QThread *> ranIn{nullptr};
    int seen = 0; // plain int: notify returning must order the write before our read
    reg.add(w.context, [&](int v) {
        ranIn = QThread::currentThread();
        seen = v;
    }, Qt::BlockingQueuedConnection);
    reg.notify(42);
    QCOMPARE(seen, 42);
    QCOMPARE(ranIn.load(), w.thread());
}

void tst_QtRegistry::blockingQueuedFromOwnThreadRunsDirectly()
{
    QtRegistry<int> reg;
    QObject ctx;
    int calls = 0;
    reg.add(&ctx, [&](int) { ++calls; }, Qt::BlockingQueuedConnection);
    reg.notify(1); // Qt would deadlock here; Sigreg runs the handler directly
    QCOMPARE(calls, 1);
}

void tst_QtRegistry::blockingQueuedHandlerRemovesItself()
{
    Worker w;
    QtRegistry<int> reg;
    std::atomic<bool> removed{false};
    auto id = std::make_shared<std::atomic<std::uint64_t>>(0);
    // The notifier is blocked waiting for this call while it removes itself:
    // neither side may wait for the other.
    id->store(reg.add(w.context, [&, id](int) { removed = reg.remove(HandlerId(id->load())); },
                      Qt::BlockingQueuedConnection)
                  .value());
    reg.notify(1);
    QVERIFY(removed.load());
    QCOMPARE(reg.count(), 0);
}

void tst_QtRegistry::blockingQueuedToFinishedThreadReturns()
{
    auto w = std::make_unique<Worker>();
    QtRegistry<int> reg;
    QObject *ctx = new QObject;
    ctx->moveToThread(w->thread());
    int calls = 0;
    reg.add(ctx, [&](int) { ++calls; }, Qt::BlockingQueuedConnection);
    w->stop(); // the thread is finished; ctx still exists, orphaned in it
    reg.notify(1); // must not hang: events for a finished thread are dropped
    QCOMPARE(calls, 0);
    QCOMPARE(reg.count(), 1);
    delete ctx; // allowed: its thread no longer runs
    QCOMPARE(reg.count(), 0);
}

void tst_QtRegistry::eventCopiedOncePerNotify()
{
    Worker w1("w1");
    Worker w2("w2");
    QtRegistry<Counted> reg;
    QObject local;
    std::atomic<int> sum{0};
    reg.add([&](const Counted &e) { sum += e.value; });                        // inline: no copy
    reg.add(w1.context, [&](const Counted &e) { sum += e.value; });            // marshalled
    reg.add(w2.context, [&](const Counted &e) { sum += e.value; });            // marshalled
    reg.add(&local, [&](const Counted &e) { sum += e.value; }, Qt::QueuedConnection);
    Counted::copies = 0;
    const Counted ev(5);
    reg.notify(ev);
    QCOMPARE(Counted::copies.load(), 1);
    reg.notify(ev);
    QCOMPARE(Counted::copies.load(), 2);
    w1.sync();
    w2.sync();
    QTRY_COMPARE(sum.load(), 2 * 4 * 5);
    QCOMPARE(Counted::copies.load(), 2);

    // Only inline handlers: no copy at all.
    QtRegistry<Counted> inlineOnly;
    inlineOnly.add([](const Counted &) {});
    Counted::copies = 0;
    inlineOnly.notify(ev);
    QCOMPARE(Counted::copies.load(), 0);
}

void tst_QtRegistry::burstSharesOneWakeup()
{
    // While the worker is busy, a burst of events for two handlers living
    // there is queued: it costs one wake-up (one posted drain event), not one
    // per event or per handler, and is delivered in order.
    Worker w;
    QtRegistry<int> reg;
    std::vector<int> seenA, seenB; // written in the worker only
    reg.add(w.context, [&](int v) { seenA.push_back(v); }, Qt::QueuedConnection);
    reg.add(w.context, [&](int v) { seenB.push_back(v); }, Qt::QueuedConnection);
    reg.notify(-1); // the worker's mailbox exists and is idle again after this
    w.sync();

    sigreg_test::BusyCall busy(w.context);
    QTRY_VERIFY(busy.isBusy());

    constexpr int kBurst = 100;
    const std::uint64_t before = sigreg::qtdetail::wakeupsPosted(w.thread());
    for (int i = 0; i < kBurst; ++i)
        reg.notify(i);
    const std::uint64_t posted = sigreg::qtdetail::wakeupsPosted(w.thread()) - before;
    busy.release();
    w.sync();
    QCOMPARE(posted, std::uint64_t(1));
    std::vector<int> expected{-1};
    for (int i = 0; i < kBurst; ++i)
        expected.push_back(i);
    std::vector<int> gotA, gotB;
    QVERIFY(w.run([&] { // copied in the worker, which wrote them
        gotA = seenA;
        gotB = seenB;
    }));
    QCOMPARE(gotA, expected);
    QCOMPARE(gotB, expected);
}

void tst_QtRegistry::longDrainYieldsToTheEventLoop()
{
    // A drain runs at most 4096 queued calls, then posts itself a new wake-up
    // and returns, so that what the thread's event loop got meanwhile runs
    // before the rest: a flood of Sigreg events does not starve the loop.
    QtRegistry<int> reg;
    QObject ctx; // this thread's
    std::vector<int> seen;
    reg.add(&ctx, [&](int v) { seen.push_back(v); }, Qt::QueuedConnection);

    constexpr int kEvents = 5000;
    const std::uint64_t before = sigreg::qtdetail::wakeupsPosted(QThread::currentThread());
    for (int i = 0; i < kEvents; ++i)
        reg.notify(i); // the first posts the wake-up, the rest join its drain
    QCOMPARE(sigreg::qtdetail::wakeupsPosted(QThread::currentThread()) - before, std::uint64_t(1));

    // Posted behind that wake-up, in front of any later one.
    std::size_t seenByMarker = 0;
    bool markerRan = false;
    QMetaObject::invokeMethod(&ctx, [&] {
        seenByMarker = seen.size();
        markerRan = true;
    }, Qt::QueuedConnection);

    QTRY_COMPARE(seen.size(), std::size_t(kEvents));
    QVERIFY(markerRan);
    QCOMPARE(seenByMarker, std::size_t(4096)); // not all 5000: the loop got a turn in between
    QCOMPARE(sigreg::qtdetail::wakeupsPosted(QThread::currentThread()) - before, std::uint64_t(2));
    for (int i = 0; i < kEvents; ++i)
        QCOMPARE(seen[static_cast<std::size_t>(i)], i); // and nothing reordered across the split
}

void tst_QtRegistry::aWakeupQtDeletesUndeliveredIsNotWaitedForForever()
{
    // Qt deletes posted events it never delivers: all of the main thread's
    // when its QCoreApplication is destroyed (so that a new one can be made),
    // and those removePostedEvents() removes. A mailbox whose wake-up went
    // that way must neither strand the calls it holds nor count the lost
    // wake-up as pending forever (then no push would post one again, and
    // nothing queued to this thread would run: a BlockingQueued notify from
    // another thread would wait for good).
    QtRegistry<int> reg;
    QObject ctx; // this thread's
    std::vector<int> seen;
    reg.add(&ctx, [&](int v) { seen.push_back(v); }, Qt::QueuedConnection);
    QCoreApplication::sendPostedEvents(); // a new mailbox's first drain

    reg.notify(1);
    QCoreApplication::removePostedEvents(nullptr, sigreg::qtdetail::wakeupEventTypeForTesting());
    QTRY_COMPARE(seen, std::vector<int>{1}); // the next turn of the event loop takes it

    reg.notify(2); // a wake-up of its own again
    reg.notify(3);
    QCoreApplication::sendPostedEvents(); // delivers the posted wake-up only
    QCOMPARE(seen, (std::vector<int>{1, 2, 3}));

    // An application-wide event filter that eats the wake-up: Qt deletes it
    // undelivered too.
    struct EatOneWakeup : QObject {
        int eaten = 0;
        bool eventFilter(QObject *, QEvent *e) override
        {
            if (eaten == 0 && e->type() == sigreg::qtdetail::wakeupEventTypeForTesting()) {
                ++eaten;
                return true;
            }
            return false;
        }
    } filter;
    QCoreApplication::instance()->installEventFilter(&filter);
    reg.notify(4);
    QCoreApplication::sendPostedEvents();
    QCOMPARE(filter.eaten, 1);
    QTRY_COMPARE(seen, (std::vector<int>{1, 2, 3, 4})); // the next turn of the event loop
    reg.notify(5);
    QCoreApplication::sendPostedEvents();
    QCOMPARE(seen, (std::vector<int>{1, 2, 3, 4, 5}));
    QCoreApplication::instance()->removeEventFilter(&filter);
}

void tst_QtRegistry::aWakeupLostWithTheApplicationIsMadeUpByTheNextOne()
{
    // The QCoreApplication's destruction deletes the main thread's posted
    // events after its event dispatcher, so the mailbox is owed a look but
    // watches no dispatcher any more. The calls queued then must run in the
    // next application's event loop, with no other notify to post a wake-up
    // (a BlockingQueued caller on another thread would wait for one).
    auto *app = QCoreApplication::instance();
    QVERIFY(app && QCoreApplication::instance()->metaObject() == &QCoreApplication::staticMetaObject);
    QtRegistry<int> reg;
    QObject ctx; // this thread's
    std::vector<int> seen;
    reg.add(&ctx, [&](int v) { seen.push_back(v); }, Qt::QueuedConnection);
    QCoreApplication::sendPostedEvents(); // the mailbox's first drain: it watches the dispatcher

    reg.notify(1); // posts the wake-up
    {
        // The application goes, and another is made (in the same place: the
        // test's main() destroys it at the end).
        static int argc = 1;
        static char name[] = "tst_qtregistry";
        static char *argv[] = {name, nullptr};
        app->~QCoreApplication();
        new (app) QCoreApplication(argc, argv);
    }
    QVERIFY(seen.empty());
    QTRY_COMPARE(seen, std::vector<int>{1}); // this application's event loop takes it
}

void tst_QtRegistry::aWakeupPostedByAnotherThreadIsHandedOverVisibly()
{
    // A wake-up is made by the thread that posts it (this one) and delivered
    // in the worker, through Qt's event queue, whose mutex ThreadSanitizer
    // cannot see: what the delivery writes into the event must follow the
    // acquire that restates that hand-over (under the tsan preset, a race
    // report ends the test).
    Worker worker;
    QtRegistry<int> reg;
    std::atomic<int> seen{0};
    reg.add(worker.context, [&](int v) { seen.store(v, std::memory_order_release); }, Qt::QueuedConnection);
    for (int i = 1; i <= 3; ++i) {
        reg.notify(i); // the worker is idle: a wake-up of its own
        QVERIFY(sigreg_test::spinUntil([&] { return seen.load(std::memory_order_acquire) == i; }));
    }
}

void tst_QtRegistry::perProducerOrderPreserved()
{
    struct Ev {
        int producer;
        int seq;
    };
    Worker w;
    QtRegistry<Ev> reg;
    constexpr int kProducers = 3;
    constexpr int kEvents = 3000;
    std::vector<int> last(kProducers, -1); // touched only in the worker thread
    std::atomic<int> outOfOrder{0};
    std::atomic<int> received{0};
    reg.add(w.context, [&](const Ev &e) {
        if (e.seq != last[std::size_t(e.producer)] + 1)
            ++outOfOrder;
        last[std::size_t(e.producer)] = e.seq;
        ++received;
    }, Qt::QueuedConnection);
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
        producers.emplace_back([&reg, p] {
            for (int i = 0; i < kEvents; ++i)
                reg.notify(Ev{p, i});
        });
    }
    for (auto &t : producers)
        t.join();
    QTRY_COMPARE(received.load(), kProducers * kEvents);
    QCOMPARE(outOfOrder.load(), 0);
}

namespace {

/// Spins a nested event loop in the calling thread, the way row `how` of a
/// nested-loop test names, until `done()` holds or `bound` has passed (the
/// bound only keeps a broken build from hanging; the tests assert on what
/// ran inside the loop, never on time).
template <class Done>
void spinNestedLoop(const QByteArray &how, Done done, std::chrono::milliseconds bound)
{
    if (how == "exec") {
        QEventLoop loop;
        QTimer poll; // exec() has no predicate: look at it after every event
        QObject::connect(&poll, &QTimer::timeout, &loop, [&] {
            if (done())
                loop.quit();
        });
        poll.start(1);
        QTimer::singleShot(bound, &loop, &QEventLoop::quit);
        loop.exec();
    } else {
        const QDeadlineTimer deadline(bound);
        while (!done() && !deadline.hasExpired())
            QCoreApplication::processEvents();
    }
}

} // namespace

void tst_QtRegistry::nestedEventLoopDrainsMailbox_data()
{
    QTest::addColumn<QByteArray>("how");
    QTest::newRow("QEventLoop::exec") << QByteArray("exec");
    QTest::newRow("processEvents") << QByteArray("processEvents");
}

void tst_QtRegistry::nestedEventLoopDrainsMailbox()
{
    // A marshalled handler spins a nested event loop (a modal dialog, a
    // QEventLoop waiting for a reply). Sigreg events to its thread, queued
    // before it started (a backlog in the same drain) and while it runs, are
    // delivered inside that loop, in order, as Qt's queued calls are. Before
    // the fix they waited until the handler returned: event 1's loop then ran
    // into its bound with nothing seen.
    QFETCH(QByteArray, how);
    Worker w;
    QtRegistry<int> reg;
    std::vector<int> order; // written in the worker only; -1 marks event 1's end
    bool sawThree = false;  // the worker's too
    std::atomic<bool> inLoop{false}, finished{false};
    reg.add(w.context, [&](int v) {
        order.push_back(v);
        if (v == 3)
            sawThree = true;
        if (v != 1)
            return;
        inLoop = true;
        spinNestedLoop(how, [&] { return sawThree; }, std::chrono::seconds(5));
        order.push_back(-1);
        finished = true;
    }, Qt::QueuedConnection);
    reg.notify(0); // the worker's mailbox exists and has drained once
    w.sync();

    // Events 1 and 2 wait in one batch behind a busy worker.
    sigreg_test::BusyCall busy(w.context);
    QTRY_VERIFY(busy.isBusy());
    reg.notify(1);
    reg.notify(2);
    busy.release();
    QTRY_VERIFY(inLoop.load());
    reg.notify(3); // arrives while event 1's handler spins its loop
    QTRY_VERIFY_WITH_TIMEOUT(finished.load(), 20000);
    std::vector<int> got;
    QVERIFY(w.run([&] { got = order; }));
    QCOMPARE(got, (std::vector<int>{0, 1, 2, 3, -1}));
}

void tst_QtRegistry::blockingQueuedIntoNestedEventLoop()
{
    // A BlockingQueued notify to a thread whose marshalled handler spins a
    // nested event loop runs there, inside that loop, and returns: the loop
    // is what the handler waits in. Before the fix the caller stayed blocked
    // until the loop ran into its bound, and the call ran after the handler.
    Worker w;
    QtRegistry<int> spinner, blocking;
    bool inside = false, quit = false; // the worker's
    std::atomic<bool> inLoop{false}, ranInside{false};
    spinner.add(w.context, [&](int) {
        inside = true;
        inLoop = true;
        spinNestedLoop("exec", [&] { return quit; }, std::chrono::seconds(5));
        inside = false;
    }, Qt::QueuedConnection);
    blocking.add(w.context, [&](int) {
        ranInside = inside;
        quit = true;
    }, Qt::BlockingQueuedConnection);
    spinner.notify(1);
    QTRY_VERIFY(inLoop.load());
    blocking.notify(2);
    QVERIFY(ranInside.load());
    w.sync();
}

void tst_QtRegistry::contextDestroyedRemovesHandler()
{
    QtRegistry<int> reg;
    QSignalSpy spy(&reg, &sigreg::QtRegistryBase::countChanged);
    auto *ctx = new QObject;
    int calls = 0;
    const HandlerId id = reg.add(ctx, [&](int) { ++calls; });
    reg.notify(1);
    QCOMPARE(calls, 1);
    delete ctx;
    QVERIFY(!reg.contains(id));
    QCOMPARE(reg.count(), 0);
    QCOMPARE(spy.count(), 2);
    reg.notify(2);
    QCOMPARE(calls, 1);
}

void tst_QtRegistry::contextDestroyedWithEventsInFlight()
{
    Worker w;
    QtRegistry<int> reg;
    QSemaphore proceed;
    std::atomic<bool> started{false};
    std::vector<int> seen; // worker thread only until the end
    QObject *ctx = w.context;
    reg.add(ctx, [&, ctx](int v) {
        seen.push_back(v);
        if (v == 0) {
            started = true;
            proceed.acquire();
            delete ctx; // the context dies with events 1..5 queued for it
        }
    });
    w.context = nullptr; // deleted by the handler
    reg.notify(0);
    QTRY_VERIFY(started.load());
    for (int i = 1; i <= 5; ++i)
        reg.notify(i);
    proceed.release();
    QTRY_COMPARE(reg.count(), 0);
    w.sync();
    QCOMPARE(seen, std::vector<int>{0});
}

void tst_QtRegistry::removalDropsQueuedEvents()
{
    Worker w;
    QtRegistry<int> reg;
    QSemaphore proceed;
    std::atomic<bool> started{false};
    std::vector<int> seen;
    const HandlerId id = reg.add(w.context, [&](int v) {
        seen.push_back(v);
        if (v == 0) {
            started = true;
            proceed.acquire();
        }
    });
    reg.notify(0);
    QTRY_VERIFY(started.load());
    for (int i = 1; i <= 5; ++i)
        reg.notify(i);
    // removeNoWait: the call in flight (event 0) waits for us.
    QVERIFY(reg.removeNoWait(id));
    proceed.release();
    w.sync();
    QCOMPARE(seen, std::vector<int>{0});
}

void tst_QtRegistry::removeWaitsForRunningMarshalledCall()
{
    Worker w;
    QtRegistry<int> reg;
    QSemaphore proceed;
    std::atomic<bool> started{false};
    std::atomic<bool> finished{false};
    std::atomic<bool> removing{false};
    const HandlerId id = reg.add(w.context, [&](int) {
        started = true;
        proceed.acquire();
        finished = true;
    }, Qt::QueuedConnection);
    reg.notify(0);
    QTRY_VERIFY(started.load());
    std::thread releaser([&] {
        while (!removing.load())
            std::this_thread::yield();
        proceed.release();
    });
    removing = true;
    QVERIFY(reg.remove(id)); // returns only once the running call ended
    QVERIFY(finished.load());
    releaser.join();
}

void tst_QtRegistry::registryDestroyedWithEventsQueued()
{
    Worker w;
    auto reg = std::make_unique<QtRegistry<int>>();
    QSemaphore proceed;
    std::atomic<bool> started{false};
    std::atomic<int> calls{0};
    reg->add(w.context, [&](int v) {
        ++calls;
        if (v == 0) {
            started = true;
            proceed.acquire();
        }
    });
    reg->notify(0);
    QTRY_VERIFY(started.load());
    for (int i = 1; i <= 5; ++i)
        reg->notify(i);
    // Released once the destruction has started removing handlers (the
    // count drops before the queued events are cut off): the queued events
    // run before that point or never.
    std::atomic<QtRegistry<int> *> raw{reg.get()};
    std::thread releaser([&] {
        while (raw.load()->count() != 0)
            std::this_thread::yield();
        proceed.release();
    });
    reg.reset(); // waits for the running call; drops what is still queued
    const int atDestruction = calls.load();
    releaser.join();
    w.sync();
    QCOMPARE(calls.load(), atDestruction); // nothing ran after destruction returned
    QVERIFY(atDestruction >= 1);
}

void tst_QtRegistry::contextMovedToAnotherThread()
{
    Worker w1("w1");
    Worker w2("w2");
    QtRegistry<int> reg;
    std::atomic<QThread *> ranIn{nullptr};
    std::atomic<int> calls{0};
    reg.add(w1.context, [&](int) {
        ranIn = QThread::currentThread();
        ++calls;
    }, Qt::QueuedConnection);
    reg.notify(1);
    QTRY_COMPARE(calls.load(), 1);
    QCOMPARE(ranIn.load(), w1.thread());
    QObject *ctx = w1.context;
    QThread *to = w2.thread();
    w1.run([ctx, to] { ctx->moveToThread(to); });
    w1.context = nullptr;
    w2.run([] {});
    reg.notify(2);
    QTRY_COMPARE(calls.load(), 2);
    QCOMPARE(ranIn.load(), w2.thread());
    w2.run([ctx] { delete ctx; });
    QCOMPARE(reg.count(), 0);
}

void tst_QtRegistry::blockingQueuedAfterMoveFromOldThread()
{
    // The context starts in this thread, then moves to a worker; a blocking
    // notify from this (its old) thread must reach the worker, not this
    // thread's own mailbox (which it could never drain while blocked).
    Worker w;
    QtRegistry<int> reg;
    auto *ctx = new QObject;
    std::atomic<QThread *> ranIn{nullptr};
    reg.add(ctx, [&](int) { ranIn = QThread::currentThread(); }, Qt::BlockingQueuedConnection);
    reg.notify(0); // inline: same thread
    QCOMPARE(ranIn.load(), QThread::currentThread());
    ctx->moveToThread(w.thread());
    reg.notify(1);
    QCOMPARE(ranIn.load(), w.thread());
    w.run([ctx] { delete ctx; });
    QCOMPARE(reg.count(), 0);
}

void tst_QtRegistry::blockingQueuedFromNewThreadBeforeOldOneSawTheMove()
{
    // The context lives in a worker, which moves it to this thread. The first
    // blocking notify from here is queued to the worker (this thread does not
    // know about the move yet); the worker sees the context here and hands
    // the task back to this blocked thread, which runs the handler itself,
    // instead of queueing it to this thread's mailbox, which it would never
    // drain while it waits (a deadlock before the fix: ctest's timeout).
    Worker w;
    QtRegistry<int> reg;
    QObject *ctx = w.context;
    w.context = nullptr; // ours from here on
    std::atomic<QThread *> ranIn{nullptr};
    std::atomic<int> calls{0};
    reg.add(ctx, [&](int) {
        ranIn = QThread::currentThread();
        calls.fetch_add(1);
    }, Qt::BlockingQueuedConnection);
    QThread *self = QThread::currentThread();
    QVERIFY(w.run([ctx, self] { ctx->moveToThread(self); }));
    reg.notify(1);
    QCOMPARE(calls.load(), 1);
    QCOMPARE(ranIn.load(), self);
    // Now known to live here: inline, as BlockingQueued from the own thread.
    reg.notify(2);
    QCOMPARE(calls.load(), 2);
    delete ctx;
    QCOMPARE(reg.count(), 0);
}

namespace {
/// What the context-read hook of movedContextDestroyedWhileOldThreadReadsIt
/// sees and does (a plain function pointer: no captures).
struct ContextReadProbe {
    static inline std::atomic<QObject *> target{nullptr};
    static inline std::atomic<bool> reached{false};
    static inline std::atomic<bool> destroying{false}; // ~QObject emits destroyed()
    static inline std::atomic<bool> destroyed{false};  // the delete returned
    static inline std::atomic<bool> destroyedBeforeRead{false};

    static void hook(QObject *context)
    {
        if (context != target.load())
            return;
        reached = true;
        // Wait until the destruction is under way, then give it time to
        // finish, if it can (it must not). The bounds only end the waits; the
        // test asserts on the flags, not on time.
        (void)sigreg_test::spinUntil([] { return destroying.load(); });
        destroyedBeforeRead = sigreg_test::spinUntil([] { return destroyed.load(); }, std::chrono::milliseconds(300));
    }
};
} // namespace

/// A context that can tell how many connections its destroyed() signal has.
class CountingContext : public QObject {
public:
    int destroyedReceivers() const { return receivers(SIGNAL(destroyed(QObject *))); }
};

void tst_QtRegistry::movedContextDestroyedWhileOldThreadReadsIt_data()
{
    QTest::addColumn<bool>("removeWaitsMeanwhile");
    QTest::newRow("destroyed") << false;
    QTest::newRow("destroyed while remove() waits") << true;
}

void tst_QtRegistry::movedContextDestroyedWhileOldThreadReadsIt()
{
    // The context moves from `before` to `after`; an event queued through
    // `before` (which has not seen the move) makes `before` read the context
    // to forward the task, and right then `after` destroys the context. The
    // destruction must wait until `before` is done with it. Before the fix,
    // `before` read the context outside the handler's gate, the destruction
    // finished during the hook, and the read after it touched freed memory
    // (a heap-use-after-free under ASan).
    // Second row: a remove() on a third thread is already waiting for that
    // read when the context dies. Before its fix, that removal had cut the
    // context's destroyed() connection before waiting, so the destruction
    // did not wait.
    QFETCH(bool, removeWaitsMeanwhile);
    ContextReadProbe::reached = false;
    ContextReadProbe::destroying = false;
    ContextReadProbe::destroyed = false;
    ContextReadProbe::destroyedBeforeRead = false;
    Worker before("before"), after("after");
    QtRegistry<int> reg;
    auto *ctx = new CountingContext;
    ctx->moveToThread(before.thread());
    std::atomic<int> calls{0};
    // Connected first, so it runs first when ~QObject emits destroyed().
    QObject::connect(ctx, &QObject::destroyed, [] { ContextReadProbe::destroying = true; });
    const HandlerId id = reg.add(ctx, [&](int) { ++calls; }, Qt::QueuedConnection);
    QCOMPARE(ctx->destroyedReceivers(), 2);
    reg.notify(0);
    QTRY_COMPARE(calls.load(), 1);

    ContextReadProbe::target = ctx;
    sigreg::qtdetail::setContextReadHookForTesting(&ContextReadProbe::hook);
    const auto unhook = qScopeGuard([] {
        sigreg::qtdetail::setContextReadHookForTesting(nullptr);
        ContextReadProbe::target = nullptr;
    });
    QThread *to = after.thread();
    QVERIFY(before.run([ctx, to] { ctx->moveToThread(to); }));
    reg.notify(1); // queued to `before`, the thread last seen
    QTRY_VERIFY(ContextReadProbe::reached.load());
    QVERIFY(!ContextReadProbe::destroying.load());
    std::atomic<bool> removed{false};
    std::thread remover;
    if (removeWaitsMeanwhile) {
        remover = std::thread([&] { removed = reg.remove(id); });
        // Until the removal cut the connection (before the fix it does so at
        // once) or has had time to; it must not, while it waits.
        (void)QTest::qWaitFor([&] { return ctx->destroyedReceivers() < 2; }, 300);
    }
    QVERIFY(after.run([ctx] {
        delete ctx;
        ContextReadProbe::destroyed = true;
    }));
    if (remover.joinable())
        remover.join();
    QVERIFY(ContextReadProbe::destroying.load());
    QVERIFY(!ContextReadProbe::destroyedBeforeRead.load());
    QCOMPARE(removed.load(), removeWaitsMeanwhile);
    QCOMPARE(reg.count(), 0);
    before.sync(); // its drain has forwarded the task
    after.sync();  // which is dropped there
    QCOMPARE(calls.load(), 1);
}

void tst_QtRegistry::contextDeathWaitsWhileAnotherRemovalWaits()
{
    // A Direct handler runs inline on a notifier thread and blocks there.
    // Another thread removes it and waits for that call; meanwhile its context
    // dies in the worker. The removal the context's death makes finds the
    // handler removed already, and still waits for the running call before
    // the context's destruction returns.
    Worker w;
    QtRegistry<int> reg;
    std::atomic<bool> entered{false}, release{false}, finished{false};
    const HandlerId id = reg.add(w.context, [&](int) {
        entered = true;
        while (!release.load())
            std::this_thread::yield();
        finished = true;
    }, Qt::DirectConnection);
    std::thread notifier([&] { reg.notify(1); });
    QTRY_VERIFY(entered.load());
    std::atomic<bool> removedByOther{false};
    std::thread remover([&] { removedByOther = reg.remove(id); });
    QTRY_VERIFY(!reg.contains(id)); // published; the remover is waiting now

    std::atomic<bool> returned{false}, finishedAtReturn{false};
    auto *helper = new QObject;
    helper->moveToThread(w.thread());
    QObject *ctx = w.context;
    w.context = nullptr;
    QMetaObject::invokeMethod(helper, [&, ctx, helper] {
        delete ctx; // the removal inside waits for the notifier's call
        finishedAtReturn = finished.load();
        returned = true;
        delete helper;
    }, Qt::QueuedConnection);
    // Makes the interesting interleaving likely; no assertion depends on it.
    QThread::msleep(20);
    const bool returnedWhileBlocked = returned.load();
    release = true;
    notifier.join();
    remover.join();
    QVERIFY(removedByOther.load());
    QTRY_VERIFY(returned.load());
    QVERIFY2(!returnedWhileBlocked, "the context's destruction returned while its handler still ran");
    QVERIFY(finishedAtReturn.load());
    QCOMPARE(reg.count(), 0);
}

void tst_QtRegistry::handlerAddedForFinishedThread()
{
    auto w = std::make_unique<Worker>();
    QObject *ctx = new QObject;
    ctx->moveToThread(w->thread());
    w->stop(); // finished before any handler exists
    QtRegistry<int> reg;
    int calls = 0;
    reg.add(ctx, [&](int) { ++calls; }, Qt::BlockingQueuedConnection);
    reg.add(ctx, [&](int) { ++calls; }, Qt::QueuedConnection);
    reg.notify(1); // returns: events for a finished thread are dropped
    QCOMPARE(calls, 0);
    delete ctx;
    QCOMPARE(reg.count(), 0);
}

void tst_QtRegistry::guardRemovesContextHandler()
{
    Worker w;
    QtRegistry<int> reg;
    std::atomic<int> calls{0};
    {
        sigreg::Guard g = reg.addGuarded(w.context, [&](int) { ++calls; }, Qt::QueuedConnection);
        reg.notify(1);
        w.sync();
        QCOMPARE(calls.load(), 1);
    }
    QCOMPARE(reg.count(), 0);
    reg.notify(2);
    w.sync();
    QCOMPARE(calls.load(), 1);
    // The context's destruction must not touch the removed handler's registry.
    w.destroyContext();
}

void tst_QtRegistry::threadlessContextGetsNoEvents()
{
    // A context with no thread (moveToThread(nullptr)) processes no events in
    // Qt; Sigreg drops its queued calls the same way, and a sequential run
    // whose steps must start there is cancelled. (Added or notified, such a
    // context used to crash.)
    QtRegistry<int> reg;
    QObject ctx;
    ctx.moveToThread(nullptr);
    QCOMPARE(ctx.thread(), static_cast<QThread *>(nullptr));
    int calls = 0;
    reg.add(&ctx, [&](int) { ++calls; }, Qt::QueuedConnection);
    reg.add(&ctx, [&](int) { ++calls; }, Qt::AutoConnection);
    reg.add([](int) { return QtFuture::makeReadyFuture(); });
    reg.add([](int) { return QtFuture::makeReadyFuture(); });
    reg.notify(1);
    QFuture<void> steps = reg.notifySequential(2, &ctx);
    QTRY_VERIFY(steps.isFinished());
    QVERIFY(steps.isCanceled()); // the steps could not start in the context's thread
    QCoreApplication::processEvents();
    QCOMPARE(calls, 0);
}

void tst_QtRegistry::contextOutlivesItsThread()
{
    // The context stays alive in a thread that ended, then in one whose
    // QThread object was destroyed: its events are dropped, and nothing
    // touches the destroyed QThread (ASan checks that in CI).
    QtRegistry<int> reg;
    auto thread = std::make_unique<QThread>();
    thread->start();
    QObject *ctx = new QObject;
    const auto deleteCtx = qScopeGuard([&] { delete ctx; });
    ctx->moveToThread(thread.get());
    std::atomic<int> calls{0};
    reg.add(ctx, [&](int) { calls.fetch_add(1); }, Qt::QueuedConnection);
    reg.add(ctx, [&](int) { calls.fetch_add(1); }, Qt::BlockingQueuedConnection);
    reg.notify(1);
    QTRY_COMPARE(calls.load(), 2);

    thread->quit();
    QVERIFY(thread->wait(QDeadlineTimer(30000)));
    for (int i = 0; i < 1000; ++i)
        reg.notify(2); // dropped; the BlockingQueued ones return at once
    QCOMPARE(calls.load(), 2);

    thread.reset();
    for (int i = 0; i < 10; ++i)
        reg.notify(3);
    QCOMPARE(calls.load(), 2);
    QCOMPARE(reg.count(), 2); // still registered: the context lives
}

void tst_QtRegistry::contextPulledIntoANewThreadAtAFreedThreadsAddress()
{
    // The context's QThread ends and is destroyed; a new QThread is built at
    // the same address, and pulls the context (which has no thread then) in.
    // Its mailbox for the old thread is closed and marked gone: that must not
    // be taken for the new thread's, whose address compares equal.
    QtRegistry<int> reg;
    alignas(QThread) unsigned char storage[sizeof(QThread)];
    auto *first = new (storage) QThread;
    first->start();
    QObject *ctx = new QObject;
    const auto deleteCtx = qScopeGuard([&] { delete ctx; });
    ctx->moveToThread(first);
    std::atomic<int> calls{0}, lastSeen{0};
    std::atomic<QThread *> ranIn{nullptr};
    reg.add(ctx, [&](int v) {
        ranIn.store(QThread::currentThread());
        lastSeen.store(v);
        calls.fetch_add(1);
    }, Qt::QueuedConnection);
    reg.notify(1);
    QTRY_COMPARE(calls.load(), 1);
    first->quit();
    QVERIFY(first->wait(QDeadlineTimer(30000)));
    first->~QThread();
    QCOMPARE(ctx->thread(), nullptr);

    auto *second = new (storage) QThread;
    QCOMPARE(static_cast<void *>(second), static_cast<void *>(first));
    const auto stopSecond = qScopeGuard([&] {
        second->quit();
        second->wait();
        second->~QThread();
    });
    second->start();
    QObject puller;
    puller.moveToThread(second);
    // The hand-overs through Qt's event queue, restated for ThreadSanitizer
    // (as in Worker::run()).
    std::atomic<int> handoff{0};
    bool pulled = false;
    handoff.store(1, std::memory_order_release);
    QMetaObject::invokeMethod(&puller, [&] {
        (void)handoff.load(std::memory_order_acquire);
        ctx->moveToThread(QThread::currentThread()); // allowed: it has no thread
        pulled = true;
        handoff.store(2, std::memory_order_release);
    }, Qt::BlockingQueuedConnection);
    QCOMPARE(handoff.load(std::memory_order_acquire), 2);
    QVERIFY(pulled);
    QCOMPARE(ctx->thread(), second);

    reg.notify(2);
    QTRY_COMPARE(calls.load(), 2);
    QCOMPARE(lastSeen.load(), 2);
    QCOMPARE(ranIn.load(), second);
    // Both back to this thread, which destroys them.
    handoff.store(3, std::memory_order_release);
    QMetaObject::invokeMethod(&puller, [&] {
        (void)handoff.load(std::memory_order_acquire);
        ctx->moveToThread(QCoreApplication::instance()->thread());
        puller.moveToThread(QCoreApplication::instance()->thread());
        handoff.store(4, std::memory_order_release);
    }, Qt::BlockingQueuedConnection);
    QCOMPARE(handoff.load(std::memory_order_acquire), 4);
}

void tst_QtRegistry::lostWakeupIsMadeUp()
{
    // A wake-up that cannot be posted (out of memory, simulated by a testing
    // hook) must not strand the tasks queued behind it until some later
    // notify: the consumer takes them by itself, and a BlockingQueued caller
    // does not wait forever.
    const auto stopFailing = qScopeGuard([] { (void)sigreg::qtdetail::failWakeupsForTesting(0); });
    QtRegistry<int> reg;
    std::atomic<int> queued{0}, blocking{0};

    // Before the consumer ever drained: a thread not started yet. The first
    // drain, posted when its mailbox was made, takes the task.
    QThread later;
    QObject *ctx = new QObject;
    ctx->moveToThread(&later);
    const auto stopLater = qScopeGuard([&] {
        later.quit();
        later.wait();
        delete ctx; // its thread has ended: deleted from here, as Qt allows
    });
    reg.add(ctx, [&](int) { queued.fetch_add(1); }, Qt::QueuedConnection);
    // Each step checks that its wake-up did fail (the failure asked for was
    // used), so that the recovery, not a posted wake-up, took the task.
    (void)sigreg::qtdetail::failWakeupsForTesting(1);
    reg.notify(1); // no consumer yet: nothing else can hold the mailbox
    QCOMPARE(sigreg::qtdetail::failWakeupsForTesting(0), 0);
    later.start();
    QTRY_COMPARE(queued.load(), 1);

    // Once the consumer runs, a push that comes while its drain is still
    // finishing posts nothing (the drain takes the task): such an attempt
    // tested nothing and is repeated, up to a bound.
    const auto untilAWakeupFailed = [](const auto &step) {
        for (int attempt = 0; attempt < 20; ++attempt) {
            (void)sigreg::qtdetail::failWakeupsForTesting(1);
            if (!step())
                return false;
            if (sigreg::qtdetail::failWakeupsForTesting(0) == 0)
                return true;
        }
        return false;
    };

    // After it drained: its event loop's next iteration takes the task.
    QVERIFY(untilAWakeupFailed([&] {
        const int before = queued.load();
        reg.notify(2);
        return QTest::qWaitFor([&] { return queued.load() == before + 1; }, 20000);
    }));

    // A BlockingQueued caller returns (it would wait forever otherwise). Its
    // own registry, so that its push is the notify's only one.
    QtRegistry<int> blockingReg;
    blockingReg.add(ctx, [&](int) { blocking.fetch_add(1); }, Qt::BlockingQueuedConnection);
    QVERIFY(untilAWakeupFailed([&] {
        const int before = blocking.load();
        blockingReg.notify(3);
        return blocking.load() == before + 1;
    }));
}

void tst_QtRegistry::contextThreadRestarted()
{
    // A QThread may be started again after it finished: calls queued while
    // it was stopped are dropped, later ones reach the context again, and
    // the thread's signals are connected once, not once per run.
    struct Thread : QThread {
        int finishedReceivers() const { return receivers(SIGNAL(finished())); }
    };
    QtRegistry<int> reg;
    Thread thread;
    thread.start();
    QObject *ctx = new QObject;
    ctx->moveToThread(&thread);
    std::atomic<int> calls{0}, lastSeen{0};
    reg.add(ctx, [&](int v) {
        calls.fetch_add(1);
        lastSeen.store(v);
    }, Qt::QueuedConnection);
    for (int run = 1; run <= 3; ++run) {
        reg.notify(run * 10);
        QTRY_COMPARE(calls.load(), run);
        QCOMPARE(lastSeen.load(), run * 10);
        thread.quit();
        QVERIFY(thread.wait(QDeadlineTimer(30000)));
        reg.notify(-1); // stopped: dropped
        thread.start();
    }
    QCOMPARE(calls.load(), 3);
    QCOMPARE(thread.finishedReceivers(), 1); // Sigreg's one connection, not one per run
    std::atomic<int> handoff{0}; // for ThreadSanitizer, as in Worker::run()
    handoff.store(1, std::memory_order_release);
    QMetaObject::invokeMethod(ctx, [ctx, &handoff] {
        (void)handoff.load(std::memory_order_acquire);
        delete ctx;
    }, Qt::BlockingQueuedConnection);
    thread.quit();
    QVERIFY(thread.wait(QDeadlineTimer(30000)));
}

void tst_QtRegistry::contextMovedAwayBeforeItsThreadEnded()
{
    // The worker hands its context to this thread and ends before it drains
    // again, so it never sees the move: calls still reach the context here.
    QtRegistry<int> reg;
    auto worker = std::make_unique<Worker>();
    QObject *ctx = worker->context;
    int autoCalls = 0, queuedCalls = 0, blockingCalls = 0;
    reg.add(ctx, [&](int) { ++autoCalls; }, Qt::AutoConnection);
    reg.add(ctx, [&](int) { ++queuedCalls; }, Qt::QueuedConnection);
    reg.add(ctx, [&](int) { ++blockingCalls; }, Qt::BlockingQueuedConnection);
    QThread *here = QThread::currentThread();
    QVERIFY(worker->run([ctx, here] { ctx->moveToThread(here); }));
    worker->context = nullptr; // ours now: not deleted with the worker
    worker.reset();
    const auto deleteCtx = qScopeGuard([&] { delete ctx; });
    QCOMPARE(ctx->thread(), here);
    for (int i = 0; i < 3; ++i)
        reg.notify(i);
    QTRY_COMPARE(autoCalls, 3);
    QTRY_COMPARE(queuedCalls, 3);
    QCOMPARE(blockingCalls, 3); // run before each notify returned
}

void tst_QtRegistry::blockingQueuedAfterMoveToCallerWhileOldThreadWaits()
{
    // The worker hands its context to this thread and then waits on this
    // thread (Qt's own BlockingQueuedConnection) while this thread notifies a
    // BlockingQueued handler of that context. The worker cannot hand the call
    // back: the handler must run here, not wait for the worker.
    QtRegistry<int> reg;
    Worker w;
    QObject *ctx = w.context;
    int calls = 0;
    reg.add(ctx, [&](int) { ++calls; }, Qt::BlockingQueuedConnection);
    QObject here;
    std::atomic<bool> notified{false};
    // Hand-overs through Qt's (uninstrumented) event queue, restated with
    // atomics for ThreadSanitizer, as Worker::run() does.
    std::atomic<int> toWorker{0}, toHere{0};
    toWorker.store(1, std::memory_order_release);
    QMetaObject::invokeMethod(ctx, [&] {
        (void)toWorker.load(std::memory_order_acquire);
        ctx->moveToThread(here.thread());
        toHere.store(1, std::memory_order_release);
        QMetaObject::invokeMethod(&here, [&] {
            (void)toHere.load(std::memory_order_acquire);
            reg.notify(1);
            notified.store(true);
        }, Qt::BlockingQueuedConnection);
    }, Qt::QueuedConnection);
    QTRY_VERIFY_WITH_TIMEOUT(notified.load(), 30000);
    QCOMPARE(calls, 1);
    QVERIFY(w.run([] {})); // the worker is free again
    w.context = nullptr;   // lives here now: deleted here
    delete ctx;
}

namespace {
/// Context-read hook (plain function pointer: static state) that holds the
/// first read by thread `holdIn` of `target`'s thread until `until` is set
/// (bounded: the bound only ends the wait; the tests assert on outcomes).
struct HoldReadProbe {
    static inline std::atomic<QObject *> target{nullptr};
    static inline std::atomic<QThread *> holdIn{nullptr};
    static inline std::atomic<bool> held{false};
    static inline std::atomic<bool> until{false};
    static inline std::atomic<bool> timedOut{false}; // released by the bound, not by `until`
    // Reads by threads other than `holdIn`, counted for the second test.
    static inline std::atomic<int> otherReads{0};

    static void reset(QObject *t, QThread *in)
    {
        held = false;
        until = false;
        timedOut = false;
        otherReads = 0;
        holdIn = in;
        target = t;
    }
    static void hook(QObject *context)
    {
        if (context != target.load())
            return;
        if (QThread::currentThread() != holdIn.load()) {
            ++otherReads;
            return;
        }
        if (held.exchange(true))
            return;
        timedOut = !sigreg_test::spinUntil([] { return until.load(); });
    }
    static auto install(QObject *t, QThread *in)
    {
        reset(t, in);
        sigreg::qtdetail::setContextReadHookForTesting(&HoldReadProbe::hook);
        return qScopeGuard([] {
            sigreg::qtdetail::setContextReadHookForTesting(nullptr);
            target = nullptr;
        });
    }
};
} // namespace

void tst_QtRegistry::contextMovingBackAndForthKeepsNoMorePerMove()
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    QSKIP("mallinfo2() does not see a sanitizer's allocator");
#else
    // A handler keeps every mailbox its context's thread ever had alive (a
    // notifier may still hold one). Kept once each: a context that moves
    // back and forth between two threads for the handler's whole life must
    // not make it hold one more entry per move.
    sigreg_test::Worker w1("mover-1"), w2("mover-2");
    QtRegistry<int> reg;
    QObject *ctx = w1.context;
    w1.context = nullptr; // deleted below
    std::atomic<int> received{0};
    reg.add(ctx, [&](int) { ++received; }, Qt::QueuedConnection);
    const auto moves = [&](int n) {
        for (int i = 0; i < n; ++i) {
            sigreg_test::Worker &from = (i % 2) ? w2 : w1;
            sigreg_test::Worker &to = (i % 2) ? w1 : w2;
            QVERIFY(from.run([&] { ctx->moveToThread(to.thread()); }));
            QVERIFY(to.run([&] { reg.notify(1); })); // queued to the old thread first: rebinds
            to.sync();
        }
    };
    const auto heapInUse = [] {
        const struct mallinfo2 m = mallinfo2();
        return qint64(m.uordblks + m.hblkhd);
    };
    moves(1000); // warm-up: pools, Qt's caches
    const qint64 before = heapInUse();
    moves(16000);
    const qint64 grown = heapInUse() - before;
    QTRY_COMPARE(received.load(), 17000);
    // Kept once, it grows by about 2-3 KiB here (noise); with an entry for
    // every move that rebinds, by about 50 KiB.
    QVERIFY2(grown < 16 * 1024, qPrintable(QStringLiteral("the heap grew by %1 bytes over 16000 moves").arg(grown)));
    QVERIFY(w1.run([ctx] { delete ctx; }));
#endif
}

void tst_QtRegistry::notifierThatLosesTheRaceToRecordAMoveQueues()
{
    // The context moves from this thread to a worker. This thread notifies a
    // BlockingQueued handler: it finds the context gone from the thread it
    // was last seen in (here) and is held (test hook) before it records the
    // worker. Meanwhile another thread's notify records the move first, and
    // the handler runs in the worker. This thread's compare-exchange then
    // fails, and it must still answer "not here" and queue to the worker.
    // Before the fix, the failed exchange overwrote the thread it compared
    // with (this one) by the one it lost to (the worker), and the answer
    // "context thread == this thread" came out true: the handler ran inline
    // here, where its context no longer lives.
    Worker w;
    QtRegistry<int> reg;
    auto *ctx = new QObject;
    std::atomic<int> inWorker{0}, elsewhere{0};
    reg.add(ctx, [&](int) {
        if (QThread::currentThread() == w.thread())
            inWorker.fetch_add(1);
        else
            elsewhere.fetch_add(1);
        if (HoldReadProbe::held.load())
            HoldReadProbe::until = true; // the other thread's call has run
    }, Qt::BlockingQueuedConnection);
    reg.notify(0); // inline: the context lives here
    QCOMPARE(elsewhere.load(), 1);
    ctx->moveToThread(w.thread());
    const auto unhook = HoldReadProbe::install(ctx, QThread::currentThread());
    std::thread other([&] {
        (void)sigreg_test::spinUntil([] { return HoldReadProbe::held.load(); });
        reg.notify(2); // records the move, runs in the worker, returns
    });
    reg.notify(1);
    other.join();
    QVERIFY(HoldReadProbe::held.load());
    QVERIFY(!HoldReadProbe::timedOut.load()); // the other thread's call ran inside the window
    QCOMPARE(elsewhere.load(), 1);            // only notify(0)
    QCOMPARE(inWorker.load(), 2);
    QVERIFY(w.run([ctx] { delete ctx; }));
    QCOMPARE(reg.count(), 0);
}

void tst_QtRegistry::blockingQueuedFindsTheContextMovedToItMeanwhile()
{
    // This thread notifies a BlockingQueued handler whose context lives in a
    // worker, and is held (test hook) right after it read the context's
    // thread (the worker). Meanwhile the worker moves the context here and
    // notifies too, which records the move. This thread then queues to where
    // the context is now recorded: its own mailbox, which nothing drains
    // while it waits. It must run the call itself. Before the fix it queued
    // and waited forever (and the worker with it): a hang, ctest's timeout.
    Worker w;
    QtRegistry<int> reg;
    QObject *ctx = w.context;
    w.context = nullptr; // moved here below: deleted here
    QThread *const here = QThread::currentThread();
    std::atomic<int> inHere{0}, elsewhere{0};
    reg.add(ctx, [&](int) { (QThread::currentThread() == here ? inHere : elsewhere).fetch_add(1); },
            Qt::BlockingQueuedConnection);
    const auto unhook = HoldReadProbe::install(ctx, here);
    std::atomic<bool> workerNotified{false};
    // Should a check below fail, the worker may still wait for this thread's
    // mailbox: drain it before the worker is stopped (which waits for it).
    const auto settle = qScopeGuard([&] { (void)QTest::qWaitFor([&] { return workerNotified.load(); }, 20000); });
    QMetaObject::invokeMethod(ctx, [&] {
        (void)sigreg_test::spinUntil([] { return HoldReadProbe::held.load(); });
        ctx->moveToThread(here);
        reg.notify(2); // queued to this thread's mailbox; waits for it
        workerNotified = true;
    }, Qt::QueuedConnection);
    // The worker's notify reads the context's thread twice: where it finds
    // the context gone (before it records the move) and again for the
    // blocking call (after). The second read releases this thread.
    std::thread releaser([] {
        if (sigreg_test::spinUntil([] { return HoldReadProbe::otherReads.load() >= 2; }))
            HoldReadProbe::until = true; // else the hook times out, and the test says so
    });
    reg.notify(1);
    releaser.join();
    QVERIFY(HoldReadProbe::held.load());
    QVERIFY(!HoldReadProbe::timedOut.load()); // the worker recorded the move inside the window
    QCOMPARE(inHere.load(), 1);               // notify(1), run by this thread itself
    QTRY_VERIFY_WITH_TIMEOUT(workerNotified.load(), 30000); // drains the worker's call
    QCOMPARE(inHere.load(), 2);
    QCOMPARE(elsewhere.load(), 0);
    QVERIFY(w.run([] {}));
    delete ctx;
    QCOMPARE(reg.count(), 0);
}

void tst_QtRegistry::inlineFailureReported()
{
    QtRegistry<int> reg;
    QSignalSpy spy(&reg, &sigreg::QtRegistryBase::handlerFailed);
    std::vector<std::pair<quint64, std::string>> seen;
    reg.setErrorHandler([&](const sigreg::HandlerFailure &f) {
        seen.emplace_back(f.handler.value(), std::string(f.message()));
    });
    int sibling = 0;
    const HandlerId bad = reg.add([](int) { throw std::runtime_error("boom"); });
    reg.add([&](int) { ++sibling; });
    const HandlerId weird = reg.add([](int) { throw 42; });
    reg.notify(1);
    QCOMPARE(sibling, 1);
    QCOMPARE(spy.count(), 2);
    QCOMPARE(spy.at(0).at(0).toULongLong(), bad.value());
    QCOMPARE(spy.at(0).at(1).toString(), QStringLiteral("boom"));
    QCOMPARE(spy.at(1).at(0).toULongLong(), weird.value());
    QCOMPARE(seen.size(), std::size_t(2));
    QCOMPARE(seen[0].first, bad.value());
    QCOMPARE(seen[0].second, std::string("boom"));
    QCOMPARE(reg.failureCount(), quint64(2));
    reg.resetErrorHandler();
    reg.notify(2);
    QCOMPARE(seen.size(), std::size_t(2));
    QCOMPARE(spy.count(), 4);
    QCOMPARE(reg.failureCount(), quint64(4));
}

void tst_QtRegistry::marshalledFailureReported()
{
    Worker w;
    QtRegistry<int> reg;
    QSignalSpy spy(&reg, &sigreg::QtRegistryBase::handlerFailed);
    std::atomic<QThread *> reportedIn{nullptr};
    std::atomic<std::uint64_t> reportedId{0};
    reg.setErrorHandler([&](const sigreg::HandlerFailure &f) {
        reportedIn = QThread::currentThread();
        reportedId = f.handler.value();
    });
    std::atomic<int> sibling{0};
    const HandlerId bad = reg.add(w.context, [](int) { throw std::logic_error("far away"); });
    reg.add(w.context, [&](int) { ++sibling; });
    reg.notify(1);
    w.sync();
    QCOMPARE(sibling.load(), 1);
    QCOMPARE(reportedId.load(), bad.value());
    QCOMPARE(reportedIn.load(), w.thread());
    QTRY_COMPARE(spy.count(), 1); // emitted in the worker (QSignalSpy appends there, directly; w.sync() above ordered it before this read)
    QCOMPARE(spy.at(0).at(0).toULongLong(), bad.value());
    QCOMPARE(spy.at(0).at(1).toString(), QStringLiteral("far away"));
    QCOMPARE(reg.failureCount(), quint64(1));
}

void tst_QtRegistry::removalDoesNotWaitForTheErrorHandlerOfAMarshalledCall()
{
    // A queued handler throws in its context's thread, and its error handler
    // (run there) blocks on a mutex that this thread holds. The call is over,
    // so a removal from a third thread must not wait for the error handler.
    Worker w;
    QtRegistry<int> reg;
    sigreg_test::BlockingErrorHandler errors(reg);
    const HandlerId x = reg.add(w.context, [](int) { throw std::runtime_error("marshalled"); },
                                Qt::QueuedConnection);
    reg.notify(1);
    const bool reached = errors.waitUntilBlocked();
    const bool returned = reached && errors.removalReturnsWhileBlocked([&] { reg.remove(x); });
    errors.release();
    w.sync();
    QVERIFY(reached);
    QCOMPARE(errors.reported(), x.value());
    QVERIFY2(returned, "remove() waited for the error handler of a call that was over");
    QVERIFY(!reg.contains(x));
}

void tst_QtRegistry::failureSlotAndCallbackMayThrow_data()
{
    QTest::addColumn<bool>("slotThrows");
    QTest::newRow("the error handler throws") << false;
    // They shared one try block before: the error handler was skipped.
    QTest::newRow("a handlerFailed() slot throws") << true;
}

void tst_QtRegistry::failureSlotAndCallbackMayThrow()
{
    // Whichever of the two throws, nothing escapes notify(), the sibling
    // runs, and the other one is still called.
    QFETCH(bool, slotThrows);
    QtRegistry<int> reg;
    int slotCalls = 0, callbackCalls = 0;
    reg.setErrorHandler([&](const sigreg::HandlerFailure &) {
        ++callbackCalls;
        if (!slotThrows)
            throw std::runtime_error("callback");
    });
    connect(&reg, &sigreg::QtRegistryBase::handlerFailed, &reg, [&] {
        ++slotCalls;
        if (slotThrows)
            throw std::runtime_error("slot");
    });
    reg.add([](int) { throw std::runtime_error("handler"); });
    int sibling = 0;
    reg.add([&](int) { ++sibling; });
    reg.notify(1);
    QCOMPARE(sibling, 1);
    QCOMPARE(slotCalls, 1);
    QCOMPARE(callbackCalls, 1);
    QCOMPARE(reg.failureCount(), quint64(1));
}

QTEST_GUILESS_MAIN(tst_QtRegistry)
#include "tst_qtregistry.moc"
