// SPDX-License-Identifier: MIT
// sigreg-benchmarks — what every benchmark shares: the handler's work, the
// allocation counter helper, and the hand-over of one object to all threads.
#pragma once

#include "alloc_counter.h"

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <utility>

namespace sigreg_bench {

/// Per-thread sink of every handler call. Thread-local so that two threads
/// notifying at once never share its cache line (the benchmarks measure the
/// dispatch, not contention on the handlers' data). constinit: accessed
/// directly, without a TLS wrapper call.
inline constinit thread_local std::atomic<std::int64_t> tl_counter{0};

/// The work of every handler, for every peer: one relaxed read-modify-write
/// of a thread-local value, written as load + store rather than fetch_add so
/// that it compiles to plain moves and an add (no lock prefix). It is
/// deliberately tiny, so the benchmarks measure the cost of the dispatch
/// mechanism; it is an ordinary inline function, so each peer may inline it
/// into whatever its own call mechanism allows.
inline void handlerWork(const int &value) noexcept
{
    tl_counter.store(tl_counter.load(std::memory_order_relaxed) + value, std::memory_order_relaxed);
}

/// The handler every peer registers: same type, same body everywhere.
inline constexpr auto kHandler = [](const int &value) { handlerWork(value); };

/// The calling thread's handler sum so far.
inline std::int64_t handlerSum() noexcept
{
    return tl_counter.load(std::memory_order_relaxed);
}

/// Reports `allocations` (made by this thread during the timed loop) as
/// counter `name`, averaged over iterations. Google Benchmark adds up the
/// counters of all threads and divides a kAvgIterations counter by the total
/// iterations of all threads, so with one delta per thread the result is
/// allocations per operation over the whole run.
inline void reportAllocations(benchmark::State &state, const char *name, std::uint64_t allocations,
                              double operationsPerIteration = 1.0)
{
    if (!allocationCountingEnabled())
        return;
    state.counters[name] = benchmark::Counter(static_cast<double>(allocations) / operationsPerIteration,
                                              benchmark::Counter::kAvgIterations);
}

/// One object of type T shared by all threads of a multi-threaded benchmark.
///
/// Google Benchmark runs the code before `for (auto _ : state)` in every
/// thread, and synchronises the threads only when they enter the loop (a
/// barrier in State::StartKeepRunning, reached from State::end()) and when
/// they leave it (State::FinishKeepRunning). Thread 0 builds the object
/// before the loop; the other threads wait here until it is published, so
/// they can take a plain reference before the loop and the timed loop stays
/// identical in every thread. The publication is an explicit release/acquire
/// pair: no reliance on where exactly the framework puts its barrier.
///
/// Thread 0 destroys the object after the loop. The exit barrier guarantees
/// every thread has finished its iterations by then, and the other threads
/// must not touch the object after their loop. A run's threads are joined
/// before the next run starts, so no thread can see a previous run's object.
template <class T>
class Shared {
public:
    template <class... Args>
    static T &setUp(const benchmark::State &state, Args &&...args)
    {
        if (state.thread_index() == 0) {
            T *object = new T(std::forward<Args>(args)...);
            s_object.store(object, std::memory_order_release);
            return *object;
        }
        T *object;
        while ((object = s_object.load(std::memory_order_acquire)) == nullptr)
            std::this_thread::yield(); // only 2 cores: let thread 0 finish building
        return *object;
    }

    static void tearDown(const benchmark::State &state)
    {
        if (state.thread_index() == 0)
            delete s_object.exchange(nullptr, std::memory_order_acq_rel);
    }

private:
    static inline std::atomic<T *> s_object{nullptr};
};

} // namespace sigreg_bench
