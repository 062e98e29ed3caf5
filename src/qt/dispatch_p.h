// SPDX-License-Identifier: MIT
// Sigreg Qt — private parts of the dispatch machinery (never installed).
#pragma once

#include <sigreg/qt/detail/dispatch.h>

#include <QtCore/QEvent>
#include <QtCore/QObject>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>

namespace sigreg::qtdetail {

/// Whether failWakeupsForTesting() asks the caller's wake-up to fail now
/// (and counts it). False at the cost of one relaxed load unless a test
/// armed it.
bool injectedWakeupFailure() noexcept;

/// Where failures go: the registry while it exists. Shared with handler
/// states and async continuations, which may outlive the registry.
struct Reporter {
    std::mutex mutex; // guards registry and callback (never held across user code)
    QtRegistryBase *registry = nullptr;
    std::shared_ptr<const std::function<void(const HandlerFailure &)>> callback;
    std::atomic<int> active{0};             // deliveries in progress
    std::atomic<std::uint64_t> failures{0}; // failures not counted by the core

    /// A delivery taken ahead (reserve()): the registry waits for it in
    /// detach().
    struct Reservation {
        QtRegistryBase *target = nullptr;
        std::shared_ptr<const std::function<void(const HandlerFailure &)>> callback;
    };

    /// Reports a failure seen outside the core's notify loop.
    void report(HandlerId id, std::exception_ptr error) noexcept;
    /// Emits handlerFailed() and calls the callback, if the registry exists.
    void deliver(HandlerId id, const std::exception_ptr &error) noexcept;
    /// Takes a delivery for a failure to report once a handler's call has
    /// left its gate: taken inside the gate, which the registry's
    /// destruction waits for, so that the destruction then waits for the
    /// delivery too (detach()). False (and nothing taken) if the registry is
    /// going. Allocates nothing.
    bool reserve(Reservation &r) noexcept;
    /// Counts the failure and delivers it on `r` (if it was taken).
    void reportReserved(Reservation &r, HandlerId id, const std::exception_ptr &error) noexcept;
    /// Delivers on a reservation taken, and releases it.
    void deliverReserved(Reservation &r, HandlerId id, const std::exception_ptr &error) noexcept;
    /// The registry is going: no delivery starts after this returns, and
    /// those in progress have ended.
    void detach() noexcept;
};

/// A handler's failure seen inside its gate and reported once the call has
/// left it: a remover of the handler then does not wait for the error
/// handler (which may need what the remover holds), and the delivery, taken
/// inside the gate, is still waited for by the registry's destruction
/// (which waits for the gate). Capture it, leave the gate, report it.
class LateFailure {
public:
    /// In a catch block, inside the gate.
    void capture(Reporter &reporter) noexcept
    {
        m_error = detail::currentException(); // never null: report() tests it
        reporter.reserve(m_delivery);
    }
    /// After the gate: counts and delivers the failure, if one was captured.
    void report(Reporter &reporter, HandlerId id) noexcept
    {
        if (m_error)
            reporter.reportReserved(m_delivery, id, m_error);
    }

private:
    std::exception_ptr m_error;
    Reporter::Reservation m_delivery;
};

/// Signals a BlockingQueued caller that its task ran (or was dropped).
/// A mutex and condition variable rather than an atomic wait: the waiter
/// owns this object (on its stack) and may destroy it the moment it sees
/// `done`, so the signaller must not touch it after that; it does not, as it
/// notifies while holding the mutex the waiter needs to return.
struct Task;
struct Completion {
    std::mutex mutex;
    std::condition_variable cv;
    bool done = false;
    /// The blocked caller's thread (set before the task is queued).
    QThread *waiter = nullptr;
    /// A task handed back to the blocked caller: its context moved to the
    /// caller's thread before the task reached the thread it was queued to.
    Task *handedBack = nullptr;

