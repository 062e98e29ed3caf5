// SPDX-License-Identifier: MIT
// sigreg-benchmarks — sigreg::Bus: push handlers through the bus, emits
// nobody listens to, and broadcast to pull receivers against the queues a
// hand-written bus would use. Core only, no Qt.
//
// * BM_BusEmit_Handlers: bus.emit(int) with N push handlers (N = 1, 4, 16),
//   every one kHandler. Same driver (notify_driver.h), event type, handler,
//   arguments and thread counts (1 and 2, both emitting on the same bus) as
//   BM_Notify_Sigreg, so the two rows differ only in what emit does before
//   the walk (the type's index, its direct slot and the slot's divert bit):
//   read BusEmit ÷ Notify_Sigreg per row.
//   CPU time per emit (per thread with 2 threads).
// * BM_BusEmit_Sender: the same through a sigreg::Sender<int>, which keeps
//   its type's slot (no index load): what a hot path that keeps a sender pays.
// * BM_BusEmit_NoListener: emit of a type with no handler and no receiver.
//   Argument 0: the type never had a channel on this bus (the bus has a
//   channel for another type; the type's direct slot names the shared empty
//   handler list, which emit protects and finds empty); 1: it had a handler,
//   removed before the loop (the channel stays, and the slot names its empty
//   handler list). CPU
//   time per emit; allocs_per_emit, and the row fails if any emit allocates
//   or any handler runs.
// * BM_BusBroadcast_{Receivers,MutexDeque,MoodyCamel}: one producer, four
//   receivers, every event delivered to all four; small events ({seq,
//   producer}, 16 bytes). Each iteration is a burst of kBurst (64) events,
//   no more than a receiver holds (capacity 64), so nothing is ever dropped.
//   The "per event" figure (time / the `burst` counter, which perf_report.py
//   --bus prints) is the cost of one emitted event: its four copies pushed,
//   and taken out again by the four receivers. Argument `threaded`:
//     0: one thread emits the burst, then drains each receiver with
//        non-blocking takes until it reports empty. CPU time.
//     1: four consumer threads, each blocked in its receiver's blocking take;
//        the producer emits the burst and waits (yielding) until every
//        consumer has taken all of it. Wall-clock time (UseRealTime): the
//        work is spread over five threads, here on two cores, so wake-ups
//        and scheduling are part of what is measured.
//   Every consumer checks that it gets every sequence number once and in
//   order (no loss, no lag) and sums the payload; the row fails otherwise.
//   allocs_per_event counts the allocations of every thread of the process
//   (processAllocationCount()), consumers included, per emitted event.
//   - Receivers: sigreg::Bus, bus.subscribe<Tick>(64) four times; emit;
//     tryReceive() / receive().
//   - MutexDeque: per receiver a std::mutex + std::deque (+ a
//     std::condition_variable for the blocking take), with the bus's
//     semantics: bounded to 64, the oldest event dropped and counted as
//     lagged when full. The "bus" is a loop over the four queues.
//   - MoodyCamel: per receiver a moodycamel::ConcurrentQueue (threaded: a
//     BlockingConcurrentQueue), token-less enqueue (a bus's emit may come
//     from any thread, so it cannot hold producer tokens) and a consumer
//     token per receiver. These queues are unbounded: they never drop, so
//     they do less than the other two when a receiver falls behind, which
//     this benchmark never lets happen. Only compiled when the header is
//     found (Debian: libconcurrentqueue-dev).
#include "bench_common.h"
#include "notify_driver.h"

#include <sigreg/bus.h>

#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#ifdef SIGREG_BENCH_HAVE_MOODYCAMEL
#include <concurrentqueue/blockingconcurrentqueue.h>
#include <concurrentqueue/concurrentqueue.h>
#endif

