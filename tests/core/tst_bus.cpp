// SPDX-License-Identifier: MIT
// Qt Test suite for sigreg::Bus (the typed event bus) and sigreg::Receiver:
// channels created on demand, push handlers (priorities, deduction, guards,
// removal), pull receivers (no replay, FIFO, exact lag counts, Empty /
// TimedOut / Closed, blocking receives across threads, receivers outliving
// the bus), failure isolation, shutdown, capacity errors and type identity.
// The multi-threaded stress cases are in tst_busstress.cpp; identity across
// shared libraries in tst_busplugin.cpp.
//
// No assertion measures time beyond "a timeout waited at least its timeout".
// The few sleeps only make a scenario likely (a receiver already blocked)
// and never decide a result. Failures on worker threads are recorded and
// checked on the main thread after join().
#include <sigreg/bus.h>

#include <QtTest/QTest>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

// Event types with readable qualified names (checked in BusFailure::eventType).
namespace busevents {

struct Ping {
    int value = 0;
};
struct Pong {
    int value = 0;
};
struct Unused {
    int value = 0;
};
struct Failing {
    int value = 0;
};

/// An event whose copy constructor throws on the n-th copy counted down by
/// `countdown` (0: never).
struct Fragile {
    static inline int countdown = 0;
    explicit Fragile(int v) : value(v) {}
    Fragile(const Fragile &o) : value(o.value)
    {
        if (countdown > 0 && --countdown == 0)
            throw std::runtime_error("Fragile: copy failed");
    }
    Fragile(Fragile &&) noexcept = default;
    Fragile &operator=(const Fragile &) = default;
    Fragile &operator=(Fragile &&) noexcept = default;
    ~Fragile() = default;
    int value;
};

/// No move constructor (moves copy), and the copy throws on the n-th copy
/// counted down by `countdown` (0: never): taking it from a receiver throws.
struct Sticky {
    static inline int countdown = 0;
    explicit Sticky(int v) : value(v) {}
    Sticky(const Sticky &o) : value(o.value)
    {
        if (countdown > 0 && --countdown == 0)
            throw std::runtime_error("Sticky: copy failed");
    }
    Sticky &operator=(const Sticky &) = default;
    ~Sticky() = default;
    int value;
};

/// Counts its copies; carries a payload that a receiver can modify.
struct Counted {
    static inline int copies = 0;
    explicit Counted(std::vector<int> p) : payload(std::move(p)) {}
    Counted(const Counted &o) : payload(o.payload) { ++copies; }
    Counted(Counted &&) noexcept = default;
    Counted &operator=(const Counted &) = default;
    Counted &operator=(Counted &&) noexcept = default;
    ~Counted() = default;
    std::vector<int> payload;
};

/// Neither copyable nor movable: push handlers only.
struct Pinned {
    explicit Pinned(int v) : value(v) {}
    Pinned(const Pinned &) = delete;
    Pinned &operator=(const Pinned &) = delete;
    int value;
};

/// Move-only: push handlers only.
struct MoveOnly {
    explicit MoveOnly(int v) : value(std::make_unique<int>(v)) {}
    std::unique_ptr<int> value;
};

struct Base {
    int value = 0;
};
struct Derived : Base {
};

} // namespace busevents

// Same definition as in tst_bus_anon.cpp: one type with external linkage.
namespace tst_bus_twin {
struct BusTwinEvent {
    int value = 0;
};
} // namespace tst_bus_twin

// Implemented in tst_bus_anon.cpp, on its own anonymous-namespace types.
namespace tst_bus_other {
void onLocal(sigreg::Bus &bus, std::vector<int> *seen);
void emitLocal(sigreg::Bus &bus, int value);
bool hasLocalChannel(const sigreg::Bus &bus);
std::size_t localHandlerCount(const sigreg::Bus &bus);
void onBoxed(sigreg::Bus &bus, std::vector<int> *seen);
void emitBoxed(sigreg::Bus &bus, int value);
void emitTwin(sigreg::Bus &bus, int value);
const std::type_info &localTypeInfo();
} // namespace tst_bus_other

namespace {

using busevents::Ping;
using busevents::Pong;
using sigreg::Bus;
using sigreg::HandlerId;
using sigreg::ReceiveResult;
using sigreg::ReceiveStatus;
using sigreg::Receiver;
using sigreg::Sender;
using Clock = std::chrono::steady_clock;

// Spelled like the anonymous-namespace types of tst_bus_anon.cpp.
struct LocalEvent {
    int value = 0;
};
template <class T>
struct Boxed {
    T inner;
};

// How long we wait for something that must happen unless the bus is broken.
// Generous: only reached on failure.
constexpr auto kWatchdog = 30s;

// ---------------------------------------------------------------------------
// Compile-time properties.
// ---------------------------------------------------------------------------
static_assert(!std::is_copy_constructible_v<Receiver<Ping>> && !std::is_copy_assignable_v<Receiver<Ping>>,
              "a receiver owns a subscription: move-only");
static_assert(std::is_nothrow_move_constructible_v<Receiver<Ping>>);
static_assert(std::is_nothrow_move_assignable_v<Receiver<Ping>>);
static_assert(std::is_nothrow_default_constructible_v<Receiver<Ping>>);
static_assert(!std::is_copy_constructible_v<Bus> && !std::is_move_constructible_v<Bus>);
static_assert(std::is_base_of_v<sigreg::HandlerFailure, sigreg::BusFailure>);
static_assert(sigreg::toString(ReceiveStatus::Lagged) == "Lagged");
static_assert(sigreg::toString(ReceiveStatus::Closed) == "Closed");
// emit() never throws, whatever the handlers do.
static_assert(noexcept(std::declval<const Bus &>().emit(std::declval<const Ping &>())));

// The event type deduced from a handler's parameter.
template <class F>
using Deduced = typename sigreg::detail::BusEventOf<sigreg::detail::DeduceEvent, F>::type;
inline void freePingHandler(const Ping &) {}
static_assert(std::is_same_v<Deduced<decltype([](const Ping &) {})>, Ping>);
static_assert(std::is_same_v<Deduced<decltype([](Pong) {})>, Pong>);
static_assert(std::is_same_v<Deduced<decltype([](const Ping &) mutable {})>, Ping>);
static_assert(std::is_same_v<Deduced<decltype([](const Ping &) noexcept {})>, Ping>);
static_assert(std::is_same_v<Deduced<decltype(&freePingHandler)>, Ping>);
static_assert(std::is_same_v<Deduced<std::function<void(const Pong &)>>, Pong>);
// Ref-qualified call operators, with and without noexcept: every one a
// handler can be called through (the registry calls an lvalue).
struct PingRefFunctor {
    void operator()(const Ping &) & {}
};
struct PingConstRefFunctor {
    void operator()(const Ping &) const & {}
};
struct PingRefNoexceptFunctor {
    void operator()(const Ping &) & noexcept {}
};
struct PingConstRefNoexceptFunctor {
    void operator()(const Ping &) const & noexcept {}
};
static_assert(std::is_same_v<Deduced<PingRefFunctor>, Ping>);
static_assert(std::is_same_v<Deduced<PingConstRefFunctor>, Ping>);
static_assert(std::is_same_v<Deduced<PingRefNoexceptFunctor>, Ping>);
static_assert(std::is_same_v<Deduced<PingConstRefNoexceptFunctor>, Ping>);

// QCOMPARE cannot print ReceiveStatus itself (ADL finds sigreg::toString,
// which returns a string_view): compare the names, which also reads well.
QByteArray statusName(ReceiveStatus s)
{
    const std::string_view v = sigreg::toString(s);
    return QByteArray(v.data(), qsizetype(v.size()));
}
#define QCOMPARE_STATUS(result, expected) QCOMPARE(statusName((result).status()), statusName(ReceiveStatus::expected))

/// Takes what the receiver holds now, as a list of values (-1 - n for a
/// Lagged(n) report), until Empty or Closed.
template <class E>
QList<qint64> drain(Receiver<E> &rx)
{
    QList<qint64> out;
    for (;;) {
        ReceiveResult<E> r = rx.tryReceive();
        if (r.status() == ReceiveStatus::Received)
            out.push_back(r->value);
        else if (r.status() == ReceiveStatus::Lagged)
            out.push_back(-1 - qint64(r.lagged()));
        else
            return out;
    }
}

QList<qint64> range(qint64 from, qint64 to) // [from, to)
{
    QList<qint64> out;
    for (qint64 i = from; i < to; ++i)
        out.push_back(i);
    return out;
}

QList<int> expectedOrder(const QList<int> &priorities)
{
    QList<int> order(priorities.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return priorities[a] > priorities[b]; });
    return order;
}

/// A BusFailure copied out of the error handler (its string_view dies with the call).
struct Failure {
    HandlerId handler;
    std::string eventType;
    std::string message;
    bool receiver = false;
};

} // namespace

class tst_Bus : public QObject {
    Q_OBJECT

private Q_SLOTS:
    // channels
    void channelsAreCreatedOnDemand();
    void emitWithoutListenerIsNoOp();
    // push handlers
    void handlerPriorities_data();
    void handlerPriorities();
    void eventTypeDeducedFromHandler();
    void guardedHandlerIsRemovedByItsGuard();
    void removeById();
    void exactTypeMatching();
    void nonCopyableEventsWithHandlers();
    // receivers
    void noReplay();
    void fifoOrder();
    void exactLagCounts_data();
    void exactLagCounts();
    void lagAfterPartialDrain();
    void pendingAndMissedCount();
    void emptyAndTimedOut();
    void unboundedTimeoutsWaitWithoutDeadline();
    void pastDeadlinesOfAnyClockLookOnce();
    void unsubscribeDrainsThenCloses();
    void receiverOutlivesBus();
    void defaultConstructedReceiverIsClosed();
    void receiverMoves();
    void valueThrowsWithoutEvent();
    void receiversGetIndependentCopies();
    void receiversBeforeHandlers();
    void nestedEmitOrder();
    // blocking
    void receiveForTimesOut();
    void blockingReceiveWakesOnEmit_data();
    void blockingReceiveWakesOnEmit();
    void receiveUnblocksWhenBusDestroyed_data();
    void receiveUnblocksWhenBusDestroyed();
    void publishFromADestructorDuringBusDestruction_data();
    void publishFromADestructorDuringBusDestruction();
    // failures
    void throwingHandlerIsIsolated();
    void throwingCopyMarksEventMissed();
    void throwingMoveKeepsEvent_data();
    void throwingMoveKeepsEvent();
    void unhandledFailures();
    // lifecycle and errors
    void shutdownEmittedOnce();
    void shutdownEmittedOnceConcurrently();
    void capacityErrors();
    // the direct slots of emit's common path
    void receiversComeAndGo();
    void handlersChangeUnderDirectSlot();
    void typesBeyondTheDirectSlots();
    void sendersTakeTheSamePaths();
    // identity
    void anonymousTypesDoNotShareChannels();
    void sameTypeInTwoFilesSharesChannel();
    void clangSpellingsOfFileLocalTypes_data();
    void clangSpellingsOfFileLocalTypes();
};

