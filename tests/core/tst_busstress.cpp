// SPDX-License-Identifier: MIT
// Qt Test stress suite for sigreg::Bus with many threads:
//   * producers x receivers, each receiver consumed on its own thread: no
//     duplicates, per-producer order, received + missed == emitted;
//   * subscribe/unsubscribe churn while producers emit: no replay of events
//     completed before subscribe(), nothing started after unsubscribe()
//     returned, never a duplicate or a reordering;
//   * handlers added and removed while producers emit: none runs after its
//     removal returned; a handler registered throughout sees every event;
//   * channels created for many types while other threads emit them;
//   * the bus destroyed while consumers wait: they get Closed;
//   * ping-pong through capacity-1 receivers: no lost wake-up.
//
// Every case is bounded by an event count and a time budget (a few seconds
// on two cores, also under sanitizers). No assertion measures time; the only
// deadlines are watchdogs (seconds, for what takes microseconds) that turn a
// hang into a failure. QtTest macros run on the main thread only, after the
// workers were joined (failures inside threads are counted in atomics).
#include <sigreg/bus.h>

#include <QtTest/QTest>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "../support/sanitizers.h"

using namespace std::chrono_literals;

namespace {

constexpr int scaled(int normal, int sanitized) { return sigreg_test::kUnderSanitizer ? sanitized : normal; }

using Clock = std::chrono::steady_clock;
using sigreg::Bus;
using sigreg::Guard;
using sigreg::ReceiveResult;
using sigreg::ReceiveStatus;
using sigreg::Receiver;

// Time budget of one busy phase (producers stop at their event count or here).
constexpr auto kBudget = 1500ms;
// How long we wait for something that must happen unless the bus is broken.
constexpr auto kWatchdog = 30s;

constexpr int kProducers = 4;

/// Runs body(t) on `threads` new threads, released all at once, and
/// meanwhile() on this thread as they start; returns once all have finished.
template <class Body, class Meanwhile>
void releaseTogether(int threads, Body body, Meanwhile meanwhile)
{
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            ready.fetch_add(1);
            while (!go.load())
                std::this_thread::yield();
            body(t);
        });
    }
    while (ready.load() < threads)
        std::this_thread::yield();
    go.store(true);
    meanwhile();
    for (std::thread &th : pool)
        th.join();
}

struct StressEvent {
    int producer = 0; // -1: the sentinel
    std::uint64_t seq = 0;
};

struct Ping {
    std::uint64_t value = 0;
};
struct Pong {
    std::uint64_t value = 0;
};

/// What one consumer saw; written by its thread, read after join().
struct ConsumerReport {
    std::uint64_t received = 0;
    std::uint64_t missed = 0;
    std::uint64_t disorder = 0;   // a duplicate or an event older than its predecessor from that producer
    std::uint64_t afterClose = 0; // events after the sentinel or after a final unsubscribe
    std::uint64_t sentinels = 0;
    bool closed = false;
    bool watchdog = false; // a wait that should have ended did not
};

/// Checks one result against the last sequence number seen per producer.
/// Returns false on Closed.
bool account(const ReceiveResult<StressEvent> &r, std::vector<std::int64_t> &last, ConsumerReport &rep)
{
    switch (r.status()) {
    case ReceiveStatus::Received: {
        if (r->producer < 0) {
            ++rep.sentinels;
            return true;
        }
        std::int64_t &prev = last[std::size_t(r->producer)];
        if (std::int64_t(r->seq) <= prev)
            ++rep.disorder;
        prev = std::int64_t(r->seq);
        ++rep.received;
        return true;
    }
    case ReceiveStatus::Lagged:
        rep.missed += r.lagged();
        return true;
    case ReceiveStatus::Closed:
        rep.closed = true;
        return false;
    case ReceiveStatus::Empty:
    case ReceiveStatus::TimedOut:
        return true;
    }
    return true;
}

/// Starts `n` producers emitting StressEvent{p, 0..} until `perProducer`
/// events or the time budget; returns how many each emitted via `emitted`.
std::vector<std::thread> startProducers(const Bus &bus, int n, std::uint64_t perProducer,
                                        std::vector<std::uint64_t> &emitted, std::atomic<bool> &go)
{
    emitted.assign(std::size_t(n), 0);
    std::vector<std::thread> threads;
    for (int p = 0; p < n; ++p) {
        threads.emplace_back([&bus, &emitted, &go, p, perProducer] {
            while (!go.load())
                std::this_thread::yield();
            const auto deadline = Clock::now() + kBudget;
            std::uint64_t seq = 0;
            for (; seq < perProducer; ++seq) {
                bus.emit(StressEvent{p, seq});
                if (seq % 256 == 255 && Clock::now() > deadline) {
                    ++seq;
                    break;
                }
            }
            emitted[std::size_t(p)] = seq;
        });
    }
    return threads;
}

