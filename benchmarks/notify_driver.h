// SPDX-License-Identifier: MIT
// sigreg-benchmarks — the driver of every BM_Notify_* row: one function
// template, so that the timed loop, the warm-up, the checks and the counters
// are identical for every peer (notify_benchmarks.cpp, qt_benchmarks.cpp).
//
// A Peer is constructible from the number of handlers (kHandler, or its body
// in other closure types for the Mixed rows) and has notify(const int&).
#pragma once

#include "bench_common.h"

#include <benchmark/benchmark.h>

#include <cstdint>

namespace sigreg_bench {

template <class Peer>
void notifyBenchmark(benchmark::State &state)
{
    const int handlers = static_cast<int>(state.range(0));
    Peer &peer = Shared<Peer>::setUp(state, handlers);

    // Not a compile-time constant as far as the optimiser knows (it passes
    // through DoNotOptimize every iteration), so no peer can fold the calls.
    int event = 1;

    // Warm-up, one notification per thread before anything is measured:
    // first-use costs (Sigreg takes a per-thread hazard record on a thread's
    // first notification; other peers may have lazy state too) belong to no
    // steady-state notification. It also warms the caches equally for all.
    const std::int64_t sumBefore = handlerSum();
    peer.notify(event);

    const std::uint64_t allocsBefore = allocationCount();
    for (auto _ : state) {
        benchmark::DoNotOptimize(event);
        peer.notify(event);
    }
    const std::uint64_t allocs = allocationCount() - allocsBefore;

    // Proof that the work happened: every handler ran exactly once per
    // notification (warm-up included) on this thread, with this payload.
    const std::int64_t sum = handlerSum() - sumBefore;
    benchmark::DoNotOptimize(sum);
    const std::int64_t expected =
        (static_cast<std::int64_t>(state.iterations()) + 1) * handlers * static_cast<std::int64_t>(event);

    Shared<Peer>::tearDown(state);

    if (sum != expected) {
        state.SkipWithError("handler calls do not match notifications x handlers");
        return;
    }
    reportAllocations(state, "allocs_per_notify", allocs);
}

} // namespace sigreg_bench