// ===========================================================================
// channels
// ===========================================================================

void tst_Bus::channelsAreCreatedOnDemand()
{
    Bus bus;
    QCOMPARE(bus.typeCount(), std::size_t(0));
    QVERIFY(!bus.hasChannel<Ping>());
    QVERIFY(!bus.hasChannel<Pong>());
    QCOMPARE(bus.handlerCount<Ping>(), std::size_t(0));
    QCOMPARE(bus.receiverCount<Pong>(), std::size_t(0));

    // Emitting never creates a channel.
    bus.emit(Ping{1});
    bus.emit(busevents::Unused{});
    QCOMPARE(bus.typeCount(), std::size_t(0));
    QVERIFY(!bus.hasChannel<Ping>());

    // A handler creates its type's channel, and only that one.
    const HandlerId id = bus.on([](const Ping &) {});
    QCOMPARE(bus.typeCount(), std::size_t(1));
    QVERIFY(bus.hasChannel<Ping>());
    QVERIFY(!bus.hasChannel<Pong>());
    QCOMPARE(bus.handlerCount<Ping>(), std::size_t(1));
    QCOMPARE(bus.receiverCount<Ping>(), std::size_t(0));

    // A second handler of the same type: no new channel.
    bus.on([](const Ping &) {});
    QCOMPARE(bus.typeCount(), std::size_t(1));
    QCOMPARE(bus.handlerCount<Ping>(), std::size_t(2));

    // A receiver creates its type's channel.
    {
        Receiver<Pong> rx = bus.subscribe<Pong>();
        QCOMPARE(bus.typeCount(), std::size_t(2));
        QVERIFY(bus.hasChannel<Pong>());
        QCOMPARE(bus.receiverCount<Pong>(), std::size_t(1));
        QCOMPARE(bus.handlerCount<Pong>(), std::size_t(0));
        Receiver<Ping> rx2 = bus.subscribe<Ping>();
        QCOMPARE(bus.typeCount(), std::size_t(2));
        QCOMPARE(bus.receiverCount<Ping>(), std::size_t(1));
    }
    QCOMPARE(bus.receiverCount<Pong>(), std::size_t(0));
    QCOMPARE(bus.receiverCount<Ping>(), std::size_t(0));

    // Channels stay when their last listener goes.
    QVERIFY(bus.remove<Ping>(id));
    QCOMPARE(bus.handlerCount<Ping>(), std::size_t(1));
    QVERIFY(bus.hasChannel<Pong>());
    QCOMPARE(bus.typeCount(), std::size_t(2));

    // Still no channel for the type that was only emitted.
    bus.emit(busevents::Unused{});
    QVERIFY(!bus.hasChannel<busevents::Unused>());
    QCOMPARE(bus.typeCount(), std::size_t(2));

    // Channels belong to one bus.
    Bus other;
    QCOMPARE(other.typeCount(), std::size_t(0));
    QVERIFY(!other.hasChannel<Ping>());
}

void tst_Bus::emitWithoutListenerIsNoOp()
{
    Bus bus;
    int pings = 0;
    bus.emit(Ping{1}); // no channel at all
    QCOMPARE(bus.failureCount(), std::uint64_t(0));

    // A channel whose handlers and receivers are all gone again.
    {
        sigreg::Guard g = bus.onGuarded([&](const Ping &) { ++pings; });
        Receiver<Ping> rx = bus.subscribe<Ping>();
    }
    QVERIFY(bus.hasChannel<Ping>());
    bus.emit(Ping{2});
    QCOMPARE(pings, 0);

    // A handler of another type is not called.
    bus.on([&](const Pong &) { ++pings; });
    bus.emit(Ping{3});
    QCOMPARE(pings, 0);
    QCOMPARE(bus.failureCount(), std::uint64_t(0));
    QCOMPARE(bus.unhandledFailureCount(), std::uint64_t(0));
}

// ===========================================================================
// push handlers
// ===========================================================================

void tst_Bus::handlerPriorities_data()
{
    QTest::addColumn<QList<int>>("priorities");
    QTest::newRow("all equal") << QList<int>{0, 0, 0, 0};
    QTest::newRow("ascending") << QList<int>{-2, -1, 0, 1, 2};
    QTest::newRow("descending") << QList<int>{5, 3, 1, -1};
    QTest::newRow("ties mixed") << QList<int>{1, 0, 1, -1, 0, 1, INT_MAX, INT_MIN, 0};
    QList<int> many;
    std::uint32_t x = 7;
    for (int i = 0; i < 60; ++i) {
        x = x * 1664525u + 1013904223u;
        many.push_back(int((x >> 8) % 7u) - 3);
    }
    QTest::newRow("60 pseudo-random with ties") << many;
}

void tst_Bus::handlerPriorities()
{
    QFETCH(QList<int>, priorities);
    Bus bus;
    QList<int> calls;
    std::vector<sigreg::Guard> guards;
    for (int i = 0; i < priorities.size(); ++i) {
        auto h = [&calls, i](const Ping &) { calls.push_back(i); };
        // Mix the three forms: on(priority, f), onGuarded(priority, f), on<E>(priority, f).
        if (i % 3 == 0)
            bus.on(priorities[i], h);
        else if (i % 3 == 1)
            guards.push_back(bus.onGuarded(priorities[i], h));
        else
            bus.on<Ping>(priorities[i], h);
    }
    bus.emit(Ping{});
    QCOMPARE(calls, expectedOrder(priorities));

    // Plain on(f) is priority 0, after existing priority-0 handlers.
    calls.clear();
    const int last = int(priorities.size());
    bus.on([&calls, last](const Ping &) { calls.push_back(last); });
    QList<int> withZero = priorities;
    withZero.push_back(0);
    bus.emit(Ping{});
    QCOMPARE(calls, expectedOrder(withZero));
}

namespace {
int g_freeHandlerCalls = 0;
void freeHandler(const Ping &p)
{
    g_freeHandlerCalls += p.value;
}
struct PongFunctor {
    int *sum;
    void operator()(const Pong &p) const { *sum += p.value; }
};
struct PingNoexceptFunctor {
    int *sum;
    void operator()(const Ping &p) noexcept { *sum += p.value; }
};
} // namespace

void tst_Bus::eventTypeDeducedFromHandler()
{
    Bus bus;
    g_freeHandlerCalls = 0;
    int pingSum = 0;
    int pongSum = 0;
    bus.on([&](const Ping &p) { pingSum += p.value; });          // const E&
    bus.on([&](Pong p) { pongSum += p.value; });                 // by value
    bus.on(&freeHandler);                                         // function pointer
    bus.on(freeHandler);                                          // function
    bus.on(PongFunctor{&pongSum});                                // const call operator
    bus.on(PingNoexceptFunctor{&pingSum});                        // non-const noexcept
    bus.on(std::function<void(const Pong &)>([&](const Pong &p) { pongSum += p.value; }));
    bus.on([&pingSum, last = 0](const Ping &p) mutable { pingSum += p.value - last; last = 0; }); // mutable
    bus.on(3, [&](const Ping &p) noexcept { pingSum += p.value; }); // with a priority
    sigreg::Guard g = bus.onGuarded([&](const Pong &p) { pongSum += p.value; });
    // A generic lambda needs the type named.
    bus.on<Ping>([&](const auto &p) { pingSum += p.value; });

    QCOMPARE(bus.handlerCount<Ping>(), std::size_t(7));
    QCOMPARE(bus.handlerCount<Pong>(), std::size_t(4));
    QCOMPARE(bus.typeCount(), std::size_t(2));

    bus.emit(Ping{1});
    QCOMPARE(pingSum, 5); // five Ping handlers besides the two free-function ones
    QCOMPARE(g_freeHandlerCalls, 2);
    QCOMPARE(pongSum, 0);
    bus.emit(Pong{10});
    QCOMPARE(pongSum, 40);
    QCOMPARE(pingSum, 5);
}

void tst_Bus::guardedHandlerIsRemovedByItsGuard()
{
    Bus bus;
    int calls = 0;
    {
        sigreg::Guard g = bus.onGuarded([&](const Ping &) { ++calls; });
        QVERIFY(g.isActive());
        QCOMPARE(bus.handlerCount<Ping>(), std::size_t(1));
        bus.emit(Ping{});
        QCOMPARE(calls, 1);
    }
    QCOMPARE(bus.handlerCount<Ping>(), std::size_t(0));
    bus.emit(Ping{});
    QCOMPARE(calls, 1);

    sigreg::Guard g2 = bus.onGuarded<Ping>(5, [&](const Ping &) { calls += 10; });
    bus.emit(Ping{});
    QCOMPARE(calls, 11);
    QVERIFY(g2.reset());
    QVERIFY(!g2.reset());
    bus.emit(Ping{});
    QCOMPARE(calls, 11);

    // A released guard leaves the handler registered; remove<E>() takes it.
    const HandlerId kept = bus.onGuarded([&](const Ping &) { calls += 100; }).release();
    bus.emit(Ping{});
    QCOMPARE(calls, 111);
    QVERIFY(bus.remove<Ping>(kept));

    // A guard outliving its bus is harmless.
    auto shortLived = std::make_unique<Bus>();
    sigreg::Guard orphan = shortLived->onGuarded([&](const Ping &) { ++calls; });
    shortLived.reset();
    QVERIFY(orphan.isActive());
    QVERIFY(!orphan.reset());
}