template <int N>
struct Typed {
    std::uint64_t value = 0;
};

} // namespace

class tst_BusStress : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void producersAndReceivers_data();
    void producersAndReceivers();
    void subscribeChurn();
    void receiversSeeEverythingWhileOthersChurn();
    void handlerChurn();
    void channelCreationRacesWithEmit();
    void busDestroyedWhileConsumersWait();
    void receiversDroppedWhileBusDestroyed();
    void handlerGuardsDroppedWhileBusDestroyed();
    void pingPongWakeUps_data();
    void pingPongWakeUps();
};

// ===========================================================================
// producers x receivers
// ===========================================================================

void tst_BusStress::producersAndReceivers_data()
{
    QTest::addColumn<QString>("wait");   // receive, receiveFor, tryReceive
    QTest::addColumn<QString>("ending"); // destroyBus, sentinel, flag
    QTest::newRow("receive, bus destroyed") << QStringLiteral("receive") << QStringLiteral("destroyBus");
    QTest::newRow("receive, sentinel then unsubscribe") << QStringLiteral("receive") << QStringLiteral("sentinel");
    QTest::newRow("receiveFor, flag then unsubscribe") << QStringLiteral("receiveFor") << QStringLiteral("flag");
    QTest::newRow("tryReceive polling, bus destroyed") << QStringLiteral("tryReceive") << QStringLiteral("destroyBus");
}

