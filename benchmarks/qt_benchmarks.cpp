// SPDX-License-Identifier: MIT
// sigreg-benchmarks — the Qt facade, sigreg::QtRegistry<E>, against the core
// and against what Qt (or hand-written Qt code) does for the same job.
//
// * BM_Notify_SigregQt: inline notify through QtRegistry<int>, handlers
//   without a context. Same driver, peer shape and arguments as the
//   BM_Notify_* rows (notify_driver.h), to be read against BM_Notify_Sigreg
//   (the cost of the facade) and BM_Notify_QtDirect.
// * BM_CrossThread_{Sigreg,QtQueued}: events delivered end to end to a worker
//   QThread running its event loop. Argument: burst size N. Each iteration
//   posts N events and waits until the worker handled all of them. Wall-clock
//   time (two threads work); items = events, so items_per_second is the
//   end-to-end event rate, and time / N the cost per event.
// * BM_NotifyAsync_{Sigreg,HandWritten}, BM_NotifySequential_Sigreg: handlers
//   returning an already finished QFuture<void>; per iteration one notify
//   and a wait on its future. Argument: number of handlers. Everything runs
//   inline on the benchmark's thread, so this is the bookkeeping of the join
//   (or of the sequence), not any waiting.
// * BM_NotifyAsyncPending_{Sigreg,HandWritten}: the same comparison with
//   real asynchronous work. Each handler creates a QPromise<void>, hands it
//   to a finisher thread (long-lived, owned by the row) and returns its
//   future, still pending; the finisher finishes it soon after. Per iteration
//   one notify and a wait on the joined future, so the time includes the
//   hand-over to the finisher and the wake-ups back (wall-clock time). The
//   hand-written reference waits for the futures one by one (see there why
//   not whenAll()).
//
// Allocation counters: allocs_per_notify for the inline rows as everywhere
// (per thread); allocs_per_event for the CrossThread rows and
// allocs_per_notify for the async rows are counted process-wide
// (processAllocationCount()), so that allocations made on the worker thread,
// or wherever a continuation runs, are included.
#include "bench_common.h"
#include "notify_driver.h"

#include <sigreg/qt/qtregistry.h>

#include <benchmark/benchmark.h>

#include <QtCore/QFuture>
#include <QtCore/QList>
#include <QtCore/QMetaObject>
#include <QtCore/QObject>
#include <QtCore/QPromise>
#include <QtCore/QCoreApplication>
#include <QtCore/QThread>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace sigreg_bench {
/// The application object, created on first use (main.cpp).
QCoreApplication *ensureApplication();
} // namespace sigreg_bench

namespace sigreg_bench {
namespace {

// ---------------------------------------------------------------------------
// Inline notify through the facade
// ---------------------------------------------------------------------------

/// Handlers without a context: they run inline on the notifying thread, as
/// in sigreg::Registry<int> (SigregPeer in notify_benchmarks.cpp).
struct SigregQtPeer {
    sigreg::QtRegistry<int> registry;

    explicit SigregQtPeer(int handlers)
    {
        for (int i = 0; i < handlers; ++i)
            registry.add(kHandler);
    }
    void notify(const int &event) noexcept { registry.notify(event); }
};

void BM_Notify_SigregQt(benchmark::State &state)
{
    notifyBenchmark<SigregQtPeer>(state);
}
BENCHMARK(BM_Notify_SigregQt)->Arg(1)->Arg(4)->Arg(16)->Threads(1)->Threads(2);

// ---------------------------------------------------------------------------
// Cross-thread delivery
// ---------------------------------------------------------------------------

/// A QThread running its event loop, and one QObject living in it that
/// receives the events. The handlers count what they handled in `processed`
/// (written by the worker thread only, read by the benchmark's thread).
class Worker {
public:
    Worker()
    {
        ensureApplication();
        m_thread.start();
        m_context = new QObject;
        m_context->moveToThread(&m_thread);
        // Deleted in its own thread as the thread ends (QThread runs deferred
        // deletes after finished()).
        QObject::connect(&m_thread, &QThread::finished, m_context, &QObject::deleteLater);
    }
    ~Worker()
    {
        m_thread.quit();
        m_thread.wait();
    }
    Worker(const Worker &) = delete;
    Worker &operator=(const Worker &) = delete;