void tst_Bus::removeById()
{
    Bus bus;
    QList<int> calls;
    const HandlerId a = bus.on([&](const Ping &) { calls.push_back(1); });
    const HandlerId b = bus.on([&](const Ping &) { calls.push_back(2); });
    QVERIFY(a.isValid() && b.isValid() && a != b);
    QVERIFY(bus.remove<Ping>(a));
    QVERIFY(!bus.remove<Ping>(a)); // once only
    bus.emit(Ping{});
    QCOMPARE(calls, QList<int>{2});
    QCOMPARE(bus.handlerCount<Ping>(), std::size_t(1));

    // A type without a channel: false, and still no channel.
    QVERIFY(!bus.remove<busevents::Unused>(b));
    QVERIFY(!bus.hasChannel<busevents::Unused>());
    QVERIFY(!bus.remove<Ping>(HandlerId()));
    QVERIFY(!bus.remove<Ping>(HandlerId(9999)));

    // A handler removing itself while it runs.
    HandlerId self;
    int selfCalls = 0;
    bool removed = false;
    self = bus.on([&](const Ping &) {
        ++selfCalls;
        removed = bus.remove<Ping>(self);
    });
    bus.emit(Ping{});
    bus.emit(Ping{});
    QCOMPARE(selfCalls, 1);
    QVERIFY(removed);
    QCOMPARE(calls, (QList<int>{2, 2, 2}));
}

void tst_Bus::exactTypeMatching()
{
    Bus bus;
    int baseCalls = 0;
    bus.on([&](const busevents::Base &b) { baseCalls += b.value; });
    busevents::Derived d;
    d.value = 5;
    bus.emit(d); // the static type is Derived: no subscriber
    QCOMPARE(baseCalls, 0);
    QVERIFY(!bus.hasChannel<busevents::Derived>());
    bus.emit<busevents::Base>(d); // explicitly as Base
    QCOMPARE(baseCalls, 5);
}

void tst_Bus::nonCopyableEventsWithHandlers()
{
    static_assert(!std::is_copy_constructible_v<busevents::Pinned> && !std::is_move_constructible_v<busevents::Pinned>);
    static_assert(!std::is_copy_constructible_v<busevents::MoveOnly>);
    Bus bus;
    const busevents::Pinned *seen = nullptr;
    int sum = 0;
    bus.on([&](const busevents::Pinned &p) {
        seen = &p;
        sum += p.value;
    });
    bus.on(-1, [&](const busevents::Pinned &p) { sum += (seen == &p) ? 100 : 0; }); // the same object
    const busevents::Pinned pinned(7);
    bus.emit(pinned);
    QCOMPARE(seen, &pinned);
    QCOMPARE(sum, 107);

    int moveOnlySum = 0;
    bus.on([&](const busevents::MoveOnly &m) { moveOnlySum += *m.value; });
    bus.emit(busevents::MoveOnly(3));
    bus.emit(busevents::MoveOnly(4));
    QCOMPARE(moveOnlySum, 7);
    QCOMPARE(bus.typeCount(), std::size_t(2));
}

// ===========================================================================
// receivers
// ===========================================================================

void tst_Bus::noReplay()
{
    Bus bus;
    bus.on([](const Ping &) {}); // the channel exists before
    for (int i = 0; i < 5; ++i)
        bus.emit(Ping{i});
    Receiver<Ping> rx = bus.subscribe<Ping>();
    QCOMPARE(rx.pending(), std::size_t(0));
    QCOMPARE_STATUS(rx.tryReceive(), Empty);
    bus.emit(Ping{100});
    QCOMPARE(drain(rx), QList<qint64>{100});

    // A second receiver subscribed later sees only what follows.
    Receiver<Ping> late = bus.subscribe<Ping>();
    bus.emit(Ping{101});
    QCOMPARE(drain(late), QList<qint64>{101});
    QCOMPARE(drain(rx), QList<qint64>{101});
}

void tst_Bus::fifoOrder()
{
    Bus bus;
    Receiver<Ping> rx = bus.subscribe<Ping>(128);
    QCOMPARE(rx.capacity(), std::size_t(128));
    for (int i = 0; i < 100; ++i)
        bus.emit(Ping{i});
    QCOMPARE(rx.pending(), std::size_t(100));
    for (int i = 0; i < 100; ++i) {
        ReceiveResult<Ping> r = i % 2 ? rx.tryReceive() : rx.receive();
        QCOMPARE_STATUS(r, Received);
        QCOMPARE(r.value().value, i);
    }
    QCOMPARE_STATUS(rx.tryReceive(), Empty);
    // Interleaved emits and receives wrap around the ring many times.
    for (int i = 0; i < 1000; ++i) {
        bus.emit(Ping{i});
        bus.emit(Ping{-i});
        ReceiveResult<Ping> a = rx.tryReceive();
        ReceiveResult<Ping> b = rx.tryReceive();
        QVERIFY(a && b);
        QCOMPARE(a->value, i);
        QCOMPARE(b->value, -i);
    }
    QCOMPARE(rx.missedCount(), std::uint64_t(0));
}

void tst_Bus::exactLagCounts_data()
{
    QTest::addColumn<qulonglong>("capacity");
    QTest::addColumn<qulonglong>("emits");
    for (const qulonglong c : {1ull, 3ull, 4ull, 64ull, 1000ull, 10000ull}) {
        QList<qulonglong> counts{0, 1, c - 1, c, c + 1, 2 * c, 2 * c + 1, 3 * c + 2};
        if (c <= 64)
            counts.push_back(100 * c + 7);
        std::sort(counts.begin(), counts.end());
        counts.erase(std::unique(counts.begin(), counts.end()), counts.end());
        for (const qulonglong n : counts)
            QTest::addRow("capacity %llu, %llu emits", c, n) << c << n;
    }
}

void tst_Bus::exactLagCounts()
{
    QFETCH(qulonglong, capacity);
    QFETCH(qulonglong, emits);
    Bus bus;
    Receiver<Ping> rx = bus.subscribe<Ping>(std::size_t(capacity));
    QCOMPARE(rx.capacity(), std::size_t(capacity));
    for (qulonglong i = 0; i < emits; ++i)
        bus.emit(Ping{int(i)});
    QCOMPARE(rx.pending(), std::size_t(std::min(emits, capacity)));
    QCOMPARE(rx.missedCount(), std::uint64_t(0)); // not known before the receiver looks

    const qulonglong missed = emits > capacity ? emits - capacity : 0;
    if (missed) {
        ReceiveResult<Ping> r = rx.tryReceive();
        QCOMPARE_STATUS(r, Lagged);
        QCOMPARE(r.lagged(), std::uint64_t(missed));
        QVERIFY(!r.hasValue());
        QCOMPARE(rx.missedCount(), std::uint64_t(missed));
        QCOMPARE(rx.pending(), std::size_t(capacity));
    }
    // Then the retained events, oldest first, each exactly once.
    for (qulonglong i = missed; i < emits; ++i) {
        ReceiveResult<Ping> r = rx.tryReceive();
        if (r.status() != ReceiveStatus::Received || r->value != int(i))
            QFAIL(qPrintable(QStringLiteral("event %1: status %2, value %3")
                                 .arg(i)
                                 .arg(QString::fromLatin1(statusName(r.status())))
                                 .arg(r ? r->value : -1)));
    }
    QCOMPARE_STATUS(rx.tryReceive(), Empty);
    QCOMPARE(rx.pending(), std::size_t(0));
    QCOMPARE(rx.missedCount(), std::uint64_t(missed));

    // The receiver keeps working after the lag.
    bus.emit(Ping{-5});
    QCOMPARE(drain(rx), QList<qint64>{-5});
}

void tst_Bus::lagAfterPartialDrain()
{
    Bus bus;
    Receiver<Ping> rx = bus.subscribe<Ping>(4);
    for (int i = 0; i < 4; ++i) // 0..3
        bus.emit(Ping{i});
    QCOMPARE(drain(rx).size(), 4);
    for (int i = 4; i < 8; ++i) // 4..7
        bus.emit(Ping{i});
    ReceiveResult<Ping> r = rx.tryReceive();
    QVERIFY(r);
    QCOMPARE(r->value, 4);
    QCOMPARE(rx.tryReceive()->value, 5);
    // Head at 6; emitting 8..12 overwrites 6..8.
    for (int i = 8; i < 13; ++i)
        bus.emit(Ping{i});
    QCOMPARE(drain(rx), (QList<qint64>{-1 - 3, 9, 10, 11, 12}));
    QCOMPARE(rx.missedCount(), std::uint64_t(3));
    // Twelve more: 13..24, the last four retained.
    for (int i = 13; i < 25; ++i)
        bus.emit(Ping{i});
    QCOMPARE(drain(rx), (QList<qint64>{-1 - 8, 21, 22, 23, 24}));
    QCOMPARE(rx.missedCount(), std::uint64_t(11));

    // The example of the documentation: capacity 4, 10 emits.
    Receiver<Pong> doc = bus.subscribe<Pong>(4);
    for (int i = 0; i < 10; ++i)
        bus.emit(Pong{i});
    QCOMPARE(drain(doc), (QList<qint64>{-1 - 6, 6, 7, 8, 9}));
}

void tst_Bus::pendingAndMissedCount()
{
    Bus bus;
    Receiver<Ping> rx = bus.subscribe<Ping>(4);
    QCOMPARE(rx.pending(), std::size_t(0));
    QCOMPARE(rx.missedCount(), std::uint64_t(0));
    for (int i = 0; i < 3; ++i)
        bus.emit(Ping{i});
    QCOMPARE(rx.pending(), std::size_t(3));
    (void)rx.tryReceive();
    QCOMPARE(rx.pending(), std::size_t(2));
    for (int i = 3; i < 12; ++i)
        bus.emit(Ping{i});
    QCOMPARE(rx.pending(), std::size_t(4)); // at most capacity
    QCOMPARE(rx.missedCount(), std::uint64_t(0));
    ReceiveResult<Ping> r = rx.tryReceive();
    QCOMPARE_STATUS(r, Lagged);
    QCOMPARE(r.lagged(), std::uint64_t(7)); // 1..7 lost, 8..11 held
    QCOMPARE(rx.missedCount(), std::uint64_t(7));
    QCOMPARE(rx.pending(), std::size_t(4));
    QCOMPARE(rx.tryReceive()->value, 8);
    QCOMPARE(rx.pending(), std::size_t(3));
    rx.unsubscribe();
    QCOMPARE(rx.pending(), std::size_t(3)); // still held
    QCOMPARE(drain(rx), (QList<qint64>{9, 10, 11}));
    QCOMPARE(rx.pending(), std::size_t(0));
    QCOMPARE(rx.missedCount(), std::uint64_t(7));
}