    void signal() noexcept
    {
        std::lock_guard lock(mutex);
        done = true;
        cv.notify_one();
    }
    void handBack(Task *t) noexcept
    {
        std::lock_guard lock(mutex);
        handedBack = t;
        cv.notify_one();
    }
    /// Waits until the call is done (returns null) or its task is handed
    /// back to this thread (returns it: the caller runs it, then waits again).
    Task *wait() noexcept
    {
        std::unique_lock lock(mutex);
        cv.wait(lock, [this] { return done || handedBack; });
        Task *t = handedBack;
        handedBack = nullptr;
        return t;
    }
};

/// One queued call: a handler, the event (shared parcel, or the blocked
/// caller's own event), and an optional completion.
struct Task {
    std::atomic<Task *> next{nullptr};
    HandlerState *state = nullptr;
    Parcel *parcel = nullptr;
    const void *event = nullptr;
    Completion *completion = nullptr;
    /// Instead of a handler call (`state` null): `callback(arg, true)` when
    /// the task runs, `callback(arg, false)` when it is dropped (its thread
    /// ended). Either way exactly once.
    void (*callback)(void *arg, bool run) noexcept = nullptr;
    void *arg = nullptr;
};

/// A callback task for the mailbox of a thread (see Task::callback).
Task *newCallbackTask(void (*callback)(void *, bool) noexcept, void *arg);

/// A posted wake-up that can tell, in its destructor, whether Qt delivered it.
/// Qt may delete a posted event it never delivers: all of a thread's when its
/// QCoreApplication is destroyed (so that another one can be made), those
/// removePostedEvents() removes, one an event filter eats. Whoever waits for
/// the wake-up must then hear of it (see lost()). Qt hands the event to the
/// receiving thread under its own mutex, which ThreadSanitizer cannot see;
/// the release/acquire pair on `posted` restates that edge where it can.
class WakeupEvent : public QEvent {
public:
    explicit WakeupEvent(QEvent::Type type) : QEvent(type) {}
    /// Posting thread, just before postEvent().
    void markPosted() noexcept { m_posted.store(true, std::memory_order_release); }
    /// Receiving thread, as it is delivered; or its owner, deleting it unposted.
    void settle() noexcept
    {
        (void)m_posted.load(std::memory_order_acquire);
        m_settled = true;
    }

protected:
    /// For the subclass's destructor: true if Qt deleted it undelivered.
    bool lost() const noexcept
    {
        (void)m_posted.load(std::memory_order_acquire);
        return !m_settled;
    }

private:
    bool m_settled = false;
    std::atomic<bool> m_posted{false};
};

/// Tasks for one thread: a lock-free multi-producer, single-consumer queue
/// (intrusive, with a stub node) drained by one posted event per batch.
class Mailbox {
public:
    /// `gone`: set when the QThread object is destroyed (shared by all the
    /// mailboxes a thread has over its restarts).
    Mailbox(QThread *thread, std::shared_ptr<const std::atomic<bool>> gone);
    ~Mailbox();
    Mailbox(const Mailbox &) = delete;
    Mailbox &operator=(const Mailbox &) = delete;

    /// Any thread: queues `task` (or drops it if the mailbox is closed) and
    /// posts a wake-up unless one is pending.
    void push(Task *task) noexcept;
    /// Consumer thread: runs queued tasks. `receiver` is the mailbox's
    /// receiver, which got the wake-up (m_receiver, as the consumer thread
    /// knows it without reading the field another thread wrote).
    void drain(QObject *receiver) noexcept;
    /// Consumer thread, as its event dispatcher starts processing events: if
    /// that is a nested event loop inside a handler this mailbox's drain is
    /// calling, hands the mailbox to that loop (see watchNestedLoops()).
    void loopIteration(QObject *receiver) noexcept;
    /// Posts a drain event to the receiver. Throws std::bad_alloc. The
    /// creating thread posts a first (empty) one before the mailbox is
    /// shared: its run connects loopIteration() on the consumer thread, so
    /// that a wake-up lost before that (out of memory) is made up for by it.
    void postDrainEvent();
    /// Any thread: a drain event posted by this mailbox was deleted without
    /// being delivered (see DrainEvent). Gives `scheduled` up, so that the
    /// next push posts a wake-up, and owes the consumer a look for the tasks
    /// already queued (see settleOwed()). Nothing once closed.
    void drainEventLost() noexcept;
    /// Consumer thread, as a QCoreApplication is made in it: a wake-up lost
    /// with the previous application (which deletes its thread's posted
    /// events after its event dispatcher, so that no loop iteration settles
    /// what is owed: see drainEventLost()) is posted again for the tasks
    /// queued, so that the new application's event loop runs them without
    /// waiting for another push.
    void applicationMade() noexcept;
    /// After the thread finished (or from it, as it finishes): drops queued
    /// tasks; later pushes drop theirs at once.
    void close() noexcept;

