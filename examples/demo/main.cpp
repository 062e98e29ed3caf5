// SPDX-License-Identifier: MIT
// Sigreg demo: priorities, guards, exception isolation, removal that waits for
// running handlers, a live timing of notify against a Qt signal, and (with
// Sigreg::Qt) a burst of events queued to a worker thread.
#include <sigreg/registry.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifdef SIGREG_DEMO_WITH_QT
#include "qt_peer.h"
#endif
#ifdef SIGREG_DEMO_WITH_QT_REGISTRY
#include <sigreg/qt/qtregistry.h>

#include <QCoreApplication>
#include <QThread>
#endif

namespace {

struct OrderPlaced {
    int orderId;
    double amount;
};

void section(const char *title)
{
    std::printf("\n== %s ==\n", title);
}

void priorities()
{
    section("Priorities: higher first, ties in registration order");
    sigreg::Registry<OrderPlaced> orders;
    std::vector<std::string> log;
    orders.add(0, [&](const OrderPlaced &) { log.push_back("business (0)"); });
    orders.add(-100, [&](const OrderPlaced &) { log.push_back("metrics (-100)"); });
    orders.add(1000, [&](const OrderPlaced &) { log.push_back("write-ahead log (1000)"); });
    orders.add(0, [&](const OrderPlaced &) { log.push_back("replication (0, registered later)"); });
    orders.notify({1, 99.5});
    for (std::size_t i = 0; i < log.size(); ++i)
        std::printf("  %zu. %s\n", i + 1, log[i].c_str());
}

void guards()
{
    section("Guards: a handler lives as long as its guard");
    sigreg::Registry<OrderPlaced> orders;
    int seen = 0;
    {
        sigreg::Guard audit = orders.addGuarded([&](const OrderPlaced &o) {
            ++seen;
            std::printf("  audit sink saw order %d\n", o.orderId);
        });
        orders.notify({2, 10.0});
        std::printf("  handlers while the guard lives: %zu\n", orders.size());
    }
    orders.notify({3, 20.0}); // nobody listens any more
    std::printf("  handlers after the guard died: %zu (audit sink saw %d order)\n", orders.size(), seen);
}

void exceptionIsolation()
{
    section("Exception isolation: a throwing handler never stops its siblings");
    sigreg::Registry<OrderPlaced> orders;
    orders.setErrorHandler([](const sigreg::HandlerFailure &f) {
        std::printf("  error handler: handler #%llu failed: %.*s\n",
                    static_cast<unsigned long long>(f.handler.value()),
                    static_cast<int>(f.message().size()), f.message().data());
    });
    orders.add(10, [](const OrderPlaced &) { std::printf("  first handler ran\n"); });
    orders.add(5, [](const OrderPlaced &o) {
        if (o.amount > 1000)
            throw std::runtime_error("amount over the limit");
    });
    orders.add(0, [](const OrderPlaced &) { std::printf("  last handler ran anyway\n"); });
    orders.notify({4, 5000.0});
    std::printf("  failures counted: %llu\n", static_cast<unsigned long long>(orders.failureCount()));
}

void removalWaits()
{
    section("remove() waits until the handler is not running on another thread");
    sigreg::Registry<OrderPlaced> orders;
    std::atomic<bool> inside{false};
    std::atomic<bool> finished{false};
    const sigreg::HandlerId slow = orders.add([&](const OrderPlaced &) {
        inside = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(50)); // a slow handler
        finished = true;
    });
    std::thread producer([&] { orders.notify({5, 1.0}); });
    while (!inside)
        std::this_thread::yield();
    const auto start = std::chrono::steady_clock::now();
    orders.remove(slow);
    const auto waited = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
    std::printf("  remove() returned after %.1f ms; handler had finished: %s\n", waited.count(),
                finished ? "yes" : "NO");
    std::printf("  (Boost.Signals2, sigslot and eventpp may still be running it at this point)\n");
    producer.join();
}