namespace sigreg_bench {
namespace {

// ---------------------------------------------------------------------------
// BM_BusEmit_Handlers
// ---------------------------------------------------------------------------

/// A bus with N handlers of `int`, each kHandler: the shape of SigregPeer
/// (notify_benchmarks.cpp), one level up.
///
/// notify() is forced inline, so that both rows run the same loop with the
/// dispatch inlined whatever the inliner decides for the larger emit. (Before
/// the direct slots, emit inlined two walks, the receivers' and the
/// handlers', and GCC then left this adaptor out of line: a call and a frame
/// per emit that SigregPeer's loop does not pay, a cost of the adaptor, not
/// of the bus.)
struct BusPeer {
    sigreg::Bus bus;

    explicit BusPeer(int handlers)
    {
        for (int i = 0; i < handlers; ++i)
            bus.on<int>(kHandler);
    }
    SIGREG_ALWAYS_INLINE void notify(const int &event) noexcept { bus.emit(event); }
};

void BM_BusEmit_Handlers(benchmark::State &state)
{
    notifyBenchmark<BusPeer>(state);
}

// As BM_Notify_Sigreg: CPU time, per emit per thread with 2 threads.
BENCHMARK(BM_BusEmit_Handlers)->Arg(1)->Arg(4)->Arg(16)->Threads(1)->Threads(2);

/// The same through a Sender<int>: the slot found once, not per emit.
struct BusSenderPeer {
    sigreg::Bus bus;
    sigreg::Sender<int> sender;

    explicit BusSenderPeer(int handlers)
    {
        for (int i = 0; i < handlers; ++i)
            bus.on<int>(kHandler);
        sender = bus.sender<int>();
    }
    SIGREG_ALWAYS_INLINE void notify(const int &event) noexcept { sender.emit(event); }
};

void BM_BusEmit_Sender(benchmark::State &state)
{
    notifyBenchmark<BusSenderPeer>(state);
}
BENCHMARK(BM_BusEmit_Sender)->Arg(1)->Arg(4)->Arg(16)->Threads(1)->Threads(2);

// ---------------------------------------------------------------------------
// BM_BusEmit_NoListener
// ---------------------------------------------------------------------------

/// The event nobody listens to, and one that gives the bus a channel table.
struct QuietEvent {
    int value;
};
struct OtherEvent {
    int value;
};

void BM_BusEmit_NoListener(benchmark::State &state)
{
    const bool hadHandler = state.range(0) != 0;
    sigreg::Bus bus;
    // A channel of another type: the table exists, as in any program that
    // uses the bus at all.
    const sigreg::HandlerId other = bus.on<OtherEvent>([](const OtherEvent &e) { handlerWork(e.value); });
    if (hadHandler) {
        const sigreg::HandlerId id = bus.on<QuietEvent>([](const QuietEvent &e) { handlerWork(e.value); });
        bus.remove<QuietEvent>(id);
    }
    QuietEvent event{1};

    // Warm-up: the first emit of a type interns its index (once per process).
    bus.emit(event);
    const std::int64_t sumBefore = handlerSum();
    const std::uint64_t allocsBefore = allocationCount();
    for (auto _ : state) {
        benchmark::DoNotOptimize(event);
        bus.emit(event);
    }
    const std::uint64_t allocs = allocationCount() - allocsBefore;
    const std::int64_t sum = handlerSum() - sumBefore;

    if (bus.hasChannel<QuietEvent>() != hadHandler || bus.handlerCount<QuietEvent>() != 0
        || bus.receiverCount<QuietEvent>() != 0 || !bus.remove<OtherEvent>(other)) {
        state.SkipWithError("the bus's channels are not what the variant says");
        return;
    }
    if (sum != 0) {
        state.SkipWithError("a handler ran for an event nobody listens to");
        return;
    }
    if (allocationCountingEnabled() && allocs != 0) {
        state.SkipWithError("an emit nobody listens to allocated");
        return;
    }
    reportAllocations(state, "allocs_per_emit", allocs);
}

// 0: never had a channel; 1: had a handler, removed since. CPU time.
BENCHMARK(BM_BusEmit_NoListener)->Arg(0)->Arg(1);

// ---------------------------------------------------------------------------
// BM_BusBroadcast_*: the fabrics
// ---------------------------------------------------------------------------

/// The broadcast event: small, trivially copyable, and checkable.
struct Tick {
    std::uint64_t seq;
    std::uint32_t producer;
};

constexpr int kReceivers = 4;
constexpr std::size_t kCapacity = 64;
constexpr std::uint64_t kBurst = 64; // <= kCapacity: nothing is dropped
constexpr std::uint64_t kStop = std::numeric_limits<std::uint64_t>::max();

/// What a take found.
enum class Got { Event, Empty, Lagged, Closed };

// A fabric: constructible from (receivers, capacity); emit(const Tick&) to
// every receiver; tryTake(r, out) (non-blocking) and take(r, out)
// (blocking) for receiver r, each used by one thread at a time.

/// sigreg::Bus with one Receiver<Tick> per receiver.
class BusFabric {
public:
    BusFabric(int receivers, std::size_t capacity)
    {
        for (int i = 0; i < receivers; ++i)
            m_receivers.push_back(m_bus.subscribe<Tick>(capacity));
    }
    void emit(const Tick &t) noexcept { m_bus.emit(t); }
    Got tryTake(int r, Tick &out) { return convert(m_receivers[static_cast<std::size_t>(r)].tryReceive(), out); }
    Got take(int r, Tick &out) { return convert(m_receivers[static_cast<std::size_t>(r)].receive(), out); }

private:
    static Got convert(sigreg::ReceiveResult<Tick> &&result, Tick &out)
    {
        switch (result.status()) {
        case sigreg::ReceiveStatus::Received:
            out = *result;
            return Got::Event;
        case sigreg::ReceiveStatus::Empty:
        case sigreg::ReceiveStatus::TimedOut:
            return Got::Empty;
        case sigreg::ReceiveStatus::Lagged:
            return Got::Lagged;
        case sigreg::ReceiveStatus::Closed:
            return Got::Closed;
        }
        return Got::Closed;
    }