void tst_Bus::emptyAndTimedOut()
{
    Bus bus;
    Receiver<Ping> rx = bus.subscribe<Ping>();
    QCOMPARE(rx.capacity(), Bus::kDefaultCapacity);
    QVERIFY(rx.isSubscribed());
    QCOMPARE_STATUS(rx.tryReceive(), Empty);
    QCOMPARE_STATUS(rx.receiveFor(0ms), TimedOut);
    QCOMPARE_STATUS(rx.receiveFor(-5ms), TimedOut);
    QCOMPARE_STATUS(rx.receiveUntil(Clock::now() - 1s), TimedOut);
    QCOMPARE_STATUS(rx.receiveUntil(std::chrono::system_clock::now()), TimedOut);
    // An event already there is returned whatever the timeout.
    bus.emit(Ping{3});
    ReceiveResult<Ping> r = rx.receiveFor(0ms);
    QCOMPARE_STATUS(r, Received);
    QCOMPARE(r->value, 3);
    bus.emit(Ping{4});
    r = rx.receiveUntil(Clock::now() - 1h);
    QCOMPARE_STATUS(r, Received);
    QCOMPARE(r->value, 4);
    QCOMPARE_STATUS(rx.tryReceive(), Empty);
}

// Timeouts and deadlines the clock cannot represent (duration::max(),
// time_point::max() of a coarse clock) wait like receive(): they used to
// overflow into a deadline in the past (signed overflow: UBSan reports it;
// without UBSan the receive timed out at once).
void tst_Bus::unboundedTimeoutsWaitWithoutDeadline()
{
    using namespace std::chrono;
    using SteadyHours = time_point<steady_clock, hours>;
    const std::vector<std::function<ReceiveResult<Ping>(Receiver<Ping> &)>> waits = {
        [](Receiver<Ping> &rx) { return rx.receiveFor(nanoseconds::max()); },
        [](Receiver<Ping> &rx) { return rx.receiveFor(hours::max()); },
        [](Receiver<Ping> &rx) { return rx.receiveFor(duration<double>(1e300)); },
        [](Receiver<Ping> &rx) { return rx.receiveFor(Receiver<Ping>::maxTimeout() * 2); },
        [](Receiver<Ping> &rx) { return rx.receiveUntil(steady_clock::time_point::max()); },
        [](Receiver<Ping> &rx) { return rx.receiveUntil(SteadyHours::max()); },
        [](Receiver<Ping> &rx) { return rx.receiveUntil(system_clock::time_point::max()); },
    };
    Bus bus;
    Receiver<Ping> rx = bus.subscribe<Ping>();
    // The producer and the closer wait a little before acting, so that the
    // receive is most likely waiting by then: a receive that timed out at
    // once (the bug) returns TimedOut only if nothing was there yet. Best
    // effort: a late wait makes the check weaker, never wrong.
    constexpr auto kHeadStart = milliseconds(20);
    for (std::size_t i = 0; i < waits.size(); ++i) {
        std::thread producer([&bus, i, kHeadStart] {
            std::this_thread::sleep_for(kHeadStart);
            bus.emit(Ping{int(i)});
        });
        const ReceiveResult<Ping> r = waits[i](rx);
        producer.join();
        QCOMPARE_STATUS(r, Received);
        QCOMPARE(r->value, int(i));
    }
    // ...and end with the closure like receive().
    std::optional<Bus> owner;
    owner.emplace();
    Receiver<Ping> last = owner->subscribe<Ping>();
    std::thread closer([&owner, kHeadStart] {
        std::this_thread::sleep_for(kHeadStart);
        owner.reset();
    });
    QCOMPARE_STATUS(last.receiveFor(hours::max()), Closed);
    closer.join();
}

void tst_Bus::pastDeadlinesOfAnyClockLookOnce()
{
    using namespace std::chrono;
    Bus bus;
    Receiver<Ping> rx = bus.subscribe<Ping>();
    QCOMPARE_STATUS(rx.receiveUntil(system_clock::time_point::min()), TimedOut);
    QCOMPARE_STATUS(rx.receiveUntil(time_point<steady_clock, hours>::min()), TimedOut);
    QCOMPARE_STATUS(rx.receiveFor(nanoseconds::min()), TimedOut);
    QCOMPARE_STATUS(rx.receiveFor(hours::min()), TimedOut);
    bus.emit(Ping{9});
    const ReceiveResult<Ping> r = rx.receiveUntil(system_clock::time_point::min());
    QCOMPARE_STATUS(r, Received);
    QCOMPARE(r->value, 9);
}

void tst_Bus::unsubscribeDrainsThenCloses()
{
    Bus bus;
    Receiver<Ping> rx = bus.subscribe<Ping>(8);
    Receiver<Ping> other = bus.subscribe<Ping>(8);
    QCOMPARE(bus.receiverCount<Ping>(), std::size_t(2));
    for (int i = 0; i < 3; ++i)
        bus.emit(Ping{i});
    rx.unsubscribe();
    QVERIFY(!rx.isSubscribed());
    QVERIFY(other.isSubscribed());
    QCOMPARE(bus.receiverCount<Ping>(), std::size_t(1));
    bus.emit(Ping{3}); // not for rx any more
    QCOMPARE(rx.pending(), std::size_t(3));
    QCOMPARE(rx.receive()->value, 0);
    QCOMPARE(rx.receiveFor(kWatchdog)->value, 1);
    QCOMPARE(rx.tryReceive()->value, 2);
    QCOMPARE_STATUS(rx.tryReceive(), Closed);
    QCOMPARE_STATUS(rx.receive(), Closed); // does not block
    QCOMPARE_STATUS(rx.receiveFor(kWatchdog), Closed);
    QCOMPARE_STATUS(rx.receiveUntil(Clock::now() + kWatchdog), Closed);
    rx.unsubscribe(); // idempotent
    QCOMPARE_STATUS(rx.tryReceive(), Closed);
    QCOMPARE(drain(other), (QList<qint64>{0, 1, 2, 3}));

    // Unsubscribing with nothing held: Closed at once.
    other.unsubscribe();
    QCOMPARE_STATUS(other.receive(), Closed);
    QCOMPARE(bus.receiverCount<Ping>(), std::size_t(0));

    // Destroying a receiver unsubscribes it.
    {
        Receiver<Ping> scoped = bus.subscribe<Ping>();
        QCOMPARE(bus.receiverCount<Ping>(), std::size_t(1));
    }
    QCOMPARE(bus.receiverCount<Ping>(), std::size_t(0));
}

void tst_Bus::receiverOutlivesBus()
{
    auto bus = std::make_unique<Bus>();
    Receiver<Ping> rx = bus->subscribe<Ping>(4);
    Receiver<Pong> empty = bus->subscribe<Pong>();
    auto token = std::make_shared<int>(0);
    bus->on([token](const Ping &) {}); // the bus owns a copy of token through the handler
    for (int i = 0; i < 6; ++i)
        bus->emit(Ping{i});
    QCOMPARE(token.use_count(), 2L);
    bus.reset();
    QCOMPARE(token.use_count(), 1L); // handlers are destroyed with the bus
    QVERIFY(!rx.isSubscribed());
    QVERIFY(!empty.isSubscribed());
    QCOMPARE(rx.pending(), std::size_t(4));
    QCOMPARE(drain(rx), (QList<qint64>{-1 - 2, 2, 3, 4, 5}));
    QCOMPARE_STATUS(rx.tryReceive(), Closed);
    QCOMPARE_STATUS(rx.receive(), Closed);
    QCOMPARE_STATUS(empty.receive(), Closed);
    QCOMPARE_STATUS(empty.receiveFor(kWatchdog), Closed);
    rx.unsubscribe(); // harmless without a bus
    QCOMPARE(rx.missedCount(), std::uint64_t(2));
}

void tst_Bus::defaultConstructedReceiverIsClosed()
{
    Receiver<Ping> rx;
    QVERIFY(!rx.isSubscribed());
    QCOMPARE(rx.capacity(), std::size_t(0));
    QCOMPARE(rx.pending(), std::size_t(0));
    QCOMPARE(rx.missedCount(), std::uint64_t(0));
    QCOMPARE_STATUS(rx.tryReceive(), Closed);
    QCOMPARE_STATUS(rx.receive(), Closed);
    QCOMPARE_STATUS(rx.receiveFor(kWatchdog), Closed);
    QCOMPARE_STATUS(rx.receiveUntil(Clock::now() + kWatchdog), Closed);
    QCOMPARE_STATUS(rx.receiveUntil(std::chrono::system_clock::now() + kWatchdog), Closed);
    rx.unsubscribe();
    QCOMPARE_STATUS(rx.tryReceive(), Closed);
}

void tst_Bus::receiverMoves()
{
    Bus bus;
    Receiver<Ping> a = bus.subscribe<Ping>(8);
    bus.emit(Ping{1});
    Receiver<Ping> b = std::move(a);
    QVERIFY(!a.isSubscribed()); // NOLINT(bugprone-use-after-move): moved-from is a closed receiver
    QCOMPARE_STATUS(a.tryReceive(), Closed);
    QVERIFY(b.isSubscribed());
    QCOMPARE(bus.receiverCount<Ping>(), std::size_t(1));
    bus.emit(Ping{2});
    QCOMPARE(drain(b), (QList<qint64>{1, 2}));

    // Move assignment drops the target's old subscription.
    Receiver<Ping> c = bus.subscribe<Ping>(8);
    QCOMPARE(bus.receiverCount<Ping>(), std::size_t(2));
    bus.emit(Ping{3});
    c = std::move(b);
    QCOMPARE(bus.receiverCount<Ping>(), std::size_t(1));
    bus.emit(Ping{4});
    QCOMPARE(drain(c), (QList<qint64>{3, 4})); // b's events; c's old ring is gone

    // Into a default-constructed one.
    Receiver<Ping> d;
    d = std::move(c);
    bus.emit(Ping{5});
    QCOMPARE(drain(d), QList<qint64>{5});
    QCOMPARE(bus.receiverCount<Ping>(), std::size_t(1));
}

