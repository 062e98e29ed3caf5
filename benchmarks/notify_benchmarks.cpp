// SPDX-License-Identifier: MIT
// sigreg-benchmarks — notification cost, Sigreg and its peers side by side.
//
// Every peer is wrapped in a small adaptor with the same two operations:
// construct with N handlers (all the same lambda, kHandler) and notify(e).
// One function template, notifyBenchmark<Peer> (notify_driver.h, shared with
// qt_benchmarks.cpp), drives them all, so the timed loop, the warm-up, the
// checks and the counters are identical and the only thing that differs
// between BM_Notify_* rows is the dispatch mechanism. Three kinds of rows
// differ on purpose: the Mixed rows register kHandler's body in four closure
// types in turn, BM_Notify_QtDirectSlot runs it as a member slot of one
// receiver object per handler (Qt's usual form), and BM_Notify_HandlersOnly
// and BM_Notify_DirectCalls are no peers but references (the body called N
// times inline, and as N direct out-of-line calls: no dispatch in either).
//
// Argument: number of handlers (1, 4, 16, 64; 64 so that the chart of
// docs/PERFORMANCE.md shows the per-handler slope; the Mixed rows start at
// 4). Thread counts 1 and 2; with 2 threads both notify the same object at
// once, and the reported CPU time is per notify per thread.
#include "bench_common.h"
#include "notify_driver.h"

#include <sigreg/registry.h>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#ifdef SIGREG_BENCH_HAVE_QT
#include "qt_emitter.h"
#endif
#ifdef SIGREG_BENCH_HAVE_BOOST
#include <boost/signals2/signal.hpp>
#endif
#ifdef SIGREG_BENCH_HAVE_SIGC
#include <sigc++/signal.h>
#endif

namespace sigreg_bench {
namespace {

// ---------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------

/// kHandler's body in four closure types of its own. The other rows register
/// one lambda N times, which a dispatcher could exploit (say, by calling a
/// run of neighbouring handlers of one type with one indirect call). The
/// "Mixed" rows register these in turn (type 0, 1, 2, 3, 0, ...), so that no
/// two neighbouring handlers share a type, and show whether Sigreg's ratio to
/// the std::function loop still holds then.
template <int I>
inline constexpr auto kHandlerOfType = [](const int &value) { handlerWork(value); };

/// Which handlers a peer registers: kHandler every time, or the four types of
/// kHandlerOfType in turn.
enum class Handlers { Same, Mixed };

/// Calls `add(handler)` `count` times, with the handlers `kind` names.
template <Handlers kind, class Add>
void addHandlers(int count, Add &&add)
{
    for (int i = 0; i < count; ++i) {
        if constexpr (kind == Handlers::Same) {
            add(kHandler);
        } else {
            switch (i % 4) {
            case 0: add(kHandlerOfType<0>); break;
            case 1: add(kHandlerOfType<1>); break;
            case 2: add(kHandlerOfType<2>); break;
            default: add(kHandlerOfType<3>); break;
            }
        }
    }
}

template <Handlers kind = Handlers::Same>
struct SigregPeer {
    sigreg::Registry<int> registry;

    explicit SigregPeer(int handlers)
    {
        addHandlers<kind>(handlers, [this](auto h) { registry.add(h); });
    }
    void notify(const int &event) noexcept { registry.notify(event); }
};

/// The baseline: what a hand-written, unsynchronised observer list costs.
/// Calling a const std::function from two threads at once is safe (the
/// handlers are stateless), so the 2-thread variant is legitimate as long as
/// nobody modifies the vector, which nobody does during the loop.
template <Handlers kind = Handlers::Same>
struct FunctionLoopPeer {
    std::vector<std::function<void(const int &)>> handlers;