    sigreg::Bus m_bus;
    std::vector<sigreg::Receiver<Tick>> m_receivers;
};

/// The hand-written baseline: per receiver a mutex, a deque and a condition
/// variable, bounded with the bus's semantics (drop the oldest, report lag).
class MutexDequeFabric {
    struct alignas(64) Queue {
        std::mutex mutex;
        std::condition_variable cv;
        std::deque<Tick> events;
        std::uint64_t lagged = 0;
    };

public:
    MutexDequeFabric(int receivers, std::size_t capacity)
        : m_queues(static_cast<std::size_t>(receivers)), m_capacity(capacity)
    {
    }
    void emit(const Tick &t)
    {
        for (Queue &q : m_queues) {
            {
                std::lock_guard<std::mutex> lock(q.mutex);
                if (q.events.size() == m_capacity) {
                    q.events.pop_front();
                    ++q.lagged;
                }
                q.events.push_back(t);
            }
            q.cv.notify_one();
        }
    }
    Got tryTake(int r, Tick &out)
    {
        Queue &q = m_queues[static_cast<std::size_t>(r)];
        std::lock_guard<std::mutex> lock(q.mutex);
        return takeLocked(q, out);
    }
    Got take(int r, Tick &out)
    {
        Queue &q = m_queues[static_cast<std::size_t>(r)];
        std::unique_lock<std::mutex> lock(q.mutex);
        q.cv.wait(lock, [&q] { return !q.events.empty() || q.lagged != 0; });
        return takeLocked(q, out);
    }

private:
    static Got takeLocked(Queue &q, Tick &out)
    {
        if (q.lagged != 0) {
            q.lagged = 0;
            return Got::Lagged;
        }
        if (q.events.empty())
            return Got::Empty;
        out = q.events.front();
        q.events.pop_front();
        return Got::Event;
    }