void tst_Bus::valueThrowsWithoutEvent()
{
    Bus bus;
    Receiver<Ping> rx = bus.subscribe<Ping>(1);
    ReceiveResult<Ping> empty = rx.tryReceive();
    QCOMPARE_STATUS(empty, Empty);
    QVERIFY(!empty.hasValue());
    QVERIFY(!empty);
    QCOMPARE(empty.lagged(), std::uint64_t(0));
    QVERIFY_THROWS_EXCEPTION(std::logic_error, (void)empty.value());
    const ReceiveResult<Ping> &constEmpty = empty;
    QVERIFY_THROWS_EXCEPTION(std::logic_error, (void)constEmpty.value());
    QVERIFY_THROWS_EXCEPTION(std::logic_error, (void)std::move(empty).value());
    try {
        (void)rx.tryReceive().value();
        QFAIL("no exception");
    } catch (const std::logic_error &e) {
        QVERIFY2(std::string(e.what()).find("Empty") != std::string::npos, e.what());
    }

    bus.emit(Ping{1});
    bus.emit(Ping{2});
    ReceiveResult<Ping> lagged = rx.tryReceive();
    QCOMPARE_STATUS(lagged, Lagged);
    QCOMPARE(lagged.lagged(), std::uint64_t(1));
    QVERIFY_THROWS_EXCEPTION(std::logic_error, (void)lagged.value());

    ReceiveResult<Ping> got = rx.tryReceive();
    QVERIFY(got.hasValue());
    QCOMPARE(got.value().value, 2);
    QCOMPARE((*got).value, 2);
    got.value().value = 9; // a mutable copy owned by the result
    QCOMPARE(got->value, 9);
    const Ping moved = std::move(got).value();
    QCOMPARE(moved.value, 9);

    rx.unsubscribe();
    ReceiveResult<Ping> closed = rx.tryReceive();
    QCOMPARE_STATUS(closed, Closed);
    QVERIFY_THROWS_EXCEPTION(std::logic_error, (void)closed.value());
    Receiver<Ping> idle = bus.subscribe<Ping>();
    ReceiveResult<Ping> timedOut = idle.receiveFor(std::chrono::milliseconds(0));
    QCOMPARE_STATUS(timedOut, TimedOut);
    QVERIFY_THROWS_EXCEPTION(std::logic_error, (void)timedOut.value());
}

void tst_Bus::receiversGetIndependentCopies()
{
    using busevents::Counted;
    Bus bus;
    Receiver<Counted> a = bus.subscribe<Counted>(4);
    Receiver<Counted> b = bus.subscribe<Counted>(4);
    const Counted *handlerSaw = nullptr;
    bus.on([&](const Counted &c) { handlerSaw = &c; });
    Counted::copies = 0;
    const Counted original(std::vector<int>{1, 2, 3});
    bus.emit(original);
    QCOMPARE(Counted::copies, 2); // one per receiver; handlers get the original
    QCOMPARE(handlerSaw, &original);

    ReceiveResult<Counted> ra = a.tryReceive();
    ReceiveResult<Counted> rb = b.tryReceive();
    QVERIFY(ra && rb);
    QCOMPARE(Counted::copies, 2); // taking moves
    QVERIFY(&ra->payload != &rb->payload);
    ra->payload.push_back(4);
    ra->payload[0] = 100;
    QCOMPARE(rb->payload, (std::vector<int>{1, 2, 3}));
    QCOMPARE(original.payload, (std::vector<int>{1, 2, 3}));
    QCOMPARE(ra->payload, (std::vector<int>{100, 2, 3, 4}));
}

void tst_Bus::receiversBeforeHandlers()
{
    Bus bus;
    Receiver<Ping> rx = bus.subscribe<Ping>(8);
    QList<qulonglong> pendingInHandler;
    bus.on(100, [&](const Ping &) { pendingInHandler.push_back(rx.pending()); });
    bus.emit(Ping{1});
    bus.emit(Ping{2});
    // The receiver already held each event when the (highest-priority) handler ran.
    QCOMPARE(pendingInHandler, (QList<qulonglong>{1, 2}));
}

void tst_Bus::nestedEmitOrder()
{
    Bus bus;
    Receiver<Ping> rx = bus.subscribe<Ping>(16);
    Receiver<Pong> pongs = bus.subscribe<Pong>(16);
    QList<int> handled;
    bus.on([&](const Ping &p) {
        handled.push_back(p.value);
        if (p.value < 3)
            bus.emit(Ping{p.value + 1}); // nested, same type
        bus.emit(Pong{p.value});         // nested, another type
    });
    bus.emit(Ping{0});
    // The receiver sees the outer event before the nested ones it caused.
    QCOMPARE(drain(rx), (QList<qint64>{0, 1, 2, 3}));
    QCOMPARE(handled, (QList<int>{0, 1, 2, 3}));
    // Depth first: the innermost Pong is emitted first.
    QCOMPARE(drain(pongs), (QList<qint64>{3, 2, 1, 0}));
}

// ===========================================================================
// the direct slots of emit's common path
// ===========================================================================

namespace {
/// Many distinct event types, for the process-wide indexes past the bus's
/// direct slots.
template <int N>
struct Numbered {
    int value = 0;
};

/// Interns the types in order, so that the last ones get the largest indexes
/// (types already interned keep theirs).
template <int... N>
void internNumbered(std::integer_sequence<int, N...>)
{
    (sigreg::detail::EventTypeIndex<Numbered<N>>::get(), ...);
}
constexpr int kNumberedTypes = 80;

/// Registers a handler counting into `calls[N]` and, for every third N, a
/// receiver (kept in `receivers`); then emits one Numbered<N>{N} per type.
template <int... N>
void emitEachNumbered(Bus &bus, std::vector<int> &calls, std::vector<std::function<QList<qint64>()>> &receivers,
                      std::integer_sequence<int, N...>)
{
    (bus.on<Numbered<N>>([&calls](const Numbered<N> &e) { calls[std::size_t(N)] += e.value + 1; }), ...);
    auto subscribe = [&]<int I>(std::integral_constant<int, I>) {
        if (I % 3 == 0) {
            auto rx = std::make_shared<Receiver<Numbered<I>>>(bus.subscribe<Numbered<I>>(4));
            receivers.push_back([rx] { return drain(*rx); });
        }
    };
    (subscribe(std::integral_constant<int, N>{}), ...);
    (bus.emit(Numbered<N>{N}), ...);
}
} // namespace

void tst_Bus::receiversComeAndGo()
{
    // Emit takes the direct slot while a type has no receiver and the
    // channel while it has one: every subscription and unsubscription must
    // switch it, or a receiver misses events (or an unsubscribed one is
    // still copied into).
    Bus bus;
    QList<int> handled;
    bus.on([&](const Ping &p) { handled.push_back(p.value); });
    bus.emit(Ping{1});
    {
        Receiver<Ping> rx = bus.subscribe<Ping>(8);
        bus.emit(Ping{2});
        {
            Receiver<Ping> second = bus.subscribe<Ping>(8);
            bus.emit(Ping{3});
            QCOMPARE(drain(second), (QList<qint64>{3}));
        }
        // One of two receivers gone: the other still gets its copies.
        bus.emit(Ping{4});
        QCOMPARE(drain(rx), (QList<qint64>{2, 3, 4}));
        QCOMPARE(bus.receiverCount<Ping>(), std::size_t(1));
    }
    QCOMPARE(bus.receiverCount<Ping>(), std::size_t(0));
    bus.emit(Ping{5});
    Receiver<Ping> again = bus.subscribe<Ping>(8);
    bus.emit(Ping{6});
    QCOMPARE(drain(again), (QList<qint64>{6}));
    QCOMPARE(handled, (QList<int>{1, 2, 3, 4, 5, 6}));

    // A receiver on another type leaves Ping's path alone, and the other
    // way round.
    Receiver<Pong> pongs = bus.subscribe<Pong>(8);
    bus.emit(Ping{7});
    bus.emit(Pong{8});
    QCOMPARE(drain(again), (QList<qint64>{7}));
    QCOMPARE(drain(pongs), (QList<qint64>{8}));
}

void tst_Bus::handlersChangeUnderDirectSlot()
{
    // Every publication of Ping's handler list (appends in place, inserts
    // by priority, removals, a guard's removal) must reach the slot emit
    // reads.
    Bus bus;
    QList<int> calls;
    const HandlerId low = bus.on(0, [&](const Ping &) { calls.push_back(0); });
    bus.emit(Ping{});
    QCOMPARE(calls, (QList<int>{0}));
    calls.clear();

    bus.on(0, [&](const Ping &) { calls.push_back(1); });  // appended in place
    bus.on(10, [&](const Ping &) { calls.push_back(2); }); // a new list, first
    bus.emit(Ping{});
    QCOMPARE(calls, (QList<int>{2, 0, 1}));
    calls.clear();

    QVERIFY(bus.remove<Ping>(low));
    bus.emit(Ping{});
    QCOMPARE(calls, (QList<int>{2, 1}));
    calls.clear();

    {
        sigreg::Guard g = bus.onGuarded(20, [&](const Ping &) { calls.push_back(3); });
        bus.emit(Ping{});
        QCOMPARE(calls, (QList<int>{3, 2, 1}));
        calls.clear();
    }
    bus.emit(Ping{});
    QCOMPARE(calls, (QList<int>{2, 1}));
    QCOMPARE(bus.handlerCount<Ping>(), std::size_t(2));

    // A second bus has slots of its own.
    Bus other;
    QList<int> otherCalls;
    other.on([&](const Ping &p) { otherCalls.push_back(p.value); });
    calls.clear();
    other.emit(Ping{7});
    QCOMPARE(otherCalls, (QList<int>{7}));
    QVERIFY(calls.isEmpty());
}