void tst_BusStress::producersAndReceivers()
{
    QFETCH(QString, wait);
    QFETCH(QString, ending);
    enum class Wait { Receive, ReceiveFor, TryReceive };
    enum class Ending { DestroyBus, Sentinel, Flag };
    const Wait waitMode = wait == "receive" ? Wait::Receive : wait == "receiveFor" ? Wait::ReceiveFor : Wait::TryReceive;
    const Ending endMode = ending == "destroyBus" ? Ending::DestroyBus
        : ending == "sentinel"                    ? Ending::Sentinel
                                                  : Ending::Flag;
    const std::uint64_t perProducer = std::uint64_t(scaled(25000, 4000));
    const std::uint64_t total = perProducer * kProducers;
    // Capacity 1, a small one, and one that holds everything (never lags):
    // every producer's events plus the sentinel, should its consumer not get
    // to run before the last emit.
    const std::vector<std::size_t> capacities{1, 16, std::size_t(total) + 1};
    const std::size_t kConsumers = capacities.size();

    auto bus = std::make_unique<Bus>();
    std::vector<Receiver<StressEvent>> receivers;
    for (std::size_t c : capacities)
        receivers.push_back(bus->subscribe<StressEvent>(c));
    QCOMPARE(bus->receiverCount<StressEvent>(), kConsumers);

    std::atomic<bool> producersDone{false};
    std::vector<ConsumerReport> reports(kConsumers);
    std::vector<std::thread> consumers;
    for (std::size_t i = 0; i < kConsumers; ++i) {
        consumers.emplace_back([&, i] {
            Receiver<StressEvent> &rx = receivers[i];
            ConsumerReport &rep = reports[i];
            std::vector<std::int64_t> last(kProducers, -1);
            bool unsubscribed = false;
            const auto watchdog = Clock::now() + kWatchdog + kBudget;
            for (;;) {
                if (Clock::now() > watchdog) {
                    rep.watchdog = true;
                    return;
                }
                std::optional<ReceiveResult<StressEvent>> r;
                switch (waitMode) {
                case Wait::Receive: r.emplace(rx.receive()); break;
                case Wait::ReceiveFor: r.emplace(rx.receiveFor(2ms)); break;
                case Wait::TryReceive: r.emplace(rx.tryReceive()); break;
                }
                // After the sentinel nothing can follow: it was the last event.
                if (endMode == Ending::Sentinel && unsubscribed && r->hasValue())
                    ++rep.afterClose;
                if (!account(*r, last, rep))
                    return;
                if (r->status() == ReceiveStatus::Empty)
                    std::this_thread::yield();
                if (unsubscribed)
                    continue;
                if (endMode == Ending::Sentinel && r->hasValue() && (*r)->producer < 0) {
                    // The sentinel is the last event emitted, so every
                    // receiver holds it whatever it missed before.
                    rx.unsubscribe();
                    unsubscribed = true;
                } else if (endMode == Ending::Flag && producersDone.load()) {
                    // Every event was emitted before this: what the receiver
                    // still holds is taken next, then Closed.
                    rx.unsubscribe();
                    unsubscribed = true;
                }
            }
        });
    }

    std::atomic<bool> go{false};
    std::vector<std::uint64_t> emitted;
    std::vector<std::thread> producers = startProducers(*bus, kProducers, perProducer, emitted, go);
    go.store(true);
    for (std::thread &t : producers)
        t.join();
    std::uint64_t emittedTotal = 0;
    for (std::uint64_t e : emitted)
        emittedTotal += e;

    if (endMode == Ending::Sentinel)
        bus->emit(StressEvent{-1, 0});
    producersDone.store(true);
    if (endMode == Ending::DestroyBus)
        bus.reset(); // not concurrent with any emit: the producers are joined
    for (std::thread &t : consumers)
        t.join();

    QVERIFY(emittedTotal > 0);
    for (std::size_t i = 0; i < kConsumers; ++i) {
        const ConsumerReport &rep = reports[i];
        const QByteArray what = "receiver of capacity " + QByteArray::number(qulonglong(capacities[i]));
        QVERIFY2(!rep.watchdog, what.constData());
        QVERIFY2(rep.closed, what.constData());
        QCOMPARE(rep.disorder, std::uint64_t(0));
        QCOMPARE(rep.received + rep.missed, emittedTotal);
        QCOMPARE(receivers[i].missedCount(), rep.missed);
        if (endMode == Ending::Sentinel) {
            QCOMPARE(rep.sentinels, std::uint64_t(1));
            QCOMPARE(rep.afterClose, std::uint64_t(0));
        } else {
            QVERIFY2(rep.received >= 1, what.constData()); // the newest event is always retained
        }
    }
    qInfo("%llu events; received/missed by capacity 1: %llu/%llu, 16: %llu/%llu, all: %llu/%llu",
          qulonglong(emittedTotal), qulonglong(reports[0].received), qulonglong(reports[0].missed),
          qulonglong(reports[1].received), qulonglong(reports[1].missed), qulonglong(reports[2].received),
          qulonglong(reports[2].missed));
    // The receiver that can hold everything never lags.
    QCOMPARE(reports.back().missed, std::uint64_t(0));
    QCOMPARE(reports.back().received, emittedTotal);
    if (bus) {
        QCOMPARE(bus->failureCount(), std::uint64_t(0));
        QCOMPARE(bus->receiverCount<StressEvent>(), std::size_t(0));
    }
}

// ===========================================================================
// subscribe / unsubscribe churn
// ===========================================================================