    QObject *context() const noexcept { return m_context; }

    /// The work of every cross-thread handler: the usual handler work on the
    /// event, and one more event counted. Single writer: a load and a
    /// release store, no read-modify-write.
    void handle(const int &value) noexcept
    {
        handlerWork(value);
        processed.store(processed.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }

    /// Waits (spinning, yielding the core) until `count` events were handled
    /// in all. On two cores the worker has the other one.
    void waitProcessed(std::int64_t count) const noexcept
    {
        while (processed.load(std::memory_order_acquire) < count)
            std::this_thread::yield();
    }

    std::atomic<std::int64_t> processed{0};

private:
    QThread m_thread;
    QObject *m_context = nullptr;
};

/// The driver of both CrossThread rows: `post(event)` hands one event to the
/// worker; each iteration posts a burst of state.range(0) events and waits
/// until the worker has handled them all.
template <class Post>
void crossThreadBenchmark(benchmark::State &state, Worker &worker, Post post)
{
    const std::int64_t burst = state.range(0);
    int event = 1;
    std::int64_t posted = 0;

    // Warm-up, one full burst: the worker's first wake-up, Qt's posted-event
    // list and Sigreg's block pool grow to their steady size here.
    for (std::int64_t i = 0; i < burst; ++i)
        post(event);
    posted += burst;
    worker.waitProcessed(posted);

    const std::uint64_t allocsBefore = processAllocationCount();
    for (auto _ : state) {
        for (std::int64_t i = 0; i < burst; ++i) {
            benchmark::DoNotOptimize(event);
            post(event);
        }
        posted += burst;
        worker.waitProcessed(posted);
    }
    // Both threads' allocations: the worker's happened before its last
    // release store of `processed`, which waitProcessed() read with acquire.
    // (A wake-up the worker handles after the last event is not seen.)
    const std::uint64_t allocs = processAllocationCount() - allocsBefore;

    // Proof that the work happened: every event handled exactly once.
    if (worker.processed.load(std::memory_order_acquire) != posted) {
        state.SkipWithError("events handled do not match events posted");
        return;
    }
    state.SetItemsProcessed(state.iterations() * burst);
    reportAllocations(state, "allocs_per_event", allocs, static_cast<double>(burst));
}

/// Sigreg: one handler with the worker's object as context, queued.
void BM_CrossThread_Sigreg(benchmark::State &state)
{
    Worker worker;
    // Destroyed before the worker: removes the handler first.
    sigreg::QtRegistry<int> registry;
    registry.add(
        worker.context(), [&worker](const int &value) { worker.handle(value); }, Qt::QueuedConnection);
    crossThreadBenchmark(state, worker, [&registry](const int &event) { registry.notify(event); });
}

/// Qt: a queued call of a functor (capturing the event) on the worker's
/// object, what Qt code writes to run something in another object's thread.
void BM_CrossThread_QtQueued(benchmark::State &state)
{
    Worker worker;
    QObject *context = worker.context();
    crossThreadBenchmark(state, worker, [&worker, context](const int &event) {
        QMetaObject::invokeMethod(
            context, [&worker, event] { worker.handle(event); }, Qt::QueuedConnection);
    });
}

// Wall-clock time: the work is split between this thread and the worker, and
// this thread's CPU time would count neither the worker's share nor the
// wake-up latency.
BENCHMARK(BM_CrossThread_Sigreg)->Arg(1)->Arg(64)->Arg(1024)->UseRealTime();
BENCHMARK(BM_CrossThread_QtQueued)->Arg(1)->Arg(64)->Arg(1024)->UseRealTime();

// ---------------------------------------------------------------------------
// Async handlers (returning QFuture<void>)
// ---------------------------------------------------------------------------

/// The async handler of every async row: the usual work, then a finished
/// future.
inline constexpr auto kAsyncHandler = [](const int &value) {
    handlerWork(value);
    return QtFuture::makeReadyFuture();
};

/// The driver of the async rows: one notify per iteration, `notify(event)`
/// returning the future to wait for (of whatever type), with `handlers`
/// handlers, each kAsyncHandler.
template <class Notify>
void asyncBenchmark(benchmark::State &state, int handlers, Notify notify)
{
    int event = 1;
    const std::int64_t sumBefore = handlerSum();
    notify(event).waitForFinished(); // warm-up, as in notifyBenchmark

    const std::uint64_t allocsBefore = processAllocationCount();
    for (auto _ : state) {
        benchmark::DoNotOptimize(event);
        auto f = notify(event);
        f.waitForFinished();
    }
    const std::uint64_t allocs = processAllocationCount() - allocsBefore;

    // The handlers ran on this thread, once per notify, warm-up included:
    // notifyAsync() starts every handler inline, and notifySequential() only
    // defers a handler when the previous one's future is still pending, which
    // in the rows that use it never happens (finished futures).
    const std::int64_t sum = handlerSum() - sumBefore;
    benchmark::DoNotOptimize(sum);
    const std::int64_t expected =
        (static_cast<std::int64_t>(state.iterations()) + 1) * handlers * static_cast<std::int64_t>(event);
    if (sum != expected) {
        state.SkipWithError("handler calls do not match notifications x handlers");
        return;
    }
    reportAllocations(state, "allocs_per_notify", allocs);
}

/// A QtRegistry<int> with `handlers` async handlers.
struct AsyncRegistry {
    sigreg::QtRegistry<int> registry;

