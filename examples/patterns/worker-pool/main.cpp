// SPDX-License-Identifier: MIT
// Pattern: a worker pool reacting via thread-affine handlers (docs/PATTERNS.md).
//
// A market-data feed notifies a sigreg::QtRegistry<PriceUpdate> from its own
// thread. Each worker of a pool keeps a private price table that only its
// thread touches, so it needs no lock: its handler has a context object
// living in the worker's thread, and Sigreg delivers every update there, in
// the order it was notified. When a worker stops (the pool shrinks), its
// context object is destroyed with its thread's stack and its handler goes
// with it; the others keep receiving everything.
//
// Exits 0 when every check holds, 1 otherwise.
#include <sigreg/qt/qtregistry.h>

#include "pattern_checks.h"

#include <QCoreApplication>
#include <QSemaphore>
#include <QThread>

#include <array>
#include <cstdio>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

struct PriceUpdate {
    std::string symbol;
    double price;
    int seq; // 1, 2, 3, ... as notified by the feed
};

using Feed = sigreg::QtRegistry<PriceUpdate>;

constexpr std::array<const char *, 4> kSymbols{"ACME", "GLOBEX", "INITECH", "UMBRELLA"};

// [pattern:worker-pool-worker]
class Worker : public QThread {
public:
    Worker(Feed &feed, QSemaphore &ready, int lastSeq) : m_feed(feed), m_ready(ready), m_lastSeq(lastSeq) {}

    void run() override
    {
        std::map<std::string, double> prices; // this thread's own copy: no lock
        int seen = 0, lastSeq = 0;
        bool inOrder = true, wrongThread = false;
        QObject context; // lives in this thread; declared after what its handler uses
        m_feed.add(&context, [&](const PriceUpdate &u) {
            // Runs in this worker's thread (queued from the feed's), one update at a time.
            wrongThread = wrongThread || QThread::currentThread() != this;
            inOrder = inOrder && u.seq == lastSeq + 1;
            lastSeq = u.seq;
            ++seen;
            prices[u.symbol] = u.price;
            if (u.seq == m_lastSeq)
                m_caughtUp.release();
        });
        m_ready.release();
        exec(); // until quit()
        m_result.set_value({seen, lastSeq, inOrder, wrongThread, prices});
    } // ~QObject (context): the handler is removed; updates still queued for it are dropped
    // [/pattern:worker-pool-worker]

    struct Result {
        int seen = 0, lastSeq = 0;
        bool inOrder = true, wrongThread = false;
        std::map<std::string, double> prices;
    };
    // Blocks until run() has finished. A promise rather than a plain member read
    // after wait(): ThreadSanitizer sees this handoff (it cannot see inside an
    // uninstrumented Qt's QThread::wait()).
    const Result &result() const { return m_resultReady.get(); }
    bool caughtUp(int timeoutMs) { return m_caughtUp.tryAcquire(1, timeoutMs); }

private:
    Feed &m_feed;
    QSemaphore &m_ready;
    QSemaphore m_caughtUp;
    const int m_lastSeq;
    std::promise<Result> m_result;
    std::shared_future<Result> m_resultReady = m_result.get_future().share();
};

// The feed: `count` updates from its own thread, continuing at `*seq`.
void publish(const Feed &feed, int &seq, int count, std::map<std::string, double> &latest)
{
    std::thread([&] {
        for (int i = 0; i < count; ++i) {
            ++seq;
            PriceUpdate u{kSymbols[std::size_t(seq) % kSymbols.size()], 100.0 + seq * 0.25, seq};
            latest[u.symbol] = u.price;
            feed.notify(u);
        }
    }).join();
}

using pattern::check;

} // namespace

int main(int argc, char *argv[])
{
    QCoreApplication app(argc, argv);
    constexpr int kWorkers = 3;
    constexpr int kPhase = 500; // updates before and after the pool shrinks
    constexpr int kLast = 2 * kPhase;

    Feed feed;
    QSemaphore ready;
    std::vector<std::unique_ptr<Worker>> pool;
    for (int i = 0; i < kWorkers; ++i) {
        pool.push_back(std::make_unique<Worker>(feed, ready, kLast));
        pool.back()->setObjectName(QStringLiteral("worker-%1").arg(i + 1));
        pool.back()->start();
    }
    ready.acquire(kWorkers);
    const int handlersAtStart = feed.count();

    int seq = 0;
    std::map<std::string, double> latest; // what the feed sent last, per symbol
    publish(feed, seq, kPhase, latest);

    // [pattern:worker-pool-shrink]
    Worker &retired = *pool[1];
    retired.quit();
    retired.wait(); // its context died with its thread: its handler is gone
    const int handlersAfterShrink = feed.count();
    // [/pattern:worker-pool-shrink]

    publish(feed, seq, kPhase, latest);

    bool allCaughtUp = true;
    for (auto &w : pool) {
        if (w.get() != &retired)
            allCaughtUp = w->caughtUp(10000) && allCaughtUp;
        w->quit();
        w->wait();
    }

    std::printf("handlers: %d at start, %d after worker-2 stopped, %d at the end\n", handlersAtStart,
                handlersAfterShrink, feed.count());
    std::printf("%-9s %8s %8s  %s\n", "worker", "updates", "last", "prices");
    bool rightThreads = true, survivorsComplete = allCaughtUp, retiredPrefix = true;
    for (auto &w : pool) {
        const Worker::Result &r = w->result();
        rightThreads = rightThreads && !r.wrongThread;
        if (w.get() == &retired)
            retiredPrefix = r.inOrder && r.seen == r.lastSeq && r.lastSeq <= kPhase;
        else
            survivorsComplete = survivorsComplete && r.inOrder && r.seen == kLast && r.prices == latest;
        std::printf("%-9s %8d %8d  %s\n", qPrintable(w->objectName()), r.seen, r.lastSeq,
                    r.prices == latest ? "current" : "stale");
    }
    check(handlersAtStart == kWorkers && handlersAfterShrink == kWorkers - 1 && feed.count() == 0,
          "a worker's handler lives exactly as long as its thread");
    check(rightThreads, "every handler ran only in its own worker's thread");
    check(survivorsComplete, "the other workers got every update, in order, and are current");
    check(retiredPrefix, "the stopped worker got updates in order, none after it stopped");
    check(feed.failureCount() == 0, "no handler failed");

    return pattern::finish("worker-pool");
}