void tst_BusStress::subscribeChurn()
{
    constexpr int kChurnProducers = 2;
    constexpr int kChurners = 2;
    Bus bus;
    // Per producer: the sequence number of the emit last started, and the
    // number of emits completed.
    struct alignas(64) Progress {
        std::atomic<std::int64_t> started{-1};
        std::atomic<std::uint64_t> completed{0};
    };
    Progress progress[kChurnProducers];
    std::atomic<bool> stop{false};
    std::atomic<bool> go{false};

    std::vector<std::thread> producers;
    for (int p = 0; p < kChurnProducers; ++p) {
        producers.emplace_back([&, p] {
            while (!go.load())
                std::this_thread::yield();
            for (std::uint64_t seq = 0; !stop.load(std::memory_order_relaxed); ++seq) {
                progress[p].started.store(std::int64_t(seq));
                bus.emit(StressEvent{p, seq});
                progress[p].completed.store(seq + 1);
            }
        });
    }

    std::atomic<std::uint64_t> disorder{0};    // duplicate or reordered
    std::atomic<std::uint64_t> replayed{0};    // an event completed before subscribe() began
    std::atomic<std::uint64_t> lateArrival{0}; // an event started after unsubscribe() returned
    std::atomic<std::uint64_t> noClose{0};     // a drained, unsubscribed receiver not Closed
    std::atomic<std::uint64_t> cycles{0};
    std::atomic<std::uint64_t> taken{0};
    std::vector<std::thread> churners;
    for (int c = 0; c < kChurners; ++c) {
        churners.emplace_back([&, c] {
            std::minstd_rand rng(std::uint32_t(1234 + c));
            const std::size_t caps[] = {1, 2, 3, 8, 64, 1000};
            while (!go.load())
                std::this_thread::yield();
            while (!stop.load()) {
                std::uint64_t before[kChurnProducers];
                for (int p = 0; p < kChurnProducers; ++p)
                    before[p] = progress[p].completed.load();
                Receiver<StressEvent> rx = bus.subscribe<StressEvent>(caps[rng() % 6]);
                std::int64_t last[kChurnProducers];
                std::fill(std::begin(last), std::end(last), std::int64_t(-1));
                auto check = [&](const ReceiveResult<StressEvent> &r) {
                    if (!r)
                        return;
                    taken.fetch_add(1, std::memory_order_relaxed);
                    const int p = r->producer;
                    if (std::int64_t(r->seq) <= last[p])
                        disorder.fetch_add(1);
                    last[p] = std::int64_t(r->seq);
                    if (r->seq < before[p])
                        replayed.fetch_add(1);
                };
                const int takes = int(rng() % 24);
                for (int i = 0; i < takes; ++i)
                    check(i % 2 ? rx.tryReceive() : rx.receiveFor(1ms));
                switch (rng() % 3) {
                case 0: { // unsubscribe, then drain: nothing started afterwards
                    rx.unsubscribe();
                    std::int64_t after[kChurnProducers];
                    for (int p = 0; p < kChurnProducers; ++p)
                        after[p] = progress[p].started.load();
                    for (std::size_t n = 0;; ++n) {
                        ReceiveResult<StressEvent> r = n % 2 ? rx.tryReceive() : rx.receiveFor(kWatchdog);
                        if (r.status() == ReceiveStatus::Closed)
                            break;
                        if (r.status() == ReceiveStatus::TimedOut || r.status() == ReceiveStatus::Empty
                            || n > rx.capacity() + 2) {
                            noClose.fetch_add(1);
                            break;
                        }
                        if (r && std::int64_t(r->seq) > after[r->producer])
                            lateArrival.fetch_add(1);
                        check(r);
                    }
                    break;
                }
                case 1: // moved away and dropped
                {
                    Receiver<StressEvent> other = std::move(rx);
                    check(other.tryReceive());
                    break;
                }
                default: // dropped with what it holds
                    break;
                }
                cycles.fetch_add(1, std::memory_order_relaxed);
            }
        });
    }

    go.store(true);
    std::this_thread::sleep_for(kBudget); // the length of the busy phase, not a result
    stop.store(true);
    for (std::thread &t : churners)
        t.join();
    for (std::thread &t : producers)
        t.join();

    QCOMPARE(disorder.load(), std::uint64_t(0));
    QCOMPARE(replayed.load(), std::uint64_t(0));
    QCOMPARE(lateArrival.load(), std::uint64_t(0));
    QCOMPARE(noClose.load(), std::uint64_t(0));
    QVERIFY(cycles.load() > 0);
    QCOMPARE(bus.receiverCount<StressEvent>(), std::size_t(0));
    QCOMPARE(bus.failureCount(), std::uint64_t(0));
    qInfo("%llu subscribe cycles, %llu events taken", qulonglong(cycles.load()), qulonglong(taken.load()));
}

// ===========================================================================
// a receiver is never skipped while other receivers come and go
// ===========================================================================