    explicit AsyncRegistry(int handlers)
    {
        for (int i = 0; i < handlers; ++i)
            registry.add(kAsyncHandler);
    }
};

void BM_NotifyAsync_Sigreg(benchmark::State &state)
{
    ensureApplication(); // futures awaited on Sigreg's completion thread (an event loop)
    const int handlers = static_cast<int>(state.range(0));
    AsyncRegistry peer(handlers);
    asyncBenchmark(state, handlers, [&peer](const int &event) { return peer.registry.notifyAsync(event); });
}

/// The hand-written equivalent of notifyAsync(): a list of handlers (as in
/// BM_Notify_FunctionLoop), each called directly, their futures collected
/// and joined with QtFuture::whenAll().
void BM_NotifyAsync_HandWritten(benchmark::State &state)
{
    ensureApplication(); // futures awaited on Sigreg's completion thread (an event loop)
    const int count = static_cast<int>(state.range(0));
    const std::vector<std::function<QFuture<void>(const int &)>> handlers(static_cast<std::size_t>(count),
                                                                           kAsyncHandler);
    asyncBenchmark(state, count, [&handlers](const int &event) {
        QList<QFuture<void>> futures;
        futures.reserve(static_cast<qsizetype>(handlers.size()));
        for (const auto &handler : handlers)
            futures.append(handler(event));
        return QtFuture::whenAll(futures.begin(), futures.end());
    });
}

void BM_NotifySequential_Sigreg(benchmark::State &state)
{
    ensureApplication(); // futures awaited on Sigreg's completion thread (an event loop)
    const int handlers = static_cast<int>(state.range(0));
    AsyncRegistry peer(handlers);
    asyncBenchmark(state, handlers, [&peer](const int &event) { return peer.registry.notifySequential(event); });
}

BENCHMARK(BM_NotifyAsync_Sigreg)->Arg(1)->Arg(4)->Arg(16);
BENCHMARK(BM_NotifyAsync_HandWritten)->Arg(1)->Arg(4)->Arg(16);
BENCHMARK(BM_NotifySequential_Sigreg)->Arg(1)->Arg(4)->Arg(16);

// ---------------------------------------------------------------------------
// Async handlers whose futures are still pending when returned
// ---------------------------------------------------------------------------

/// A thread that finishes the promises handed to it, in order. It spins
/// (yielding the core) for a while after its queue ran empty, then sleeps on
/// a condition variable until the next promise arrives.
class Finisher {
public:
    Finisher() : m_thread([this] { run(); }) {}
    ~Finisher()
    {
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_stop = true;
        }
        m_wake.notify_one();
        m_thread.join();
    }
    Finisher(const Finisher &) = delete;
    Finisher &operator=(const Finisher &) = delete;