    std::vector<Queue> m_queues;
    const std::size_t m_capacity;
};

#ifdef SIGREG_BENCH_HAVE_MOODYCAMEL
/// moodycamel's lock-free queues, one per receiver. Unbounded: no dropping,
/// no lag (capacity is only the initial size).
template <class Queue>
class MoodyCamelFabric {
    struct alignas(64) Receiver {
        explicit Receiver(std::size_t capacity) : queue(capacity), token(queue) {}
        Queue queue;
        moodycamel::ConsumerToken token;
    };

public:
    MoodyCamelFabric(int receivers, std::size_t capacity)
    {
        for (int i = 0; i < receivers; ++i)
            m_receivers.push_back(std::make_unique<Receiver>(capacity));
    }
    void emit(const Tick &t)
    {
        for (auto &r : m_receivers)
            r->queue.enqueue(t);
    }
    Got tryTake(int r, Tick &out)
    {
        Receiver &rx = *m_receivers[static_cast<std::size_t>(r)];
        return rx.queue.try_dequeue(rx.token, out) ? Got::Event : Got::Empty;
    }
    Got take(int r, Tick &out)
    {
        Receiver &rx = *m_receivers[static_cast<std::size_t>(r)];
        rx.queue.wait_dequeue(rx.token, out);
        return Got::Event;
    }

private:
    std::vector<std::unique_ptr<Receiver>> m_receivers;
};

/// The threaded mode needs the blocking variant; the single-threaded mode
/// uses the plain queue (nothing ever waits there).
using MoodyCamelPlain = MoodyCamelFabric<moodycamel::ConcurrentQueue<Tick>>;
using MoodyCamelBlocking = MoodyCamelFabric<moodycamel::BlockingConcurrentQueue<Tick>>;
#endif

// ---------------------------------------------------------------------------
// BM_BusBroadcast_*: the drivers
// ---------------------------------------------------------------------------

/// What every consumer checks: each sequence number once, in order.
struct alignas(64) ConsumerCheck {
    std::uint64_t next = 0; // also the number taken
    std::uint64_t sum = 0;
    bool bad = false;

    void take(const Tick &t) noexcept
    {
        bad |= t.seq != next;
        bad |= t.producer != 0;
        sum += t.seq;
        ++next;
    }
};

/// After the loop, for both modes: every consumer took `emitted` events,
/// 0 .. emitted - 1, and nothing else.
bool checksPass(const ConsumerCheck *checks, std::uint64_t emitted)
{
    const std::uint64_t expectedSum = emitted == 0 ? 0 : emitted * (emitted - 1) / 2;
    for (int r = 0; r < kReceivers; ++r) {
        const ConsumerCheck &c = checks[r];
        if (c.bad || c.next != emitted || c.sum != expectedSum)
            return false;
    }
    return true;
}

void reportBroadcast(benchmark::State &state, std::uint64_t allocs)
{
    const auto events = static_cast<double>(kBurst);
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kBurst));
    state.counters["burst"] = events; // per event: time / burst
    reportAllocations(state, "allocs_per_event", allocs, events);
}

/// threaded = 0: emit a burst, then drain each receiver, all on this thread.
template <class Fabric>
void broadcastSingleThread(benchmark::State &state)
{
    Fabric fabric(kReceivers, kCapacity);
    std::array<ConsumerCheck, kReceivers> checks{};
    std::uint64_t seq = 0;
    bool misfit = false; // a take that found neither an event nor "empty"

    auto burst = [&] {
        for (std::uint64_t i = 0; i < kBurst; ++i) {
            Tick t{seq++, 0};
            benchmark::DoNotOptimize(t);
            fabric.emit(t);
        }
        for (int r = 0; r < kReceivers; ++r) {
            Tick t;
            Got got;
            while ((got = fabric.tryTake(r, t)) == Got::Event)
                checks[static_cast<std::size_t>(r)].take(t);
            misfit |= got != Got::Empty;
        }
    };

    // Warm-up, one burst: the hazard record, the queues' first blocks.
    burst();
    const std::uint64_t allocsBefore = processAllocationCount();
    for (auto _ : state)
        burst();
    const std::uint64_t allocs = processAllocationCount() - allocsBefore;

    benchmark::DoNotOptimize(checks);
    if (misfit || !checksPass(checks.data(), seq)) {
        state.SkipWithError("a receiver lost, reordered or duplicated events");
        return;
    }
    reportBroadcast(state, allocs);
}