void tst_BusStress::receiversSeeEverythingWhileOthersChurn()
{
    // Emit skips the receivers while the type's slot says there are none (its
    // divert bit, kept by the receivers' observer). Two churners subscribe
    // and drop receivers of the same type as fast as they can, so the bit
    // flips all the time and their updates race with the checker's own
    // subscribe(). A checker receiver must still get every event whose emit
    // started after its subscribe() returned: received or reported missed,
    // never skipped silently.
    constexpr int kChurners = 2;
    Bus bus;
    std::atomic<std::int64_t> started{-1}; // sequence number of the emit last started
    std::atomic<std::uint64_t> completed{0};
    std::atomic<bool> stop{false};
    std::atomic<bool> go{false};

    std::thread producer([&] {
        while (!go.load())
            std::this_thread::yield();
        for (std::uint64_t seq = 0; !stop.load(std::memory_order_relaxed); ++seq) {
            started.store(std::int64_t(seq));
            bus.emit(StressEvent{0, seq});
            completed.store(seq + 1);
        }
    });
    std::atomic<std::uint64_t> churned{0};
    std::vector<std::thread> churners;
    for (int c = 0; c < kChurners; ++c) {
        churners.emplace_back([&] {
            while (!go.load())
                std::this_thread::yield();
            while (!stop.load(std::memory_order_relaxed)) {
                Receiver<StressEvent> rx = bus.subscribe<StressEvent>(1);
                churned.fetch_add(1, std::memory_order_relaxed);
            }
        });
    }

    std::uint64_t checks = 0, skipped = 0, watchdogs = 0, expectedTotal = 0;
    go.store(true);
    const auto end = Clock::now() + kBudget;
    while (Clock::now() < end) {
        Receiver<StressEvent> rx = bus.subscribe<StressEvent>(1u << 14);
        const std::int64_t first = started.load() + 1; // every emit from here on started after subscribe()
        // Let at least a few hundred emits complete while it is subscribed.
        const auto watchdog = Clock::now() + kWatchdog;
        std::uint64_t last;
        while ((last = completed.load()) < std::uint64_t(first) + 300) {
            if (Clock::now() > watchdog) {
                ++watchdogs;
                break;
            }
            std::this_thread::yield();
        }
        rx.unsubscribe();
        // Events first..last-1 had started after subscribe() and completed before unsubscribe().
        std::uint64_t inRange = 0, missed = 0;
        for (;;) {
            ReceiveResult<StressEvent> r = rx.tryReceive();
            if (r.status() == ReceiveStatus::Lagged)
                missed += r.lagged();
            else if (r && std::int64_t(r->seq) >= first && r->seq < last)
                ++inRange;
            else if (!r)
                break;
        }
        const std::uint64_t expected = last > std::uint64_t(first) ? last - std::uint64_t(first) : 0;
        expectedTotal += expected;
        if (inRange + missed < expected)
            ++skipped;
        ++checks;
    }
    stop.store(true);
    producer.join();
    for (std::thread &t : churners)
        t.join();

    QCOMPARE(watchdogs, std::uint64_t(0));
    QCOMPARE(skipped, std::uint64_t(0));
    QVERIFY(checks > 0);
    QVERIFY(expectedTotal > 0);
    QVERIFY(churned.load() > 0);
    QCOMPARE(bus.receiverCount<StressEvent>(), std::size_t(0));
    qInfo("%llu checked subscriptions (%llu events), %llu churned receivers", qulonglong(checks),
          qulonglong(expectedTotal), qulonglong(churned.load()));
}

// ===========================================================================
// handlers added and removed while emitting
// ===========================================================================

