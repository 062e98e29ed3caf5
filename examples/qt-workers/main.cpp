// SPDX-License-Identifier: MIT
// Sigreg Qt example: two producer threads notify one sigreg::QtRegistry whose
// handlers run in worker threads.
//
// What it shows
// * add(context, f, type) runs a handler in the thread of its context object.
//   Qt::QueuedConnection always queues the call to that thread;
//   Qt::AutoConnection queues it only when notify() runs in another thread
//   (as here, always) and calls it inline otherwise.
// * Each handler sees one producer's events in the order they were notified,
//   however the two producers interleave.
// * A handler returning QFuture<void> is asynchronous: notify() starts it
//   inline, in the notifying thread, and notifyAsync() returns a future that
//   finishes once such handlers' futures have. Here another thread (the
//   finisher) finishes each of those futures.
// * A clean end: a worker is done when it has seen both producers' end
//   markers; then the application quits and every thread is joined.
#include <sigreg/qt/qtregistry.h>

#include <QCoreApplication>
#include <QFuture>
#include <QPromise>
#include <QThread>
#include <QTimer>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>

namespace {

constexpr int kProducers = 2;
constexpr int kEventsPerProducer = 5000;
constexpr int kEnd = -1; // the seq of a producer's end marker

struct Tick {
    int producer; // 0 .. kProducers - 1
    int seq;      // 0, 1, 2, ... per producer, then kEnd
};

// What one handler saw of one producer's ticks.
struct Stream {
    int events = 0;
    int next = 0; // the seq expected next
    bool inOrder = true;
    bool ended = false;

    void receive(const Tick &t)
    {
        if (t.seq == kEnd) {
            ended = true;
            return;
        }
        inOrder = inOrder && t.seq == next;
        next = t.seq + 1;
        ++events;
    }
    bool complete() const { return ended && inOrder && events == kEventsPerProducer; }
};

// The threads a handler ran in: one, `ranIn`, while `oneThread` holds.
struct Seen {
    QThread *ranIn = nullptr;
    bool oneThread = true;

    void note()
    {
        QThread *here = QThread::currentThread();
        oneThread = oneThread && (!ranIn || ranIn == here);
        ranIn = here;
    }
    bool onlyIn(const QThread *t) const { return oneThread && ranIn == t; }
};

// A worker: a thread and a context object living in it. Its state is only
// touched in that thread, and read by main() once the thread has ended.
struct Worker {
    explicit Worker(const char *name_) : name(name_)
    {
        thread.setObjectName(QString::fromLatin1(name));
        context.moveToThread(&thread); // handlers bound to `context` run in `thread`
        thread.start();
    }

    const char *name;
    QThread thread;
    QObject context;
    Seen seen;
    std::array<Stream, kProducers> streams;
};

} // namespace

