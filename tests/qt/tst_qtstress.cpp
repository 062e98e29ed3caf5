// SPDX-License-Identifier: MIT
// Multi-threaded stress test of sigreg::QtRegistry<E> (run under ASan and
// TSan in CI): notifiers on several threads, handlers marshalled to worker
// threads, and threads adding, removing and destroying contexts meanwhile.
//
// Invariants checked:
// * stable marshalled handlers see every notify exactly once, in per-producer order;
// * no handler runs after its removal (remove(), or its context's
//   destruction) returned.
// Bounded by a deadline on the work loop, not by timing assertions.
#include "qt_test_support.h"

#include <sigreg/qt/qtregistry.h>

#include <QtCore/QThread>
#include <QtTest/QTest>

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <random>
#include <thread>
#include <vector>

using sigreg::HandlerId;
using sigreg::QtRegistry;
using sigreg_test::Worker;

namespace {

struct Ev {
    int producer;
    int seq;
};

constexpr int kProducers = 4;

/// A handler that must not run once `removed` is set.
struct Victim {
    std::atomic<bool> removed{false};
};

} // namespace

class tst_QtStress : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void notifyWhileChurning();
};

void tst_QtStress::notifyWhileChurning()
{
    Worker w1("w1");
    Worker w2("w2");
    QtRegistry<Ev> reg;

    // Stable handlers: exactly once, in order, per producer.
    struct Tally {
        std::array<int, kProducers> last{};
        std::atomic<int> received{0};
        std::atomic<int> disorder{0};
        Tally() { last.fill(-1); }
    };
    Tally t1, t2;
    auto stable = [](Tally &t) {
        return [&t](const Ev &e) {
            int &last = t.last[std::size_t(e.producer)];
            if (e.seq != last + 1)
                ++t.disorder;
            last = e.seq;
            ++t.received;
        };
    };
    reg.add(w1.context, stable(t1), Qt::QueuedConnection);
    reg.add(w2.context, stable(t2), Qt::AutoConnection);

    std::atomic<int> violations{0};
    std::atomic<int> churned{0};
    std::atomic<bool> stop{false};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);

    std::vector<std::thread> threads;
    std::array<std::atomic<int>, kProducers> sent{};
    for (int p = 0; p < kProducers; ++p) {
        threads.emplace_back([&, p] {
            int seq = 0;
            while (!stop.load(std::memory_order_relaxed)) {
                reg.notify(Ev{p, seq++});
                // Let the workers keep up now and then (bounded queues in practice).
                if (seq % 256 == 0)
                    std::this_thread::yield();
            }
            sent[std::size_t(p)] = seq;
        });
    }
    // Churn by removal: handlers of every connection type come and go.
    for (int c = 0; c < 2; ++c) {
        threads.emplace_back([&, c] {
            std::mt19937 rng(unsigned(c) + 7u);
            const Qt::ConnectionType types[] = {Qt::AutoConnection, Qt::DirectConnection, Qt::QueuedConnection,
                                                Qt::BlockingQueuedConnection};
            while (!stop.load(std::memory_order_relaxed)) {
                auto victim = std::make_shared<Victim>();
                QObject *ctx = (rng() & 1) ? w1.context : w2.context;
                const HandlerId id = reg.add(ctx, [victim, &violations](const Ev &) {
                    if (victim->removed.load())
                        ++violations;
                }, types[rng() % 4]);
                std::this_thread::yield();
                if (!reg.remove(id))
                    ++violations; // nobody else removes it
                victim->removed = true;
                ++churned;
            }
        });
    }
    // Churn by context destruction, in the context's own thread.
    threads.emplace_back([&] {
        while (!stop.load(std::memory_order_relaxed)) {
            auto victim = std::make_shared<Victim>();
            QObject *ctx = nullptr;
            w1.run([&ctx] { ctx = new QObject; });
            reg.add(ctx, [victim, &violations](const Ev &) {
                if (victim->removed.load())
                    ++violations;
            }, Qt::QueuedConnection);
            std::this_thread::yield();
            // Marked in the worker right after the delete returns: a call
            // delivered there after its context died runs after the mark.
            w1.run([ctx, victim] {
                delete ctx;
                victim->removed = true;
            });
            ++churned;
        }
    });

    while (std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20)); // pacing only, no assertion
    stop = true;
    for (auto &t : threads)
        t.join();
    w1.sync();
    w2.sync();

    int total = 0;
    for (auto &s : sent)
        total += s.load();
    QVERIFY(total > 0);
    QVERIFY(churned.load() > 0);
    QTRY_COMPARE(t1.received.load(), total);
    QTRY_COMPARE(t2.received.load(), total);
    QCOMPARE(t1.disorder.load(), 0);
    QCOMPARE(t2.disorder.load(), 0);
    QCOMPARE(violations.load(), 0);
    QCOMPARE(reg.count(), 2);
    qInfo("%d notifies, %d handlers churned", total, churned.load());
}

QTEST_GUILESS_MAIN(tst_QtStress)
#include "tst_qtstress.moc"