void tst_BusStress::handlerChurn()
{
    constexpr int kChurnProducers = 2;
    constexpr int kChurners = 2;
    Bus bus;

    // A handler registered throughout sees every event, in order per producer.
    struct alignas(64) StableSlot {
        std::uint64_t next = 0; // written only by its producer's thread
        std::uint64_t gaps = 0;
    };
    StableSlot stable[kChurnProducers];
    bus.on(0, [&](const StressEvent &e) {
        StableSlot &s = stable[e.producer];
        if (e.seq != s.next)
            ++s.gaps;
        s.next = e.seq + 1;
    });

    struct HandlerState {
        std::atomic<bool> removed{false}; // set right after a waiting removal returned
        std::atomic<std::uint64_t> calls{0};
    };
    std::atomic<std::uint64_t> violations{0};
    std::atomic<std::uint64_t> wrongResults{0};
    std::atomic<std::uint64_t> cycles{0};
    std::atomic<bool> stop{false};
    std::atomic<bool> go{false};

    std::vector<std::uint64_t> emitted(kChurnProducers, 0);
    std::vector<std::thread> producers;
    for (int p = 0; p < kChurnProducers; ++p) {
        producers.emplace_back([&, p] {
            while (!go.load())
                std::this_thread::yield();
            std::uint64_t seq = 0;
            for (; !stop.load(std::memory_order_relaxed); ++seq)
                bus.emit(StressEvent{p, seq});
            emitted[std::size_t(p)] = seq;
        });
    }
    std::vector<std::thread> churners;
    for (int c = 0; c < kChurners; ++c) {
        churners.emplace_back([&, c] {
            std::minstd_rand rng(std::uint32_t(99 + c));
            while (!go.load())
                std::this_thread::yield();
            while (!stop.load()) {
                auto state = std::make_shared<HandlerState>();
                auto handler = [state, &violations](const StressEvent &) {
                    if (state->removed.load())
                        violations.fetch_add(1); // called after its removal returned
                    state->calls.fetch_add(1, std::memory_order_relaxed);
                };
                const int priority = int(rng() % 5) - 2;
                const auto how = rng() % 3;
                const int yields = int(rng() % 8);
                if (how == 0) {
                    const sigreg::HandlerId id = bus.on(priority, handler);
                    for (int i = 0; i < yields; ++i)
                        std::this_thread::yield();
                    if (!bus.remove<StressEvent>(id))
                        wrongResults.fetch_add(1);
                    if (bus.remove<StressEvent>(id))
                        wrongResults.fetch_add(1);
                } else {
                    sigreg::Guard g = bus.onGuarded<StressEvent>(priority, handler);
                    for (int i = 0; i < yields; ++i)
                        std::this_thread::yield();
                    if (how == 1) {
                        if (!g.reset())
                            wrongResults.fetch_add(1);
                    } // else: the guard's destructor removes it
                }
                state->removed.store(true);
                cycles.fetch_add(1, std::memory_order_relaxed);
            }
        });
    }

    go.store(true);
    std::this_thread::sleep_for(kBudget); // the length of the busy phase, not a result
    stop.store(true);
    for (std::thread &t : churners)
        t.join();
    for (std::thread &t : producers)
        t.join();

    QCOMPARE(violations.load(), std::uint64_t(0));
    QCOMPARE(wrongResults.load(), std::uint64_t(0));
    QVERIFY(cycles.load() > 0);
    for (int p = 0; p < kChurnProducers; ++p) {
        QCOMPARE(stable[p].gaps, std::uint64_t(0));
        QCOMPARE(stable[p].next, emitted[std::size_t(p)]);
    }
    QCOMPARE(bus.handlerCount<StressEvent>(), std::size_t(1));
    QCOMPARE(bus.failureCount(), std::uint64_t(0));
}

// ===========================================================================
// channel creation racing with emits
// ===========================================================================

namespace {

constexpr int kTypes = 40;

/// Calls f(Typed<I>{}) for I in [0, kTypes), forwards or backwards.
template <class F, int... I>
void forEachTypeImpl(F &&f, bool backwards, std::integer_sequence<int, I...>)
{
    if (backwards)
        (f(Typed<kTypes - 1 - I>{}), ...);
    else
        (f(Typed<I>{}), ...);
}
template <class F>
void forEachType(F &&f, bool backwards = false)
{
    forEachTypeImpl(std::forward<F>(f), backwards, std::make_integer_sequence<int, kTypes>{});
}

} // namespace

void tst_BusStress::channelCreationRacesWithEmit()
{
    const int kRounds = scaled(30, 8);
    std::uint64_t badCounts = 0;
    for (int round = 0; round < kRounds; ++round) {
        Bus bus;
        // calls[type][registering thread]
        std::vector<std::atomic<std::uint64_t>> calls(kTypes * 2);
        std::atomic<bool> go{false};
        std::atomic<int> registrarsDone{0};
        std::vector<std::thread> threads;
        for (int r = 0; r < 2; ++r) {
            threads.emplace_back([&, r] {
                while (!go.load())
                    std::this_thread::yield();
                forEachType(
                    [&](auto event) {
                        using E = decltype(event);
                        bus.on([&calls, r](const E &e) { calls[std::size_t(e.value) * 2 + std::size_t(r)].fetch_add(1); });
                    },
                    r == 1);
                registrarsDone.fetch_add(1);
            });
        }
        for (int e = 0; e < 2; ++e) {
            threads.emplace_back([&] {
                while (!go.load())
                    std::this_thread::yield();
                while (registrarsDone.load() < 2) {
                    std::uint64_t index = 0;
                    forEachType([&](auto event) {
                        event.value = index++;
                        bus.emit(event);
                    });
                }
            });
        }
        go.store(true);
        for (std::thread &t : threads)
            t.join();

        if (bus.typeCount() != std::size_t(kTypes))
            QFAIL(qPrintable(QStringLiteral("round %1: %2 channels").arg(round).arg(bus.typeCount())));
        // Every handler is in its own type's channel: one emit of each type
        // now calls each of its two handlers exactly once.
        std::vector<std::uint64_t> before(calls.size());
        for (std::size_t i = 0; i < calls.size(); ++i)
            before[i] = calls[i].load();
        std::uint64_t index = 0;
        forEachType([&](auto event) {
            using E = decltype(event);
            if (bus.handlerCount<E>() != 2)
                ++badCounts;
            event.value = index++;
            bus.emit(event);
        });
        for (std::size_t i = 0; i < calls.size(); ++i) {
            if (calls[i].load() != before[i] + 1)
                ++badCounts;
        }
    }
    QCOMPARE(badCounts, std::uint64_t(0));
}