void tst_Bus::typesBeyondTheDirectSlots()
{
    // 80 types more than this process had: at least 16 of them get an
    // index past the direct slots and take the channel lookup on every
    // emit. Handlers and receivers must work the same on both sides.
    constexpr int kTypes = kNumberedTypes;
    static_assert(kTypes >= int(Bus::kDirectTypes) + 16);
    internNumbered(std::make_integer_sequence<int, kTypes>{});

    Bus bus;
    std::vector<int> calls(kTypes, 0);
    std::vector<std::function<QList<qint64>()>> receivers;
    emitEachNumbered(bus, calls, receivers, std::make_integer_sequence<int, kTypes>{});
    // Interned in order, so the last ones are past the slots.
    QVERIFY(sigreg::detail::EventTypeIndex<Numbered<kTypes - 1>>::get() >= Bus::kDirectTypes);
    for (int n = 0; n < kTypes; ++n)
        QCOMPARE(calls[std::size_t(n)], n + 1);
    QCOMPARE(receivers.size(), std::size_t((kTypes + 2) / 3));
    for (std::size_t i = 0; i < receivers.size(); ++i)
        QCOMPARE(receivers[i](), (QList<qint64>{qint64(3 * i)}));
    QCOMPARE(bus.typeCount(), std::size_t(kTypes));

    // Past the slots, a handler added later is reached too, and a nested
    // emit of a high type from a low type's handler.
    int nested = 0;
    bus.on<Numbered<kTypes - 1>>([&](const Numbered<kTypes - 1> &e) { nested += e.value; });
    bus.on<Numbered<0>>([&](const Numbered<0> &) { bus.emit(Numbered<kTypes - 1>{1000}); });
    bus.emit(Numbered<0>{});
    QCOMPARE(nested, 1000);
    QCOMPARE(calls[std::size_t(kTypes - 1)], kTypes + 1000 + 1);
}

void tst_Bus::sendersTakeTheSamePaths()
{
    // A Sender keeps its type's slot: it must follow the handler list and
    // the receivers as emit does, and work for a type past the slots.
    Bus bus;
    Sender<Ping> none;
    none.emit(Ping{0}); // default-constructed: nothing happens
    QVERIFY(!none);

    Sender<Ping> ping = bus.sender<Ping>();
    QVERIFY(ping);
    QList<int> handled;
    ping.emit(Ping{1}); // a channel without listeners
    bus.on([&](const Ping &p) { handled.push_back(p.value); });
    ping.emit(Ping{2});
    {
        Receiver<Ping> rx = bus.subscribe<Ping>(8);
        ping.emit(Ping{3});
        QCOMPARE(drain(rx), (QList<qint64>{3}));
    }
    ping.emit(Ping{4});
    bus.on(5, [&](const Ping &p) { handled.push_back(-p.value); });
    ping.emit(Ping{5});
    QCOMPARE(handled, (QList<int>{2, 3, 4, -5, 5}));

    // Past the slots.
    internNumbered(std::make_integer_sequence<int, kNumberedTypes>{});
    constexpr int kLast = kNumberedTypes - 1;
    QVERIFY(sigreg::detail::EventTypeIndex<Numbered<kLast>>::get() >= Bus::kDirectTypes);
    Sender<Numbered<kLast>> far = bus.sender<Numbered<kLast>>();
    int sum = 0;
    bus.on<Numbered<kLast>>([&](const Numbered<kLast> &e) { sum += e.value; });
    Receiver<Numbered<kLast>> farRx = bus.subscribe<Numbered<kLast>>(4);
    far.emit(Numbered<kLast>{7});
    QCOMPARE(sum, 7);
    QCOMPARE(drain(farRx), (QList<qint64>{7}));
}

// ===========================================================================
// blocking
// ===========================================================================

void tst_Bus::receiveForTimesOut()
{
    Bus bus;
    Receiver<Ping> rx = bus.subscribe<Ping>();
    bus.emit(Pong{}); // another type: does not wake it
    const auto start = Clock::now();
    ReceiveResult<Ping> r = rx.receiveFor(50ms);
    const auto elapsed = Clock::now() - start;
    QCOMPARE_STATUS(r, TimedOut);
    QVERIFY(elapsed >= 50ms);

    const auto start2 = Clock::now();
    r = rx.receiveUntil(start2 + 30ms);
    QCOMPARE_STATUS(r, TimedOut);
    QVERIFY(Clock::now() - start2 >= 30ms);

    const auto start3 = std::chrono::system_clock::now();
    r = rx.receiveUntil(start3 + 20ms);
    QCOMPARE_STATUS(r, TimedOut);

    // Still usable afterwards.
    bus.emit(Ping{8});
    r = rx.receiveFor(kWatchdog);
    QCOMPARE_STATUS(r, Received);
    QCOMPARE(r->value, 8);
}

void tst_Bus::blockingReceiveWakesOnEmit_data()
{
    QTest::addColumn<QString>("how");
    QTest::newRow("receive") << QStringLiteral("receive");
    QTest::newRow("receiveFor") << QStringLiteral("receiveFor");
    QTest::newRow("receiveUntil steady") << QStringLiteral("receiveUntil");
    QTest::newRow("receiveUntil system_clock") << QStringLiteral("receiveUntilSystem");
}

void tst_Bus::blockingReceiveWakesOnEmit()
{
    QFETCH(QString, how);
    auto wait = [&](Receiver<Ping> &rx) {
        if (how == "receive")
            return rx.receive();
        if (how == "receiveFor")
            return rx.receiveFor(kWatchdog);
        if (how == "receiveUntil")
            return rx.receiveUntil(Clock::now() + kWatchdog);
        return rx.receiveUntil(std::chrono::system_clock::now() + kWatchdog);
    };
    Bus bus;
    // Round 0 sleeps before emitting, so the receiver is most likely blocked
    // by then; later rounds race the emit with the start of the wait.
    for (int round = 0; round < 40; ++round) {
        Receiver<Ping> rx = bus.subscribe<Ping>(round % 2 ? 1 : 8);
        std::atomic<bool> waiting{false};
        std::thread producer([&] {
            while (!waiting.load())
                std::this_thread::yield();
            if (round == 0)
                std::this_thread::sleep_for(50ms);
            else if (round % 3 == 0)
                std::this_thread::sleep_for(1ms);
            bus.emit(Ping{round});
        });
        waiting.store(true);
        ReceiveResult<Ping> r = wait(rx);
        producer.join();
        QCOMPARE_STATUS(r, Received);
        QCOMPARE(r->value, round);
    }

    // A stream of events from another thread, each waited for.
    Receiver<Ping> rx = bus.subscribe<Ping>(1024);
    constexpr int kEvents = 2000;
    std::thread producer([&] {
        for (int i = 0; i < kEvents; ++i) {
            bus.emit(Ping{i});
            if (i % 64 == 0)
                std::this_thread::yield();
        }
    });
    QList<int> bad;
    int next = 0;
    std::uint64_t missed = 0;
    while (next < kEvents) {
        ReceiveResult<Ping> r = wait(rx);
        if (r.status() == ReceiveStatus::Lagged) {
            missed += r.lagged();
            next += int(r.lagged());
            continue;
        }
        if (r.status() != ReceiveStatus::Received || r->value != next)
            bad.push_back(next);
        if (!bad.isEmpty())
            break;
        ++next;
    }
    producer.join();
    QCOMPARE(bad, QList<int>());
    QCOMPARE(missed, rx.missedCount());
    QCOMPARE_STATUS(rx.tryReceive(), Empty);
}

void tst_Bus::receiveUnblocksWhenBusDestroyed_data()
{
    QTest::addColumn<bool>("withTimeout");
    QTest::addColumn<int>("held");
    QTest::newRow("receive, nothing held") << false << 0;
    QTest::newRow("receiveFor, nothing held") << true << 0;
    QTest::newRow("receive, two held") << false << 2;
}

void tst_Bus::receiveUnblocksWhenBusDestroyed()
{
    QFETCH(bool, withTimeout);
    QFETCH(int, held);
    auto bus = std::make_unique<Bus>();
    Receiver<Ping> rx = bus->subscribe<Ping>(8);
    for (int i = 0; i < held; ++i)
        bus->emit(Ping{i});
    std::atomic<bool> started{false};
    QList<qint64> got;
    std::optional<ReceiveStatus> last;
    std::thread consumer([&] {
        started.store(true);
        for (;;) {
            ReceiveResult<Ping> r = withTimeout ? rx.receiveFor(kWatchdog) : rx.receive();
            if (r.status() != ReceiveStatus::Received) {
                last = r.status();
                return;
            }
            got.push_back(r->value);
        }
    });
    while (!started.load())
        std::this_thread::yield();
    std::this_thread::sleep_for(30ms); // most likely blocked by now
    bus.reset();                       // on this thread, while the consumer waits
    consumer.join();
    QVERIFY(last.has_value());
    QCOMPARE(statusName(*last), statusName(ReceiveStatus::Closed));
    QCOMPARE(got, range(0, held));
    QVERIFY(!rx.isSubscribed());
}

// ===========================================================================
// failures
// ===========================================================================

namespace {
struct ServiceStopped {
    int id = 0;
};
struct ServiceTick {};
struct ServiceLater {};
} // namespace

void tst_Bus::publishFromADestructorDuringBusDestruction_data()
{
    QTest::addColumn<bool>("withReceiver");
    QTest::newRow("handlers only (direct slot)") << false;
    QTest::newRow("with a receiver (through the channel)") << true;
}