int main(int argc, char *argv[])
{
    QCoreApplication app(argc, argv);
    QThread::currentThread()->setObjectName(QStringLiteral("main"));

    Worker w1("worker-1"), w2("worker-2"), w3("worker-3");
    const std::array<Worker *, 3> workers{&w1, &w2, &w3};
    std::atomic<int> endsSeen{0}; // end markers seen by the workers

    sigreg::QtRegistry<Tick> registry;
    QObject::connect(&registry, &sigreg::QtRegistryBase::handlerFailed, [](quint64 id, const QString &why) {
        std::fprintf(stderr, "handler %llu failed: %s\n", static_cast<unsigned long long>(id), qPrintable(why));
    });

    // Handlers with a context object run in their worker's thread. The event
    // is copied once per notify() for all of them.
    auto handlerFor = [&](Worker &w) {
        return [&w, &workers, &endsSeen, &app](const Tick &t) {
            w.seen.note();
            w.streams[std::size_t(t.producer)].receive(t);
            // A worker's mailbox is FIFO: after a producer's end marker, that
            // producer has nothing left for this worker.
            if (t.seq == kEnd && ++endsSeen == int(workers.size()) * kProducers)
                QMetaObject::invokeMethod(&app, [] { QCoreApplication::quit(); }, Qt::QueuedConnection);
        };
    };
    registry.add(&w1.context, handlerFor(w1), Qt::QueuedConnection);
    registry.add(&w2.context, handlerFor(w2), Qt::QueuedConnection);
    registry.add(&w3.context, handlerFor(w3), Qt::AutoConnection);

    // An async handler takes no context: it starts inline, in each producer's
    // own thread, so each producer's slot is only touched by that producer.
    // It returns the future of a promise that the finisher thread finishes
    // later: Sigreg awaits that future and reports its outcome.
    Worker finisher("finisher");
    std::atomic<int> finishedThere{0}; // futures finished in the finisher's thread
    std::atomic<int> finishedElsewhere{0};
    std::array<Stream, kProducers> audit;
    std::array<Seen, kProducers> auditSeen;
    registry.add([&](const Tick &t) -> QFuture<void> {
        const auto p = std::size_t(t.producer);
        auditSeen[p].note();
        audit[p].receive(t);
        auto promise = std::make_shared<QPromise<void>>();
        QFuture<void> future = promise->future();
        promise->start();
        QMetaObject::invokeMethod(
            &finisher.context,
            [promise, &finisher, &finishedThere, &finishedElsewhere] {
                ++(QThread::currentThread() == &finisher.thread ? finishedThere : finishedElsewhere);
                promise->finish();
            },
            Qt::QueuedConnection);
        return future;
    });

    // Two producers notify from their own threads, concurrently.
    std::array<std::unique_ptr<QThread>, kProducers> producers;
    for (int p = 0; p < kProducers; ++p) {
        producers[std::size_t(p)].reset(QThread::create([&registry, p] {
            for (int i = 0; i < kEventsPerProducer; ++i)
                registry.notify(Tick{p, i});
            // notifyAsync(): this future finishes once the async handler's has.
            registry.notifyAsync(Tick{p, kEnd}).waitForFinished();
            std::printf("producer-%d: sent %d events and its end marker\n", p, kEventsPerProducer);
        }));
        producers[std::size_t(p)]->setObjectName(QStringLiteral("producer-%1").arg(p));
        producers[std::size_t(p)]->start();
    }

    // A safety net: a bug must not hang whoever runs this (CI, for one).
    QTimer::singleShot(4000, &app, [] {
        std::fprintf(stderr, "qt-workers: timed out\n");
        std::fflush(nullptr);
        std::_Exit(1);
    });
    const int rc = app.exec();

    // Join every thread: the producers, then the workers' event loops.
    for (auto &p : producers)
        p->wait();
    for (Worker *w : workers) {
        w->thread.quit();
        w->thread.wait();
    }
    finisher.thread.quit(); // the producers are joined: nothing more to finish
    finisher.thread.wait();

    // Summary: where each handler ran, and what it saw of each producer.
    bool ok = rc == 0 && registry.failureCount() == 0;
    std::printf("\n%-9s %-11s %-21s %7s  %s\n", "handler", "connection", "ran in", "events", "order per producer");
    for (const Worker *w : workers) {
        bool good = w->seen.onlyIn(&w->thread);
        int events = 0;
        for (const Stream &s : w->streams) {
            good = good && s.complete();
            events += s.events;
        }
        ok = ok && good;
        std::printf("%-9s %-11s %-21s %7d  %s\n", w->name, w == &w3 ? "Auto" : "Queued",
                    w->seen.ranIn ? qPrintable(w->seen.ranIn->objectName()) : "-", events,
                    good ? "kept" : "FAILED");
    }
    bool auditGood = true;
    int auditEvents = 0;
    for (std::size_t p = 0; p < kProducers; ++p) {
        auditGood = auditGood && auditSeen[p].onlyIn(producers[p].get()) && audit[p].complete();
        auditEvents += audit[p].events;
    }
    ok = ok && auditGood;
    std::printf("%-9s %-11s %-21s %7d  %s\n", "audit", "async", "each producer's own", auditEvents,
                auditGood ? "kept" : "FAILED");
    constexpr int kAsyncCalls = kProducers * (kEventsPerProducer + 1); // events and end markers
    const bool finishGood = finishedThere == kAsyncCalls && finishedElsewhere == 0;
    ok = ok && finishGood;
    std::printf("%-9s %-11s %-21s %7d  %s\n", "futures", "-", "finisher", finishedThere.load(),
                finishGood ? "all finished there" : "FAILED");
    std::printf("failures reported: %llu\n%s\n", static_cast<unsigned long long>(registry.failureCount()),
                ok ? "all checks passed" : "CHECKS FAILED");
    return ok ? 0 : 1;
}
