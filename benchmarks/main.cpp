// SPDX-License-Identifier: MIT
// sigreg-benchmarks — entry point.
//
// Our own main instead of BENCHMARK_MAIN() only to record, in the report's
// context block (console header, JSON "context"), which peers were compiled
// in and whether allocations are counted, so that a saved result explains
// its own missing rows or counters. No QCoreApplication: the Qt peer uses
// direct connections only, which need no event loop.
#include "alloc_counter.h"

#include <benchmark/benchmark.h>

#include <string>

int main(int argc, char **argv)
{
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;

    std::string peers = "sigreg function-loop";
#ifdef SIGREG_BENCH_HAVE_QT
    peers += " qt";
#endif
#ifdef SIGREG_BENCH_HAVE_BOOST
    peers += " boost-signals2";
#endif
#ifdef SIGREG_BENCH_HAVE_SIGC
    peers += " sigc++";
#endif
    benchmark::AddCustomContext("sigreg_bench_peers", peers);
    benchmark::AddCustomContext("sigreg_bench_alloc_counting",
                                sigreg_bench::allocationCountingEnabled() ? "per-thread, malloc layer"
                                                                          : "disabled (sanitizer or non-glibc)");

    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