// ===========================================================================
// the bus destroyed while consumers wait
// ===========================================================================

void tst_BusStress::busDestroyedWhileConsumersWait()
{
    const int kRounds = scaled(40, 12);
    constexpr int kConsumers = 3;
    std::uint64_t failures = 0;
    for (int round = 0; round < kRounds; ++round) {
        auto bus = std::make_unique<Bus>();
        std::vector<Receiver<StressEvent>> receivers;
        for (int c = 0; c < kConsumers; ++c)
            receivers.push_back(bus->subscribe<StressEvent>(std::size_t(1) << (3 * c))); // 1, 8, 64
        std::vector<ConsumerReport> reports(kConsumers);
        std::atomic<int> started{0};
        std::vector<std::thread> consumers;
        for (int c = 0; c < kConsumers; ++c) {
            consumers.emplace_back([&, c] {
                std::vector<std::int64_t> last(1, -1);
                started.fetch_add(1);
                // receive() for some, receiveFor() with a watchdog for others.
                for (;;) {
                    Receiver<StressEvent> &rx = receivers[std::size_t(c)];
                    ReceiveResult<StressEvent> r = c == 1 ? rx.receiveFor(kWatchdog) : rx.receive();
                    if (r.status() == ReceiveStatus::TimedOut) {
                        reports[std::size_t(c)].watchdog = true;
                        return;
                    }
                    if (!account(r, last, reports[std::size_t(c)]))
                        return;
                }
            });
        }
        // Some rounds emit before the destruction, from another thread.
        const std::uint64_t events = std::uint64_t(round % 3) * 50;
        std::thread producer([&] {
            for (std::uint64_t s = 0; s < events; ++s)
                bus->emit(StressEvent{0, s});
        });
        producer.join();
        while (started.load() < kConsumers)
            std::this_thread::yield();
        if (round % 2)
            std::this_thread::sleep_for(2ms); // most likely all blocked by now
        bus.reset();
        for (std::thread &t : consumers)
            t.join();
        for (const ConsumerReport &rep : reports) {
            if (rep.watchdog || !rep.closed || rep.disorder || rep.received + rep.missed != events)
                ++failures;
        }
        for (const Receiver<StressEvent> &r : receivers) {
            if (r.isSubscribed())
                ++failures;
        }
    }
    QCOMPARE(failures, std::uint64_t(0));
}

// ===========================================================================
// receivers dropped while the bus is destroyed
// ===========================================================================

void tst_BusStress::receiversDroppedWhileBusDestroyed()
{
    // A receiver's guard may be used concurrently with the destruction of its
    // registry (see sigreg::Guard), so unsubscribing or destroying receivers
    // on other threads while the bus goes is harmless.
    const int kRounds = scaled(60, 20);
    constexpr int kThreads = 3;
    std::uint64_t failures = 0;
    for (int round = 0; round < kRounds; ++round) {
        auto bus = std::make_unique<Bus>();
        std::vector<std::optional<Receiver<StressEvent>>> receivers(kThreads);
        for (auto &r : receivers)
            r.emplace(bus->subscribe<StressEvent>(4));
        bus->emit(StressEvent{0, 0});
        std::vector<int> closedSeen(kThreads, 0);
        releaseTogether(
            kThreads,
            [&](int t) {
                std::optional<Receiver<StressEvent>> &rx = receivers[std::size_t(t)];
                if ((round + t) % 2) {
                    rx->unsubscribe();
                    // What it held, then Closed.
                    if (rx->tryReceive().hasValue() && rx->tryReceive().status() == ReceiveStatus::Closed)
                        closedSeen[std::size_t(t)] = 1;
                } else {
                    rx.reset(); // destroyed: nothing to observe; ASan checks it
                }
            },
            [&] { bus.reset(); });
        for (int t = 0; t < kThreads; ++t) {
            if ((round + t) % 2 && !closedSeen[std::size_t(t)]) // the unsubscribing ones
                ++failures;
        }
    }
    QCOMPARE(failures, std::uint64_t(0));
}

