// SPDX-License-Identifier: MIT
// Helpers for the Qt facade tests: worker threads with an event loop.
#pragma once

#include <QtCore/QMetaObject>
#include <QtCore/QObject>
#include <QtCore/QThread>

#include <memory>

namespace sigreg_test {

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

    /// Runs `f` in the worker thread and waits for it.
    template <class F>
    void run(F f)
    {
        QMetaObject::invokeMethod(m_barrier, std::move(f), Qt::BlockingQueuedConnection);
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

} // namespace sigreg_test
