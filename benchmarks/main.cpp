// SPDX-License-Identifier: MIT
// sigreg-benchmarks — entry point.
//
// Our own main instead of BENCHMARK_MAIN() only to record, in the report's
// context block (console header, JSON "context"), which peers were compiled
// in and whether allocations are counted, so that a saved result explains
// its own missing rows or counters, and to create the QCoreApplication that
// the Qt rows need: worker threads running an event loop (BM_CrossThread_*)
// and posted events require one. Nothing runs the main thread's event loop:
// the benchmarks run on it (and on threads Google Benchmark starts) and only
// other threads' event loops run.
#include "alloc_counter.h"

#include <benchmark/benchmark.h>

#ifdef SIGREG_BENCH_HAVE_QT
#include <QtCore/QCoreApplication>
#endif

#include <cstdlib>
#include <cstring>
#include <string>

namespace sigreg_bench {
void registerContentionBenchmarks(int maxThreads);
}

namespace {

/// Takes `--sigreg_contention_threads=N` out of argv (Google Benchmark would
/// reject it). Returns N, or 0 when absent.
int takeContentionFlag(int &argc, char **argv)
{
    constexpr const char *kFlag = "--sigreg_contention_threads=";
    int threads = 0;
    int out = 1;
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], kFlag, std::strlen(kFlag)) == 0)
            threads = std::atoi(argv[i] + std::strlen(kFlag));
        else
            argv[out++] = argv[i];
    }
    argc = out;
    return threads;
}

} // namespace

// Usage, beyond Google Benchmark's own flags:
//   --sigreg_contention_threads=16   also run BM_NotifyContended_* with 4, 8, 16 threads
//                                    (for machines with at least that many cores)
#ifdef SIGREG_BENCH_HAVE_QT
namespace sigreg_bench {
int g_argc = 0;
char **g_argv = nullptr;

QCoreApplication *ensureApplication()
{
    // Lives until the process ends (after the last benchmark).
    static QCoreApplication *const app = QCoreApplication::instance() ? QCoreApplication::instance()
                                                                      : new QCoreApplication(g_argc, g_argv);
    return app;
}
} // namespace sigreg_bench
#endif

int main(int argc, char **argv)
{
    if (const int threads = takeContentionFlag(argc, argv); threads >= 4)
        sigreg_bench::registerContentionBenchmarks(threads);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
#ifdef SIGREG_BENCH_HAVE_QT
    // After Google Benchmark took its flags out of argv. Not created here:
    // only rows that run event loops need it (ensureApplication()), and the
    // rows before them should run on a heap Qt has not touched (the notify
    // rows are layout-sensitive: docs/PERFORMANCE.md, "Layout sensitivity").
    sigreg_bench::g_argc = argc;
    sigreg_bench::g_argv = argv;
#endif

    std::string peers = "sigreg function-loop";
#ifdef SIGREG_BENCH_HAVE_QT
    peers += " qt";
#endif
#ifdef SIGREG_BENCH_HAVE_SIGREG_QT
    peers += " sigreg-qt";
#endif
#ifdef SIGREG_BENCH_HAVE_SIGREG_QML
    peers += " sigreg-qml qml-signal";
#endif
#ifdef SIGREG_BENCH_HAVE_BOOST
    peers += " boost-signals2";
#endif
#ifdef SIGREG_BENCH_HAVE_SIGC
    peers += " sigc++";
#endif
#ifdef SIGREG_BENCH_HAVE_MOODYCAMEL
    peers += " moodycamel mutex-deque";
#else
    peers += " mutex-deque";
#endif
    benchmark::AddCustomContext("sigreg_bench_peers", peers);
    benchmark::AddCustomContext("sigreg_bench_alloc_counting",
                                sigreg_bench::allocationCountingEnabled()
                                    ? "malloc layer: per-thread; process-wide for the CrossThread and async rows"
                                    : "disabled (sanitizer or non-glibc)");

    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