/// Handler work shared by every mechanism timed below.
std::atomic<long long> g_sum{0};
inline void work(const int &v)
{
    g_sum.store(g_sum.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

template <class F>
double nsPerCall(int rounds, F &&f)
{
    double best = 1e30;
    for (int r = 0; r < 5; ++r) { // best of five: the machine may be busy
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < rounds; ++i)
            f(i);
        const std::chrono::duration<double, std::nano> d = std::chrono::steady_clock::now() - start;
        best = std::min(best, d.count() / rounds);
    }
    return best;
}

void liveTiming()
{
    constexpr int kHandlers = 4;
    constexpr int kRounds = 2'000'000;
    section("Live timing: one notify to 4 handlers (best of 5 x 2,000,000)");

    sigreg::Registry<int> registry;
    for (int i = 0; i < kHandlers; ++i)
        registry.add(work);
    const double sigregNs = nsPerCall(kRounds, [&](int i) { registry.notify(i); });

    std::vector<std::function<void(const int &)>> loop(kHandlers, work);
    const double loopNs = nsPerCall(kRounds, [&](int i) {
        for (auto &f : loop)
            f(i);
    });

    std::printf("  %-42s %7.1f ns\n", "sigreg::Registry<int>::notify", sigregNs);
    std::printf("  %-42s %7.1f ns  (Sigreg = %.2fx)\n", "plain std::function loop (no safety at all)", loopNs,
                sigregNs / loopNs);
#ifdef SIGREG_DEMO_WITH_QT
    Ticker ticker;
    for (int i = 0; i < kHandlers; ++i)
        QObject::connect(&ticker, &Ticker::ticked, &ticker, work, Qt::DirectConnection);
    const double qtNs = nsPerCall(kRounds, [&](int i) { Q_EMIT ticker.ticked(i); });
    std::printf("  %-42s %7.1f ns  (Sigreg = %.2fx)\n", "Qt signal, direct connections", qtNs, sigregNs / qtNs);
#else
    std::printf("  (built without Qt: no Qt signal to compare with)\n");
#endif
    std::printf("  (timings from this run on this machine; see docs/PERFORMANCE.md for the benchmark)\n");
}


#ifdef SIGREG_DEMO_WITH_QT_REGISTRY
struct PriceTick {
    int seq;
};

/// One receiver's view of a burst. `next` and the checks are only touched in
/// the receiving thread; `delivered` publishes them to the sender.
struct Sink {
    explicit Sink(const QThread *expected_) : expected(expected_) {}

    void receive(int seq)
    {
        inOrder = inOrder && seq == next;
        next = seq + 1;
        inExpectedThread = inExpectedThread && QThread::currentThread() == expected;
        delivered.fetch_add(1, std::memory_order_release);
    }
    void waitFor(int n) const
    {
        while (delivered.load(std::memory_order_acquire) < n)
            std::this_thread::yield();
    }

    const QThread *expected;
    std::atomic<int> delivered{0};
    int next = 0;
    bool inOrder = true;
    bool inExpectedThread = true;
};

/// Best of five bursts of `events`, each timed from the first send until the
/// last event was delivered; sequence numbers run on across the bursts.
template <class Send>
double nsPerEvent(int events, Sink &sink, Send &&send)
{
    double best = 1e30;
    for (int r = 0; r < 5; ++r) {
        const int base = r * events;
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < events; ++i)
            send(base + i);
        sink.waitFor(base + events);
        const std::chrono::duration<double, std::nano> d = std::chrono::steady_clock::now() - start;
        best = std::min(best, d.count() / events);
    }
    return best;
}

bool crossThread()
{
    constexpr int kEvents = 10'000;
    section("Cross-thread: 10,000 events queued to a worker thread (best of 5)");

    QThread worker;
    worker.setObjectName(QStringLiteral("worker"));
    QObject context; // Sigreg's handler runs in context's thread
    QObject peer;    // the target of QMetaObject::invokeMethod
    context.moveToThread(&worker);
    peer.moveToThread(&worker);
    worker.start();

    Sink sigregSink(&worker);
    sigreg::QtRegistry<PriceTick> ticks;
    ticks.add(&context, [&](const PriceTick &t) { sigregSink.receive(t.seq); }, Qt::QueuedConnection);
    const double sigregNs = nsPerEvent(kEvents, sigregSink, [&](int seq) { ticks.notify(PriceTick{seq}); });

    Sink qtSink(&worker);
    const double qtNs = nsPerEvent(kEvents, qtSink, [&](int seq) {
        QMetaObject::invokeMethod(&peer, [&qtSink, seq] { qtSink.receive(seq); }, Qt::QueuedConnection);
    });

    worker.quit();
    worker.wait();

    const int expected = 5 * kEvents;
    const bool sigregOk = sigregSink.delivered == expected && sigregSink.inOrder && sigregSink.inExpectedThread
        && ticks.failureCount() == 0;
    const bool qtOk = qtSink.delivered == expected && qtSink.inOrder && qtSink.inExpectedThread;
    std::printf("  %-42s %7.1f ns per event\n", "sigreg::QtRegistry::notify, queued", sigregNs);
    std::printf("  %-42s %7.1f ns per event  (Sigreg = %.2fx)\n", "QMetaObject::invokeMethod(lambda), queued", qtNs,
                sigregNs / qtNs);
    std::printf("  all %d delivered, in order, in the worker: Sigreg %s, Qt %s\n", expected,
                sigregOk ? "yes" : "NO", qtOk ? "yes" : "NO");
    std::printf("  (timed from the first send until the worker ran the last event; no sleeps)\n");
    return sigregOk && qtOk;
}
#endif

} // namespace

int main(int argc, char *argv[])
{
#ifdef SIGREG_DEMO_WITH_QT_REGISTRY
    QCoreApplication app(argc, argv); // the worker thread's event loop wants one
#else
    (void)argc;
    (void)argv;
#endif
    std::printf("Sigreg demo — a lock-free event registry\n");
    priorities();
    guards();
    exceptionIsolation();
    removalWaits();
    liveTiming();
    bool ok = g_sum.load() != 0; // the timed handlers really ran
#ifdef SIGREG_DEMO_WITH_QT_REGISTRY
    ok = crossThread() && ok;
#endif
    return ok ? 0 : 1;
}