    /// A started promise, queued for the finisher; returns its future
    /// (pending, unless the finisher was quicker).
    QFuture<void> submit()
    {
        QPromise<void> promise;
        promise.start();
        QFuture<void> future = promise.future();
        bool wake = false;
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_queue.push_back(std::move(promise));
            m_queued.store(true, std::memory_order_relaxed);
            wake = m_sleeping;
        }
        if (wake)
            m_wake.notify_one();
        return future;
    }

private:
    void run()
    {
        std::vector<QPromise<void>> batch;
        for (;;) {
            // Spin a while: on two cores a sleeping finisher would make the
            // rows measure the futex wake-up rather than the join.
            for (int spins = 0; spins < 4096 && !m_queued.load(std::memory_order_relaxed); ++spins)
                std::this_thread::yield();
            {
                std::unique_lock<std::mutex> lock(m_mutex);
                if (m_queue.empty() && !m_stop) {
                    m_sleeping = true;
                    m_wake.wait(lock, [this] { return !m_queue.empty() || m_stop; });
                    m_sleeping = false;
                }
                if (m_queue.empty() && m_stop)
                    return;
                batch.swap(m_queue);
                m_queued.store(false, std::memory_order_relaxed);
            }
            for (auto &promise : batch)
                promise.finish();
            batch.clear();
        }
    }

    std::mutex m_mutex;
    std::condition_variable m_wake;
    std::vector<QPromise<void>> m_queue;
    std::atomic<bool> m_queued{false};
    bool m_sleeping = false;
    bool m_stop = false;
    std::thread m_thread; // last: starts after the members above exist
};

/// The async handler of the pending rows: the usual work, then a future that
/// the finisher will finish.
auto pendingHandler(Finisher &finisher)
{
    return [&finisher](const int &value) {
        handlerWork(value);
        return finisher.submit();
    };
}

void BM_NotifyAsyncPending_Sigreg(benchmark::State &state)
{
    ensureApplication(); // futures awaited on Sigreg's completion thread (an event loop)
    const int handlers = static_cast<int>(state.range(0));
    Finisher finisher;
    // Destroyed before the finisher.
    sigreg::QtRegistry<int> registry;
    for (int i = 0; i < handlers; ++i)
        registry.add(pendingHandler(finisher));
    asyncBenchmark(state, handlers, [&registry](const int &event) { return registry.notifyAsync(event); });
}

/// All the futures of one hand-written notify; waitForFinished() waits for
/// each in turn.
struct FutureList {
    QList<QFuture<void>> futures;
    void waitForFinished()
    {
        for (auto &future : futures)
            future.waitForFinished();
    }
};

/// The hand-written reference: the handlers called directly, then their
/// futures waited for one by one. Not QtFuture::whenAll() as in
/// BM_NotifyAsync_HandWritten: on Qt 6.4 its continuations, attached while
/// the finisher finishes the futures, crash (SIGSEGV in
/// QFutureInterfaceBase::reportStarted() under runContinuation(), within a
/// few thousand notifies) -- the race for which Sigreg waits with a
/// QFutureWatcher instead. Waiting in turn builds no joined future at all, so
/// this row is a lower bound for a hand-written join.
void BM_NotifyAsyncPending_HandWritten(benchmark::State &state)
{
    ensureApplication(); // futures awaited on Sigreg's completion thread (an event loop)
    const int count = static_cast<int>(state.range(0));
    Finisher finisher;
    const std::vector<std::function<QFuture<void>(const int &)>> handlers(static_cast<std::size_t>(count),
                                                                           pendingHandler(finisher));
    asyncBenchmark(state, count, [&handlers](const int &event) {
        FutureList list;
        list.futures.reserve(static_cast<qsizetype>(handlers.size()));
        for (const auto &handler : handlers)
            list.futures.append(handler(event));
        return list;
    });
}

// Wall-clock time: the finisher (and, for Sigreg, the completion thread) do
// part of the work on other threads.
BENCHMARK(BM_NotifyAsyncPending_Sigreg)->Arg(1)->Arg(4)->UseRealTime();
BENCHMARK(BM_NotifyAsyncPending_HandWritten)->Arg(1)->Arg(4)->UseRealTime();

} // namespace
} // namespace sigreg_bench