void tst_Bus::publishFromADestructorDuringBusDestruction()
{
    // A handler owns a service whose destructor announces on the bus that it
    // stopped: destroying the bus destroys the handler, which publishes to
    // channels destroyed before (ASan in CI sees any read of them) and to
    // ones not destroyed yet (still delivered).
    QFETCH(bool, withReceiver);
    struct Service {
        Service(sigreg::Bus &b, std::atomic<int> &seen) : bus(b), laterSeen(seen) {}
        Service(const Service &) = delete;
        Service &operator=(const Service &) = delete;
        sigreg::Bus &bus;
        std::atomic<int> &laterSeen;
        ~Service()
        {
            bus.publish(ServiceStopped{42});
            bus.publish(ServiceLater{});
        }
    };
    std::atomic<int> stoppedSeen{0}, laterSeen{0};
    auto *bus = new sigreg::Bus;
    // ServiceStopped's channel is made first, ServiceLater's last: their
    // type indices (process-wide, in order of first use) put the service's
    // owner between them.
    bus->on([&](const ServiceStopped &) { stoppedSeen.fetch_add(1); });
    std::optional<sigreg::Receiver<ServiceStopped>> rx;
    if (withReceiver)
        rx.emplace(bus->subscribe<ServiceStopped>());
    auto service = std::make_shared<Service>(*bus, laterSeen);
    bus->on([service](const ServiceTick &) {});
    bus->on([&laterSeen](const ServiceLater &) { laterSeen.fetch_add(1); });
    service.reset(); // the ServiceTick handler owns it now
    bus->publish(ServiceTick{});
    QCOMPARE(stoppedSeen.load(), 0);
    delete bus;
    QCOMPARE(stoppedSeen.load(), 0); // its channel was gone by then
    QCOMPARE(laterSeen.load(), 1);   // its channel was still there
    if (rx)
        QVERIFY(!rx->tryReceive().hasValue());
}

void tst_Bus::clangSpellingsOfFileLocalTypes_data()
{
    // Names as clang stores them (it marks none with GCC's '*'): a type that
    // one file alone can see must be told apart from a same-named one of
    // another file (keyed by its type_info), a type with linkage must not
    // (one channel across files and shared objects).
    QTest::addColumn<QByteArray>("mangled");
    QTest::addColumn<bool>("fileLocal");
    QTest::newRow("local class of a static function") << QByteArray("ZL11staticLocalvE5Local") << true;
    QTest::newRow("... in a namespace") << QByteArray("ZN2nsL5setupEvE5Local") << true;
    QTest::newRow("lambda in a static function") << QByteArray("ZL12staticLambdavE3$_0") << true;
    QTest::newRow("lambda in a function with linkage") << QByteArray("Z4mainE3$_0") << true;
    QTest::newRow("template over a static function's local class")
        << QByteArray("N2ns5BoxedIZL5setupvE5LocalEE") << true;
    QTest::newRow("local class of an inline function") << QByteArray("Z11inlineLocalvE5Local") << false;
    QTest::newRow("local class of an extern function") << QByteArray("Z11externLocalvE5Local") << false;
    QTest::newRow("class in a namespace") << QByteArray("N2ns5LocalE") << false;
    QTest::newRow("names with L and Z inside") << QByteArray("N5ZebraL5LlamaE") << false;
    QTest::newRow("std::vector<int>") << QByteArray("St6vectorIiSaIiEE") << false;
    QTest::newRow("substitution digits are not lengths") << QByteArray("N2ns4PairIS0_S1_EE") << false;
    QTest::newRow("truncated") << QByteArray("N2ns40Short") << false;
    // Numbers that are not lengths, around a file-local type.
    QTest::newRow("after an int literal") << QByteArray("N2ns3BoxILi2EZL5setupvE5LocalEE") << true;
    QTest::newRow("after an unsigned long literal") << QByteArray("N2ns3BoxILm4EZL5setupvE5LocalEE") << true;
    QTest::newRow("an int literal with a lambda") << QByteArray("N2ns3BoxILi2E3$_0EE") << true;
    QTest::newRow("after an array size") << QByteArray("N2ns3BoxIA3_ZL5setupvE5LocalEE") << true;
    QTest::newRow("std::pair<std::array<int, 4>, Local>")
        << QByteArray("St4pairISt5arrayIiLm4EEZL5setupvE5LocalE") << true;
    QTest::newRow("after a vector size") << QByteArray("N2ns3BoxIDv4_iZL5setupvE5LocalEE") << true;
    QTest::newRow("after a discriminator") << QByteArray("N2ns3BoxIZ1fvE5Local_1ZL5setupvE5LocalEE") << true;
    QTest::newRow("local class of a static operator") << QByteArray("ZeqRK1AS1_E5Local") << true;
    QTest::newRow("an int literal alone") << QByteArray("N2ns3BoxILi2EEE") << false;
    QTest::newRow("a literal of a named type") << QByteArray("N2ns3BoxIL5Color1EEE") << false;
    QTest::newRow("an array of a type with linkage") << QByteArray("N2ns3BoxIA3_N2ns5PointEEE") << false;
    // Names clang-14 made: operators in a namespace (no 'L' even when static),
    // closure and unnamed-type numbers before a file-local type.
    QTest::newRow("local class of a static ns::operator*") << QByteArray("ZN2nsmlENS_1AES0_E5Local") << true;
    QTest::newRow("local class of a static ns::operator~") << QByteArray("ZN2nscoENS_1AEE5Local") << true;
    QTest::newRow("local class of a static literal operator") << QByteArray("ZN2nsli3_kmEyE5Local") << true;
    QTest::newRow("after a closure's number")
        << QByteArray("3BoxIJZ9i_lambdasvEUlvE11_ZL4s_mkvE5LocalEE") << true;
    QTest::newRow("after an unnamed type's number") << QByteArray("3BoxIJN7UnnamedUt4_EZL4s_mkvE5LocalEE") << true;
    QTest::newRow("a closure of an inline function") << QByteArray("3BoxIJZ9i_lambdasvEUlvE11_EE") << false;
    QTest::newRow("an unnamed type in a class") << QByteArray("N7UnnamedUt4_E") << false;
}

void tst_Bus::clangSpellingsOfFileLocalTypes()
{
    QFETCH(QByteArray, mangled);
    QFETCH(bool, fileLocal);
    QCOMPARE(sigreg::detail::spellsTranslationUnitLocalType(mangled.constData()), fileLocal);
}

void tst_Bus::throwingHandlerIsIsolated()
{
    Bus bus;
    std::vector<Failure> failures;
    bus.setErrorHandler([&](const sigreg::BusFailure &f) {
        failures.push_back({f.handler, std::string(f.eventType), std::string(f.message()), f.receiver});
    });
    QList<int> calls;
    Receiver<busevents::Failing> rx = bus.subscribe<busevents::Failing>();
    bus.on(2, [&](const busevents::Failing &) { calls.push_back(1); });
    const HandlerId thrower = bus.on(1, [&](const busevents::Failing &e) {
        calls.push_back(2);
        if (e.value == 1)
            throw std::out_of_range("handler failed");
    });
    bus.on(0, [&](const busevents::Failing &) { calls.push_back(3); });

    bus.emit(busevents::Failing{0});
    QCOMPARE(calls, (QList<int>{1, 2, 3}));
    QVERIFY(failures.empty());
    calls.clear();
    bus.emit(busevents::Failing{1});
    QCOMPARE(calls, (QList<int>{1, 2, 3})); // the sibling after the thrower still ran
    QCOMPARE(failures.size(), std::size_t(1));
    QCOMPARE(failures[0].handler, thrower);
    QVERIFY2(failures[0].eventType.find("busevents::Failing") != std::string::npos, failures[0].eventType.c_str());
    QCOMPARE(failures[0].message, std::string("handler failed"));
    QVERIFY(!failures[0].receiver);
    QCOMPARE(bus.failureCount(), std::uint64_t(1));
    QCOMPARE(bus.unhandledFailureCount(), std::uint64_t(0));
    // Receivers are unaffected by a handler's failure.
    QCOMPARE(drain(rx), (QList<qint64>{0, 1}));
}

void tst_Bus::throwingCopyMarksEventMissed()
{
    using busevents::Fragile;
    Bus bus;
    std::vector<Failure> failures;
    bus.setErrorHandler([&](const sigreg::BusFailure &f) {
        failures.push_back({f.handler, std::string(f.eventType), std::string(f.message()), f.receiver});
    });
    // Three receivers, copied into in subscription order (equal priorities).
    Receiver<Fragile> a = bus.subscribe<Fragile>(8);
    Receiver<Fragile> b = bus.subscribe<Fragile>(8);
    Receiver<Fragile> c = bus.subscribe<Fragile>(8);
    QList<int> handled;
    bus.on([&](const Fragile &f) { handled.push_back(f.value); });

    Fragile::countdown = 0;
    bus.emit(Fragile(0));
    Fragile::countdown = 2; // the second copy of the next emit throws: b's
    bus.emit(Fragile(1));
    QCOMPARE(Fragile::countdown, 0);
    bus.emit(Fragile(2));

    QCOMPARE(handled, (QList<int>{0, 1, 2})); // handlers still ran
    QCOMPARE(drain(a), (QList<qint64>{0, 1, 2}));
    QCOMPARE(drain(b), (QList<qint64>{0, -1 - 1, 2}));
    QCOMPARE(drain(c), (QList<qint64>{0, 1, 2}));
    QCOMPARE(a.missedCount(), std::uint64_t(0));
    QCOMPARE(b.missedCount(), std::uint64_t(1));
    QCOMPARE(c.missedCount(), std::uint64_t(0));

    QCOMPARE(failures.size(), std::size_t(1));
    QVERIFY(failures[0].receiver);
    QVERIFY2(failures[0].eventType.find("busevents::Fragile") != std::string::npos, failures[0].eventType.c_str());
    QCOMPARE(failures[0].message, std::string("Fragile: copy failed"));
    QCOMPARE(bus.failureCount(), std::uint64_t(1));
    QCOMPARE(bus.unhandledFailureCount(), std::uint64_t(0));

    // A missed event at the end of a full ring still counts exactly.
    Receiver<Fragile> d = bus.subscribe<Fragile>(2);
    Fragile::countdown = 4; // a, b, c, then d's copy of event 10 throws
    bus.emit(Fragile(10));
    bus.emit(Fragile(11));
    bus.emit(Fragile(12));
    QCOMPARE(drain(d), (QList<qint64>{-1 - 1, 11, 12})); // 10 overwritten while missed
    Fragile::countdown = 0;
}

void tst_Bus::throwingMoveKeepsEvent_data()
{
    QTest::addColumn<QString>("how");
    QTest::newRow("tryReceive") << QStringLiteral("tryReceive");
    QTest::newRow("receive") << QStringLiteral("receive");
    QTest::newRow("receiveFor") << QStringLiteral("receiveFor");
}