    QThread *thread() const noexcept { return m_thread; }
    bool isClosed() const noexcept { return m_state.load(std::memory_order_acquire) & kClosed; }
    /// The QThread object was destroyed (or there never was one): thread()
    /// must not be dereferenced any more.
    bool threadGone() const noexcept { return m_gone->load(std::memory_order_acquire); }
    /// Wake-ups posted so far (see qtdetail::wakeupsPosted()).
    std::uint64_t wakeups() const noexcept { return m_wakeups.load(std::memory_order_relaxed); }

    static constexpr QEvent::Type kDrainEvent = QEvent::Type(QEvent::User + 0x5e6);

private:
    static constexpr std::uint32_t kScheduled = 1;
    static constexpr std::uint32_t kClosed = 2;
    static constexpr std::uint32_t kProducer = 4;

    Task *pop() noexcept;
    bool isEmpty() const noexcept;
    /// True if tasks wait and no drain is scheduled: the caller now holds
    /// `scheduled`, and must drain or post a wake-up.
    bool takeDrainIfWaiting() noexcept;
    /// Posts a wake-up (the caller holds `scheduled`). False if it could
    /// not (out of memory): then `scheduled` is given up and the consumer is
    /// owed a look (see settleOwed()).
    bool postWakeup() noexcept;
    /// Consumer thread, once: connects loopIteration() to the thread's event
    /// dispatcher, for as long as `receiver` (m_receiver) lives.
    void watchNestedLoops(QObject *receiver) noexcept;
    /// Consumer thread, from loopIteration(): drains if a wake-up could not
    /// be posted and no other is on its way.
    void settleOwed(QObject *receiver) noexcept;

    QThread *m_thread;
    QObject *m_receiver; // lives in m_thread
    std::shared_ptr<const std::atomic<bool>> m_gone;
    alignas(64) std::atomic<Task *> m_tail;
    alignas(64) std::atomic<std::uint32_t> m_state{0};
    // Beside m_state, which whoever posts a wake-up has just written.
    std::atomic<std::uint64_t> m_wakeups{0};
    // Set when a wake-up could not be posted (out of memory); read by the
    // consumer on each iteration of its event loop.
    std::atomic<bool> m_owed{false};
    alignas(64) Task *m_head;
    // Consumer thread only: drain frames inside a task's call right now (a
    // handler spinning a nested event loop nests a drain in its own), how
    // many of them (the outermost) have handed the mailbox to a nested loop,
    // and whether loopIteration() is connected.
    int m_calls = 0;
    int m_handedOff = 0;
    bool m_watching = false;
    Task m_stub;
};

/// The mailbox of `thread` (created on first use).
std::shared_ptr<Mailbox> mailboxFor(QThread *thread);

/// Runs, forwards or drops one task on the current (consumer) thread, then
/// frees it unless forwarded.
void runTask(Task *task) noexcept;
/// Releases a task (after running it, or instead): signals its completion,
/// drops its references and returns it to the pool.
void dropTask(Task *task) noexcept;

} // namespace sigreg::qtdetail
