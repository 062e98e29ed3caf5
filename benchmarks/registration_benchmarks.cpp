// SPDX-License-Identifier: MIT
// sigreg-benchmarks — registration cost: add + remove with handlers already
// present, and filling an empty registry one handler at a time or in a batch.
//
// Sigreg deliberately trades write speed for read speed (every removal
// copies the handler array and issues a process-wide memory barrier), so
// these rows show the price paid for the notify rows.
#include "bench_common.h"

#include <sigreg/registry.h>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>

#ifdef SIGREG_BENCH_HAVE_QT
#include "qt_emitter.h"
#endif

namespace sigreg_bench {
namespace {

// ---------------------------------------------------------------------------
// add + remove, argument = handlers already present
// ---------------------------------------------------------------------------

void BM_AddRemove_Sigreg(benchmark::State &state)
{
    sigreg::Registry<int> registry;
    for (std::int64_t i = 0; i < state.range(0); ++i)
        registry.add(kHandler);

    // One untimed round first: one-time costs (registering for membarrier,
    // growing the registry's bookkeeping vectors to their steady size) are
    // not part of a steady-state add/remove.
    registry.remove(registry.add(kHandler));

    const std::uint64_t allocsBefore = allocationCount();
    for (auto _ : state) {
        auto id = registry.add(kHandler);
        benchmark::DoNotOptimize(id);
        registry.remove(id);
    }
    reportAllocations(state, "allocs_per_op", allocationCount() - allocsBefore);
}
BENCHMARK(BM_AddRemove_Sigreg)->Arg(0)->Arg(4)->Arg(16)->Arg(100);

#ifdef SIGREG_BENCH_HAVE_QT
void BM_AddRemove_QtConnect(benchmark::State &state)
{
    QtEmitter emitter;
    for (std::int64_t i = 0; i < state.range(0); ++i)
        QObject::connect(&emitter, &QtEmitter::fired, &emitter, kHandler, Qt::DirectConnection);

    // Untimed warm-up round, as for Sigreg.
    QObject::disconnect(QObject::connect(&emitter, &QtEmitter::fired, kHandler));

    const std::uint64_t allocsBefore = allocationCount();
    for (auto _ : state) {
        auto connection = QObject::connect(&emitter, &QtEmitter::fired, kHandler);
        benchmark::DoNotOptimize(connection);
        QObject::disconnect(connection);
    }
    reportAllocations(state, "allocs_per_op", allocationCount() - allocsBefore);
}
BENCHMARK(BM_AddRemove_QtConnect)->Arg(0)->Arg(4)->Arg(16)->Arg(100);
#endif

// ---------------------------------------------------------------------------
// Filling an empty registry, argument = number of handlers
// ---------------------------------------------------------------------------

/// Runs `fill(registry, count)` on a fresh registry each iteration. Building
/// the registry happens with the timer paused, and the previous iteration's
/// registry is destroyed in that same paused section (by the reassignment),
/// so neither construction nor destruction is timed: only the adds are.
template <class Fill>
void fillBenchmark(benchmark::State &state, Fill fill)
{
    const std::int64_t count = state.range(0);
    std::unique_ptr<sigreg::Registry<int>> registry;
    std::uint64_t allocs = 0;
    for (auto _ : state) {
        state.PauseTiming();
        registry = std::make_unique<sigreg::Registry<int>>();
        state.ResumeTiming();

        const std::uint64_t before = allocationCount();
        fill(*registry, count);
        allocs += allocationCount() - before;
    }
    if (registry && registry->size() != static_cast<std::size_t>(count)) {
        state.SkipWithError("registry does not hold the expected number of handlers");
        return;
    }
    state.SetItemsProcessed(state.iterations() * count);
    reportAllocations(state, "allocs_per_add", allocs, static_cast<double>(count));
    // The last registry is destroyed here, after the timer has stopped.
}

void BM_AddOneByOne_Sigreg(benchmark::State &state)
{
    fillBenchmark(state, [](sigreg::Registry<int> &registry, std::int64_t count) {
        for (std::int64_t i = 0; i < count; ++i)
            registry.add(kHandler);
    });
}
BENCHMARK(BM_AddOneByOne_Sigreg)->Arg(10000)->Unit(benchmark::kMillisecond);

/// Priority of the i-th handler in the rows below with mixed priorities: a
/// fixed pseudo-random sequence (Knuth's multiplicative hash), in [0, 4096).
int mixedPriority(std::int64_t i)
{
    return static_cast<int>((static_cast<std::uint32_t>(i) * 2654435761u) >> 20);
}

// The same, with each handler's priority above every earlier one's: each add
// goes first. An array filled from its start would copy itself on every add;
// Sigreg's blocks keep free cells in front once that happens, and prepend.
void BM_AddOneByOne_SigregAscending(benchmark::State &state)
{
    fillBenchmark(state, [](sigreg::Registry<int> &registry, std::int64_t count) {
        for (std::int64_t i = 0; i < count; ++i)
            registry.add(static_cast<int>(i), kHandler);
    });
}
BENCHMARK(BM_AddOneByOne_SigregAscending)->Arg(10000)->Unit(benchmark::kMillisecond);

// The same, with pseudo-random priorities: most adds land inside the array.
void BM_AddOneByOne_SigregRandom(benchmark::State &state)
{
    fillBenchmark(state, [](sigreg::Registry<int> &registry, std::int64_t count) {
        for (std::int64_t i = 0; i < count; ++i)
            registry.add(mixedPriority(i), kHandler);
    });
}
BENCHMARK(BM_AddOneByOne_SigregRandom)->Arg(10000)->Unit(benchmark::kMillisecond);

void BM_AddBatch_Sigreg(benchmark::State &state)
{
    fillBenchmark(state, [](sigreg::Registry<int> &registry, std::int64_t count) {
        auto batch = registry.batch();
        for (std::int64_t i = 0; i < count; ++i)
            batch.add(kHandler);
        batch.commit();
    });
}
BENCHMARK(BM_AddBatch_Sigreg)->Arg(10000)->Unit(benchmark::kMillisecond);

void BM_AddBatch_SigregRandom(benchmark::State &state)
{
    fillBenchmark(state, [](sigreg::Registry<int> &registry, std::int64_t count) {
        auto batch = registry.batch();
        for (std::int64_t i = 0; i < count; ++i)
            batch.add(mixedPriority(i), kHandler);
        batch.commit();
    });
}
BENCHMARK(BM_AddBatch_SigregRandom)->Arg(10000)->Unit(benchmark::kMillisecond);

} // namespace
} // namespace sigreg_bench
