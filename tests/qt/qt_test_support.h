// SPDX-License-Identifier: MIT
// Helpers for the Qt facade tests: worker threads with an event loop.
#pragma once

#include <QtCore/QDeadlineTimer>
#include <QtCore/QMetaObject>
#include <QtCore/QObject>
#include <QtCore/QThread>
#include <QtTest/QTest>

#include <sigreg/qt/qtregistry.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace sigreg_test {

/// Spins (yielding; no event loop runs) until `done()` or `limit` passed,
/// and returns done(). The bound only ends the wait: callers assert on what
/// happened, never on the time.
template <class Pred>
bool spinUntil(Pred done, std::chrono::milliseconds limit = std::chrono::seconds(20))
{
    const QDeadlineTimer bound(limit);
    while (!done() && !bound.hasExpired())
        std::this_thread::yield();
    return done();
}

/// A QThread running an event loop, with a context object living in it.
class Worker {
public:
    explicit Worker(const char *name = "worker")
    {
        m_thread.setObjectName(QString::fromLatin1(name));
        m_thread.start();
        context = new QObject;
        context->moveToThread(&m_thread);
        m_barrier = new QObject;
        m_barrier->moveToThread(&m_thread);
    }
    ~Worker() { stop(); }
    Worker(const Worker &) = delete;
    Worker &operator=(const Worker &) = delete;

    QThread *thread() { return &m_thread; }

    /// Returns once every event posted to the thread before the call ran.
    void sync()
    {
        if (m_thread.isRunning())
            QMetaObject::invokeMethod(m_barrier, [] {}, Qt::BlockingQueuedConnection);
    }

    /// Runs `f` in the worker thread and waits for it; returns whether it ran.
    /// The atomic gives ThreadSanitizer the happens-before edges, both ways,
    /// that the blocking hand-over has but that it cannot see inside an
    /// uninstrumented Qt: what the caller wrote before is visible to `f`, and
    /// what `f` wrote is visible to the caller after.
    template <class F>
    bool run(F f)
    {
        std::atomic<int> handoff{0};
        handoff.store(1, std::memory_order_release);
        QMetaObject::invokeMethod(m_barrier, [&handoff, &f] {
            (void)handoff.load(std::memory_order_acquire);
            f();
            handoff.store(2, std::memory_order_release);
        }, Qt::BlockingQueuedConnection);
        return handoff.load(std::memory_order_acquire) == 2;
    }

    /// Destroys the context object in its thread (if not gone already).
    void destroyContext()
    {
        if (!context)
            return;
        QObject *c = context;
        context = nullptr;
        run([c] { delete c; });
    }

    /// Stops the thread, deleting its objects first.
    void stop()
    {
        if (!m_thread.isRunning())
            return;
        destroyContext();
        QObject *b = m_barrier;
        QMetaObject::invokeMethod(b, [b] { delete b; }, Qt::BlockingQueuedConnection);
        m_thread.quit();
        m_thread.wait();
    }

    QObject *context = nullptr;

private:
    QThread m_thread;
    QObject *m_barrier = nullptr;
};

/// A queued call that keeps `target`'s thread busy until release(), so that
/// a test can queue work behind it; `then` (optional) runs in that thread
/// once released. Destruction releases the call and waits for it to end.
class BusyCall {
public:
    explicit BusyCall(QObject *target, std::function<void()> then = {}) : m_then(std::move(then))
    {
        QMetaObject::invokeMethod(target, [this] {
            m_busy = true;
            // The acquire that sees the release also orders m_then, written
            // before it, for ThreadSanitizer.
            while (!m_release.load(std::memory_order_acquire))
                std::this_thread::yield();
            if (m_then)
                m_then();
            m_done = true;
        }, Qt::QueuedConnection);
    }
    ~BusyCall()
    {
        release();
        // Bounded only so that a failed test cannot hang here.
        (void)spinUntil([this] { return m_done.load(); });
    }
    BusyCall(const BusyCall &) = delete;
    BusyCall &operator=(const BusyCall &) = delete;

    /// True once the call runs (and holds its thread).
    bool isBusy() const { return m_busy.load(); }
    void release() { m_release.store(true, std::memory_order_release); }

private:
    std::function<void()> m_then;
    std::atomic<bool> m_busy{false}, m_release{false}, m_done{false};
};

/// For "a removal does not wait for the error handler of a call that is
/// over": an error handler (installed on `registry`) that records the failed
/// handler's id, then blocks until release(). Declare it after the registry.
class BlockingErrorHandler {
public:
    explicit BlockingErrorHandler(sigreg::QtRegistryBase &registry) : m_hold(m_mutex)
    {
        registry.setErrorHandler([this](const sigreg::HandlerFailure &f) {
            m_reported.store(f.handler.value());
            m_entered.store(true);
            std::lock_guard blocked(m_mutex);
        });
    }
    ~BlockingErrorHandler() { release(); }
    BlockingErrorHandler(const BlockingErrorHandler &) = delete;
    BlockingErrorHandler &operator=(const BlockingErrorHandler &) = delete;

    /// Waits (up to 30 s) until the error handler blocks.
    bool waitUntilBlocked()
    {
        return QTest::qWaitFor([this] { return m_entered.load(); }, 30000);
    }
    /// Runs `remove` on another thread while the error handler blocks, then
    /// releases the error handler. True if `remove` returned meanwhile (the
    /// 5 s are spent only if it wrongly waits).
    template <class Remove>
    bool removalReturnsWhileBlocked(Remove remove)
    {
        std::atomic<bool> removed{false};
        std::thread remover([&] {
            remove();
            removed.store(true);
        });
        const bool returned = QTest::qWaitFor([&] { return removed.load(); }, 5000);
        release();
        remover.join();
        return returned;
    }
    void release()
    {
        if (m_hold.owns_lock())
            m_hold.unlock();
    }
    /// The id of the last failure reported.
    std::uint64_t reported() const { return m_reported.load(); }

private:
    std::mutex m_mutex;
    std::unique_lock<std::mutex> m_hold;
    std::atomic<bool> m_entered{false};
    std::atomic<std::uint64_t> m_reported{0};
};

} // namespace sigreg_test