    explicit FunctionLoopPeer(int count)
    {
        handlers.reserve(static_cast<std::size_t>(count));
        addHandlers<kind>(count, [this](auto h) { handlers.emplace_back(h); });
    }
    void notify(const int &event)
    {
        for (auto &f : handlers)
            f(event);
    }
};

/// kHandler's body as a function of its own that is never inlined.
SIGREG_NOINLINE void handlerWorkOutOfLine(const int &value) noexcept
{
    handlerWork(value);
}

/// How a BodyOnlyPeer calls the handler's body.
enum class Body { Inline, OutOfLine };

/// Not a peer: a reference. The handler's own work, called `count` times
/// with no dispatch at all: nothing is looked up, nothing is type-erased,
/// nothing is announced.
/// * Body::Inline (BM_Notify_HandlersOnly): the calls inline, so that a row
///   shows how much of every peer's time is the handlers themselves. Each
///   call still makes its own load and store of the counter: GCC and Clang
///   do not merge relaxed atomic accesses (the standard would allow it).
/// * Body::OutOfLine (BM_Notify_DirectCalls): each a direct call to a
///   function the compiler knows but does not inline: what a loop of calls
///   costs before any dispatch. A reference for dispatchers that call their
///   handlers out of line one by one, not a strict bound: on the project's
///   host the std::function loop, which loads its targets, ran at or a
///   little below this row's time (docs/PERFORMANCE.md, "What 0.15× of Qt
///   with four handlers would take").
template <Body body>
struct BodyOnlyPeer {
    int count;

    explicit BodyOnlyPeer(int c) : count(c) {}
    void notify(const int &event) noexcept
    {
        for (int i = 0; i < count; ++i) {
            if constexpr (body == Body::Inline)
                kHandler(event);
            else
                handlerWorkOutOfLine(event);
        }
    }
};

#ifdef SIGREG_BENCH_HAVE_QT
/// Direct connections only: the handlers run on the emitting thread, which is
/// what the other peers do. No QCoreApplication is needed for that.
/// Note: Qt treats an emission from a thread other than the sender's own
/// (thread 1 here) differently: it locks a mutex per connection to read the
/// receiver's thread affinity. That is part of what the 2-thread row measures.
struct QtPeer {
    QtEmitter emitter;

    explicit QtPeer(int handlers)
    {
        for (int i = 0; i < handlers; ++i)
            QObject::connect(&emitter, &QtEmitter::fired, &emitter, kHandler, Qt::DirectConnection);
    }
    void notify(const int &event) { Q_EMIT emitter.fired(event); }
};

/// Qt the way applications usually connect: each handler a member slot of a
/// receiver object of its own (`connect(sender, &S::fired, receiver,
/// &R::onFired)`). Emitting costs more per connection than the lambda form
/// above (QtPeer: one object is sender and context of every connection), so
/// the ratios against Qt are reported against both; QtPeer, the cheaper, is
/// the one the target is judged on.
struct QtSlotPeer {
    QtEmitter emitter;
    std::vector<std::unique_ptr<QtReceiver>> receivers;

    explicit QtSlotPeer(int handlers)
    {
        receivers.reserve(static_cast<std::size_t>(handlers));
        for (int i = 0; i < handlers; ++i) {
            receivers.push_back(std::make_unique<QtReceiver>());
            QObject::connect(&emitter, &QtEmitter::fired, receivers.back().get(), &QtReceiver::onFired,
                             Qt::DirectConnection);
        }
    }
    void notify(const int &event) { Q_EMIT emitter.fired(event); }
};
#endif

#ifdef SIGREG_BENCH_HAVE_BOOST
/// boost::signals2 with its default (thread-safe, mutex-based) policy.
struct BoostSignals2Peer {
    boost::signals2::signal<void(const int &)> signal;

    explicit BoostSignals2Peer(int handlers)
    {
        for (int i = 0; i < handlers; ++i)
            signal.connect(kHandler);
    }
    void notify(const int &event) { signal(event); }
};
#endif

#ifdef SIGREG_BENCH_HAVE_SIGC
/// libsigc++ is not thread-safe: single-threaded rows only.
struct SigcPeer {
    sigc::signal<void(const int &)> signal;