void tst_BusStress::handlerGuardsDroppedWhileBusDestroyed()
{
    // The same for push handlers of a type with a direct slot: guard removals
    // on other threads race with the bus's destructor, which waits for them.
    // Each handler object is destroyed exactly once, whoever removes it.
    // (Before the fix, a removal that ran while the destructor waited wrote
    // to a mirror word that had gone out of scope: ASan's
    // stack-use-after-scope.)
    struct Counted {
        std::atomic<int> *destroyed;
        explicit Counted(std::atomic<int> *d) : destroyed(d) {}
        Counted(Counted &&o) noexcept : destroyed(std::exchange(o.destroyed, nullptr)) {}
        ~Counted()
        {
            if (destroyed)
                destroyed->fetch_add(1);
        }
    };
    const int kRounds = scaled(400, 300);
    constexpr int kThreads = 2;
    constexpr int kPerThread = 32;
    std::atomic<int> destroyed{0};
    for (int round = 0; round < kRounds; ++round) {
        auto bus = std::make_unique<Bus>();
        std::vector<std::vector<Guard>> guards(kThreads);
        for (auto &g : guards) {
            for (int i = 0; i < kPerThread; ++i)
                g.push_back(bus->onGuarded<StressEvent>([c = Counted(&destroyed)](const StressEvent &) {}));
        }
        bus->emit(StressEvent{0, 0});
        releaseTogether(
            kThreads,
            [&](int t) {
                for (Guard &g : guards[std::size_t(t)])
                    g.reset();
            },
            [&] {
                for (int spin = 0; spin < (round % 16) * 200; ++spin) // vary where the destructor meets the removals
                    std::atomic_signal_fence(std::memory_order_seq_cst);
                bus.reset();
            });
        QCOMPARE(destroyed.load(), (round + 1) * kThreads * kPerThread);
    }
}

// ===========================================================================
// ping-pong: no lost wake-up
// ===========================================================================

void tst_BusStress::pingPongWakeUps_data()
{
    QTest::addColumn<int>("capacity");
    QTest::newRow("capacity 1") << 1;
    QTest::newRow("capacity 64") << 64;
}

void tst_BusStress::pingPongWakeUps()
{
    QFETCH(int, capacity);
    const std::uint64_t kExchanges = std::uint64_t(scaled(20000, 2000));
    constexpr std::uint64_t kQuit = ~std::uint64_t(0);
    Bus bus;
    Receiver<Ping> pings = bus.subscribe<Ping>(std::size_t(capacity));
    Receiver<Pong> pongs = bus.subscribe<Pong>(std::size_t(capacity));
    std::atomic<std::uint64_t> stuck{0}; // a wait that reached the watchdog: a lost wake-up

    // Each side blocks until the other answers: every exchange is two
    // wake-ups of a (most likely) sleeping receiver.
    std::thread echo([&] {
        for (;;) {
            ReceiveResult<Ping> r = pings.receiveFor(kWatchdog);
            if (!r) {
                stuck.fetch_add(1);
                return;
            }
            if (r->value == kQuit)
                return;
            bus.emit(Pong{r->value});
        }
    });
    const auto deadline = Clock::now() + kBudget;
    std::uint64_t wrong = 0;
    std::uint64_t i = 0;
    for (; i < kExchanges && Clock::now() < deadline; ++i) {
        bus.emit(Ping{i});
        ReceiveResult<Pong> r = pongs.receiveFor(kWatchdog);
        if (!r) {
            stuck.fetch_add(1);
            break;
        }
        if (r->value != i)
            ++wrong;
    }
    bus.emit(Ping{kQuit});
    echo.join();
    QCOMPARE(stuck.load(), std::uint64_t(0));
    QCOMPARE(wrong, std::uint64_t(0));
    QVERIFY(i > 0);
    QCOMPARE(pings.missedCount(), std::uint64_t(0));
    QCOMPARE(pongs.missedCount(), std::uint64_t(0));
    qInfo("%llu exchanges", qulonglong(i));
}

QTEST_GUILESS_MAIN(tst_BusStress)
#include "tst_busstress.moc"