void tst_Bus::throwingMoveKeepsEvent()
{
    // "Throws what E's move constructor throws (the event stays for the next
    // call)": whichever move (copy, here) of the taking throws, the event is
    // neither lost nor counted as missed.
    QFETCH(QString, how);
    using busevents::Sticky;
    Bus bus;
    int throws = 0;
    bool succeeded = false;
    for (int which = 1; which <= 8 && !succeeded; ++which) {
        Receiver<Sticky> rx = bus.subscribe<Sticky>(4);
        bus.emit(Sticky(1));
        bus.emit(Sticky(2));
        Sticky::countdown = which; // the which-th copy made while taking throws
        try {
            ReceiveResult<Sticky> r = how == "tryReceive" ? rx.tryReceive()
                : how == "receive"                        ? rx.receive()
                                                          : rx.receiveFor(kWatchdog);
            QCOMPARE_STATUS(r, Received);
            QCOMPARE(r->value, 1);
            succeeded = true;
        } catch (const std::runtime_error &) {
            ++throws;
        }
        Sticky::countdown = 0;
        const QList<qint64> rest = drain(rx);
        QCOMPARE(rest, succeeded ? QList<qint64>{2} : (QList<qint64>{1, 2}));
        QCOMPARE(rx.missedCount(), std::uint64_t(0));
    }
    QVERIFY(succeeded);
    QVERIFY(throws >= 1);
}

void tst_Bus::unhandledFailures()
{
    Bus bus;
    bus.on([](const busevents::Failing &) { throw std::runtime_error("x"); });
    bus.emit(busevents::Failing{});
    QCOMPARE(bus.failureCount(), std::uint64_t(1));
    QCOMPARE(bus.unhandledFailureCount(), std::uint64_t(1));

    // A receiver's failed copy without an error handler.
    Receiver<busevents::Fragile> rx = bus.subscribe<busevents::Fragile>(4);
    busevents::Fragile::countdown = 1;
    bus.emit(busevents::Fragile(5));
    QCOMPARE(bus.failureCount(), std::uint64_t(2));
    QCOMPARE(bus.unhandledFailureCount(), std::uint64_t(2));
    QCOMPARE(drain(rx), QList<qint64>{-1 - 1});

    // An error handler that throws: counted as unhandled too.
    int calls = 0;
    bus.setErrorHandler([&](const sigreg::BusFailure &) {
        ++calls;
        throw std::logic_error("error handler failed");
    });
    bus.emit(busevents::Failing{});
    QCOMPARE(calls, 1);
    QCOMPARE(bus.failureCount(), std::uint64_t(3));
    QCOMPARE(bus.unhandledFailureCount(), std::uint64_t(3));

    // A quiet error handler: handled.
    bus.setErrorHandler([&](const sigreg::BusFailure &) { ++calls; });
    bus.emit(busevents::Failing{});
    QCOMPARE(calls, 2);
    QCOMPARE(bus.failureCount(), std::uint64_t(4));
    QCOMPARE(bus.unhandledFailureCount(), std::uint64_t(3));

    // Reset: unhandled again.
    bus.resetErrorHandler();
    bus.emit(busevents::Failing{});
    QCOMPARE(calls, 2);
    QCOMPARE(bus.failureCount(), std::uint64_t(5));
    QCOMPARE(bus.unhandledFailureCount(), std::uint64_t(4));

    QVERIFY_THROWS_EXCEPTION(std::invalid_argument,
                             bus.setErrorHandler(std::function<void(const sigreg::BusFailure &)>()));
}

// ===========================================================================
// lifecycle and errors
// ===========================================================================

void tst_Bus::shutdownEmittedOnce()
{
    Bus bus;
    int handled = 0;
    bus.on([&](const sigreg::ShutdownInitiated &) { ++handled; });
    Receiver<sigreg::ShutdownInitiated> rx = bus.subscribe<sigreg::ShutdownInitiated>();
    QVERIFY(!bus.isShuttingDown());
    QVERIFY(bus.initiateShutdown());
    QVERIFY(bus.isShuttingDown());
    QCOMPARE(handled, 1);
    QVERIFY(!bus.initiateShutdown());
    QVERIFY(!bus.initiateShutdown());
    QCOMPARE(handled, 1);
    QVERIFY(rx.tryReceive().hasValue());
    QCOMPARE_STATUS(rx.tryReceive(), Empty);

    // A shutdown handler may call initiateShutdown() again: no second event.
    Bus reentrant;
    int nested = 0;
    bool inner = true;
    reentrant.on([&](const sigreg::ShutdownInitiated &) {
        ++nested;
        inner = reentrant.initiateShutdown();
    });
    QVERIFY(reentrant.initiateShutdown());
    QCOMPARE(nested, 1);
    QVERIFY(!inner);

    // Without listeners: still flips the state, creates no channel.
    Bus quiet;
    QVERIFY(quiet.initiateShutdown());
    QVERIFY(quiet.isShuttingDown());
    QCOMPARE(quiet.typeCount(), std::size_t(0));
}

void tst_Bus::shutdownEmittedOnceConcurrently()
{
    for (int round = 0; round < 20; ++round) {
        Bus bus;
        std::atomic<int> handled{0};
        bus.on([&](const sigreg::ShutdownInitiated &) { handled.fetch_add(1); });
        std::atomic<int> winners{0};
        std::atomic<bool> go{false};
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t) {
            threads.emplace_back([&] {
                while (!go.load())
                    std::this_thread::yield();
                if (bus.initiateShutdown())
                    winners.fetch_add(1);
            });
        }
        go.store(true);
        for (std::thread &t : threads)
            t.join();
        QCOMPARE(winners.load(), 1);
        QCOMPARE(handled.load(), 1);
    }
}

void tst_Bus::capacityErrors()
{
    Bus bus;
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, (void)bus.subscribe<Ping>(0));
    QVERIFY_THROWS_EXCEPTION(std::length_error, (void)bus.subscribe<Ping>(Bus::kMaxCapacity + 1));
    QVERIFY_THROWS_EXCEPTION(std::length_error, (void)bus.subscribe<Ping>(std::size_t(-1)));
    // A rejected subscription leaves nothing behind.
    QVERIFY(!bus.hasChannel<Ping>());
    QCOMPARE(bus.typeCount(), std::size_t(0));

    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, (void)Bus(0));
    QVERIFY_THROWS_EXCEPTION(std::length_error, (void)Bus(Bus::kMaxCapacity + 1));
    QCOMPARE(bus.defaultCapacity(), Bus::kDefaultCapacity);
    Bus small(3);
    QCOMPARE(small.defaultCapacity(), std::size_t(3));
    Receiver<Ping> rx = small.subscribe<Ping>();
    QCOMPARE(rx.capacity(), std::size_t(3));
    for (int i = 0; i < 5; ++i)
        small.emit(Ping{i});
    QCOMPARE(drain(rx), (QList<qint64>{-1 - 2, 2, 3, 4}));
    Receiver<Ping> one = small.subscribe<Ping>(1);
    QCOMPARE(one.capacity(), std::size_t(1));
}

// ===========================================================================
// identity
// ===========================================================================

void tst_Bus::anonymousTypesDoNotShareChannels()
{
    // Same spelling, same mangled name, different types.
    QCOMPARE(QByteArray(typeid(LocalEvent).name()), QByteArray(tst_bus_other::localTypeInfo().name()));
    QVERIFY(typeid(LocalEvent) != tst_bus_other::localTypeInfo());

    Bus bus;
    std::vector<int> ours;
    std::vector<int> theirs;
    bus.on([&](const LocalEvent &e) { ours.push_back(e.value); });
    QCOMPARE(bus.typeCount(), std::size_t(1));
    QVERIFY(!tst_bus_other::hasLocalChannel(bus));
    QCOMPARE(tst_bus_other::localHandlerCount(bus), std::size_t(0));

    tst_bus_other::onLocal(bus, &theirs);
    QCOMPARE(bus.typeCount(), std::size_t(2));
    QVERIFY(tst_bus_other::hasLocalChannel(bus));
    QCOMPARE(bus.handlerCount<LocalEvent>(), std::size_t(1));
    QCOMPARE(tst_bus_other::localHandlerCount(bus), std::size_t(1));

    Receiver<LocalEvent> rx = bus.subscribe<LocalEvent>();
    bus.emit(LocalEvent{1});
    tst_bus_other::emitLocal(bus, 2);
    QCOMPARE(ours, std::vector<int>{1});
    QCOMPARE(theirs, std::vector<int>{2});
    QCOMPARE(drain(rx), QList<qint64>{1});

    // Templates over anonymous types are internal too.
    std::vector<int> oursBoxed;
    std::vector<int> theirsBoxed;
    bus.on([&](const Boxed<LocalEvent> &e) { oursBoxed.push_back(e.inner.value); });
    tst_bus_other::onBoxed(bus, &theirsBoxed);
    QCOMPARE(bus.typeCount(), std::size_t(4));
    bus.emit(Boxed<LocalEvent>{LocalEvent{3}});
    tst_bus_other::emitBoxed(bus, 4);
    QCOMPARE(oursBoxed, std::vector<int>{3});
    QCOMPARE(theirsBoxed, std::vector<int>{4});
}

void tst_Bus::sameTypeInTwoFilesSharesChannel()
{
    Bus bus;
    QList<int> seen;
    bus.on([&](const tst_bus_twin::BusTwinEvent &e) { seen.push_back(e.value); });
    Receiver<tst_bus_twin::BusTwinEvent> rx = bus.subscribe<tst_bus_twin::BusTwinEvent>();
    QCOMPARE(bus.typeCount(), std::size_t(1));
    tst_bus_other::emitTwin(bus, 5);
    bus.emit(tst_bus_twin::BusTwinEvent{6});
    QCOMPARE(bus.typeCount(), std::size_t(1));
    QCOMPARE(seen, (QList<int>{5, 6}));
    QCOMPARE(drain(rx), (QList<qint64>{5, 6}));
}

QTEST_GUILESS_MAIN(tst_Bus)
#include "tst_bus.moc"