    explicit SigcPeer(int handlers)
    {
        for (int i = 0; i < handlers; ++i)
            signal.connect(kHandler);
    }
    void notify(const int &event) { signal.emit(event); }
};
#endif

void BM_Notify_Sigreg(benchmark::State &state)
{
    notifyBenchmark<SigregPeer<>>(state);
}
void BM_Notify_FunctionLoop(benchmark::State &state)
{
    notifyBenchmark<FunctionLoopPeer<>>(state);
}
void BM_Notify_SigregMixed(benchmark::State &state)
{
    notifyBenchmark<SigregPeer<Handlers::Mixed>>(state);
}
void BM_Notify_FunctionLoopMixed(benchmark::State &state)
{
    notifyBenchmark<FunctionLoopPeer<Handlers::Mixed>>(state);
}
void BM_Notify_HandlersOnly(benchmark::State &state)
{
    notifyBenchmark<BodyOnlyPeer<Body::Inline>>(state);
}
void BM_Notify_DirectCalls(benchmark::State &state)
{
    notifyBenchmark<BodyOnlyPeer<Body::OutOfLine>>(state);
}
#ifdef SIGREG_BENCH_HAVE_QT
void BM_Notify_QtDirect(benchmark::State &state)
{
    notifyBenchmark<QtPeer>(state);
}
void BM_Notify_QtDirectSlot(benchmark::State &state)
{
    notifyBenchmark<QtSlotPeer>(state);
}
#endif
#ifdef SIGREG_BENCH_HAVE_BOOST
void BM_Notify_BoostSignals2(benchmark::State &state)
{
    notifyBenchmark<BoostSignals2Peer>(state);
}
#endif
#ifdef SIGREG_BENCH_HAVE_SIGC
void BM_Notify_Sigc(benchmark::State &state)
{
    notifyBenchmark<SigcPeer>(state);
}
#endif

// Default CPU-time measurement for every peer, so that the rows compare
// directly; with 2 threads that is CPU time per notify per thread.
BENCHMARK(BM_Notify_Sigreg)->Arg(1)->Arg(4)->Arg(16)->Arg(64)->Threads(1)->Threads(2);
BENCHMARK(BM_Notify_FunctionLoop)->Arg(1)->Arg(4)->Arg(16)->Arg(64)->Threads(1)->Threads(2);
BENCHMARK(BM_Notify_SigregMixed)->Arg(4)->Arg(16)->Arg(64)->Threads(1)->Threads(2);
BENCHMARK(BM_Notify_FunctionLoopMixed)->Arg(4)->Arg(16)->Arg(64)->Threads(1)->Threads(2);
BENCHMARK(BM_Notify_HandlersOnly)->Arg(1)->Arg(4)->Arg(16)->Arg(64)->Threads(1)->Threads(2);
BENCHMARK(BM_Notify_DirectCalls)->Arg(1)->Arg(4)->Arg(16)->Arg(64)->Threads(1)->Threads(2);
#ifdef SIGREG_BENCH_HAVE_QT
BENCHMARK(BM_Notify_QtDirect)->Arg(1)->Arg(4)->Arg(16)->Arg(64)->Threads(1)->Threads(2);
BENCHMARK(BM_Notify_QtDirectSlot)->Arg(1)->Arg(4)->Arg(16)->Arg(64)->Threads(1)->Threads(2);
#endif
#ifdef SIGREG_BENCH_HAVE_BOOST
BENCHMARK(BM_Notify_BoostSignals2)->Arg(1)->Arg(4)->Arg(16)->Arg(64)->Threads(1)->Threads(2);
#endif
#ifdef SIGREG_BENCH_HAVE_SIGC
BENCHMARK(BM_Notify_Sigc)->Arg(1)->Arg(4)->Arg(16)->Arg(64)->Threads(1);
#endif

} // namespace

// Contention runs (4, 8, 16 threads notifying one object) are registered only
// on request, from main(): on a 2-core machine they measure oversubscription,
// not contention. Names: BM_NotifyContended_<peer>/<handlers>/threads:<n>.
void registerContentionBenchmarks(int maxThreads)
{
    auto add = [maxThreads](const char *name, void (*fn)(benchmark::State &)) {
        auto *b = benchmark::RegisterBenchmark(name, fn)->Arg(1)->Arg(4)->Arg(16);
        for (int threads = 4; threads <= maxThreads; threads *= 2)
            b->Threads(threads);
    };
    add("BM_NotifyContended_Sigreg", BM_Notify_Sigreg);
    add("BM_NotifyContended_FunctionLoop", BM_Notify_FunctionLoop);
#ifdef SIGREG_BENCH_HAVE_QT
    add("BM_NotifyContended_QtDirect", BM_Notify_QtDirect);
#endif
#ifdef SIGREG_BENCH_HAVE_BOOST
    add("BM_NotifyContended_BoostSignals2", BM_Notify_BoostSignals2);
#endif
}

} // namespace sigreg_bench