/// threaded = 1: four consumer threads blocked in take(); the producer emits
/// a burst and waits until every consumer has taken all of it.
template <class Fabric>
void broadcastThreaded(benchmark::State &state)
{
    Fabric fabric(kReceivers, kCapacity);
    std::array<ConsumerCheck, kReceivers> checks{};
    struct alignas(64) Progress {
        std::atomic<std::uint64_t> taken{0};
    };
    std::array<Progress, kReceivers> progress{};

    std::vector<std::thread> consumers;
    for (int r = 0; r < kReceivers; ++r) {
        consumers.emplace_back([&fabric, &check = checks[static_cast<std::size_t>(r)],
                                &taken = progress[static_cast<std::size_t>(r)].taken, r] {
            Tick t;
            for (;;) {
                if (fabric.take(r, t) != Got::Event) {
                    check.bad = true; // lag or closure: should not happen
                    break;
                }
                if (t.seq == kStop)
                    break;
                check.take(t);
                taken.store(check.next, std::memory_order_release);
            }
            // Done, or failed: never leave the producer waiting.
            taken.store(kStop, std::memory_order_release);
        });
    }

    std::uint64_t seq = 0;
    auto burst = [&] {
        for (std::uint64_t i = 0; i < kBurst; ++i) {
            Tick t{seq++, 0};
            benchmark::DoNotOptimize(t);
            fabric.emit(t);
        }
        for (Progress &p : progress) {
            while (p.taken.load(std::memory_order_acquire) < seq)
                std::this_thread::yield(); // two cores, five threads
        }
    };

    burst(); // warm-up: first wake-ups, the queues' first blocks
    const std::uint64_t allocsBefore = processAllocationCount();
    for (auto _ : state)
        burst();
    // The consumers' allocations happened before their last release store,
    // which the producer read with acquire.
    const std::uint64_t allocs = processAllocationCount() - allocsBefore;

    fabric.emit(Tick{kStop, 0});
    for (std::thread &c : consumers)
        c.join();

    if (!checksPass(checks.data(), seq)) {
        state.SkipWithError("a consumer lost, reordered or duplicated events");
        return;
    }
    reportBroadcast(state, allocs);
}

template <class Fabric, class BlockingFabric = Fabric>
void broadcastBenchmark(benchmark::State &state)
{
    if (state.range(0) == 0)
        broadcastSingleThread<Fabric>(state);
    else
        broadcastThreaded<BlockingFabric>(state);
}

void BM_BusBroadcast_Receivers(benchmark::State &state)
{
    broadcastBenchmark<BusFabric>(state);
}
void BM_BusBroadcast_MutexDeque(benchmark::State &state)
{
    broadcastBenchmark<MutexDequeFabric>(state);
}
#ifdef SIGREG_BENCH_HAVE_MOODYCAMEL
void BM_BusBroadcast_MoodyCamel(benchmark::State &state)
{
    broadcastBenchmark<MoodyCamelPlain, MoodyCamelBlocking>(state);
}
#endif

// threaded:0 is one thread's CPU time; threaded:1 wall-clock time (the work
// is on five threads). Same names, one registration per mode.
BENCHMARK(BM_BusBroadcast_Receivers)->ArgName("threaded")->Arg(0);
BENCHMARK(BM_BusBroadcast_Receivers)->ArgName("threaded")->Arg(1)->UseRealTime();
BENCHMARK(BM_BusBroadcast_MutexDeque)->ArgName("threaded")->Arg(0);
BENCHMARK(BM_BusBroadcast_MutexDeque)->ArgName("threaded")->Arg(1)->UseRealTime();
#ifdef SIGREG_BENCH_HAVE_MOODYCAMEL
BENCHMARK(BM_BusBroadcast_MoodyCamel)->ArgName("threaded")->Arg(0);
BENCHMARK(BM_BusBroadcast_MoodyCamel)->ArgName("threaded")->Arg(1)->UseRealTime();
#endif

} // namespace
} // namespace sigreg_bench
