// SPDX-License-Identifier: MIT
// Sigreg Qt — the typed bus (sigreg::Bus) for Qt code: a receiver that is a
// QObject, the next event as a QFuture, and the shutdown event tied to the
// application's life.
//
// QtBusReceiver<E>
// ----------------
// A bus receiver (Bus::subscribe<E>(capacity)) that delivers in its own
// thread: every event is passed to the callbacks given to onEvent() and
// emitted as eventReceived(QVariant); missed events are reported by
// lagged(count). Nothing polls: a producer that finds the receiver idle
// posts it one event (QEvent), and the receiver then takes everything that
// has arrived, up to 256 events per turn of its event loop, so a flood never
// starves the loop. While it has events to deliver, producers pay nothing
// for waking it. Its bounded buffer is the bus's: a thread that does not run
// its loop for a while loses the oldest events and is told how many.
//
// nextEvent<E>(bus)
// -----------------
// A QFuture<E> with the next event of type E (emitted after the call). The
// future is fulfilled on the emitting thread; attach a continuation with a
// context object to run it elsewhere. It is cancelled if the bus is
// destroyed first. Cancelling it removes its handler on the next event.
//
// attachToApplication(bus)
// ------------------------
// Calls bus.initiateShutdown() (which emits ShutdownInitiated, once) when
// the application emits aboutToQuit(); then delivers, before exec()
// returns, what QtBusReceivers of the main thread have pending, so they see
// ShutdownInitiated too.
#pragma once

/// @file
/// The typed bus for Qt code: sigreg::QtBusReceiver (a receiver that is a
/// QObject and delivers in its thread), sigreg::nextEvent() (the next event as
/// a QFuture) and sigreg::attachToApplication() (sigreg::ShutdownInitiated
/// when the application is about to quit). Part of Sigreg::Qt.
///
/// The comment at the top of this header (see its source) describes each.

#include <sigreg/bus.h>
#include <sigreg/sigreg_qt_export.h>

#include <QtCore/QFuture>
#include <QtCore/QObject>
#include <QtCore/QPointer>
#include <QtCore/QPromise>
#include <QtCore/QVariant>

#include <atomic>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>

namespace sigreg {

/// The QObject part of QtBusReceiver<E> (a template cannot declare signals).
class SIGREG_QT_EXPORT QtBusReceiverBase : public QObject {
    Q_OBJECT
    /// Events delivered so far (see receivedCount()).
    Q_PROPERTY(quint64 receivedCount READ receivedCount)
    /// Events missed so far (see missedCount()).
    Q_PROPERTY(quint64 missedCount READ missedCount)
    /// True until unsubscribed or the bus is gone; closed() tells when it ends.
    Q_PROPERTY(bool subscribed READ isSubscribed NOTIFY closed)
    /// The most undelivered events it holds (see capacity()).
    Q_PROPERTY(int capacity READ capacity CONSTANT)

public:
    ~QtBusReceiverBase() override;

    /// Events delivered so far.
    [[nodiscard]] quint64 receivedCount() const noexcept { return m_received; }
    /// Events missed so far (the sum of lagged() counts).
    [[nodiscard]] quint64 missedCount() const noexcept { return m_missed; }
    /// True until unsubscribe(), or until the bus is destroyed.
    [[nodiscard]] bool isSubscribed() const noexcept;
    /// The most undelivered events it holds (fixed at construction); a
    /// receiver further behind loses the oldest and reports lagged().
    [[nodiscard]] int capacity() const noexcept;

    /// Stops receiving: what is already buffered is still delivered, then closed() is emitted.
    Q_INVOKABLE void unsubscribe();

Q_SIGNALS:
    /// One event, in this object's thread. Emitted only while something is
    /// connected to it (the conversion to QVariant is skipped otherwise).
    void eventReceived(const QVariant &event);
    /// `missed` events were lost before the next one (the receiver fell
    /// more than capacity() behind, copying an event in threw, or moving
    /// one out threw: that exception then goes on to the event loop, and
    /// the event is not retried).
    void lagged(quint64 missed);
    /// No more events will come: unsubscribed, or the bus is gone. Once.
    void closed();

    /// @cond SIGREG_INTERNAL
    // The protected part is QtBusReceiver<E>'s interface to its base, not API.
protected:
    explicit QtBusReceiverBase(QObject *parent);

    /// What the next receive found (the template reports it back).
    enum class Step { Delivered, Lagged, Empty, Closed };

    /// Subclass: hooks the ring up; call from the constructor, last.
    void start(detail::RingBase &ring);
    /// Subclass: before the receiver is unsubscribed (destructor, unsubscribe()).
    void stop() noexcept;
    /// Subclass: takes one result and delivers it. User code runs inside:
    /// touch no member after delivering.
    virtual Step deliverNext() = 0;
    virtual void unsubscribeReceiver() noexcept = 0;

    bool event(QEvent *e) override;
    [[nodiscard]] bool variantWanted() const;

    quint64 m_received = 0;
    quint64 m_missed = 0;
    /// @endcond

private:
    class WakeEvent;
    static bool wake(void *self) noexcept;
    void drain();
    /// Consumer thread, before the hook is armed: the wake-up event a
    /// producer will post (made here, so that wake(), inside a producer's
    /// noexcept emit, allocates nothing). Throws std::bad_alloc.
    void prepareWake();
    /// Posts a wake-up to this receiver (the prepared one if there is one):
    /// from a producer (wake()), or from the consumer thread with the hook
    /// disarmed, after 256 events or after a delivery threw. False if it
    /// could not (out of memory).
    bool postWake() noexcept;

    /// A posted wake-up that Qt deleted without delivering it (see
    /// WakeEvent): the hook is armed again, unless stop() was called.
    void wakeLost() noexcept;

    detail::RingBase *m_ring = nullptr;
    std::atomic<QEvent *> m_wake{nullptr};
    /// Set by stop(): the hook is cleared, and m_ring may go.
    std::atomic<bool> m_stopped{false};
    bool m_closedEmitted = false;
    /// Set by the QEvent::ThreadChange that moveToThread() sends (on this
    /// object's thread, before the move), cleared when a drain starts: a
    /// drain whose callback moved the receiver stops there. Atomic only so
    /// that ThreadSanitizer need not see Qt's hand-over of the object.
    std::atomic<bool> m_moved{false};
};

/// A bus receiver of events of type E that delivers in its thread (see the
/// top of this file). E must be copy-constructible, and, for eventReceived(),
/// storable in a QVariant.
template <class E>
class QtBusReceiver final : public QtBusReceiverBase {
public:
    /// Subscribes to `bus` with its default capacity.
    explicit QtBusReceiver(Bus &bus, QObject *parent = nullptr)
        : QtBusReceiver(bus, bus.defaultCapacity(), parent)
    {
    }
    /// Subscribes to `bus`, holding up to `capacity` undelivered events.
    /// Throws as Bus::subscribe().
    QtBusReceiver(Bus &bus, std::size_t capacity, QObject *parent = nullptr)
        : QtBusReceiverBase(parent), m_receiver(bus.subscribe<E>(capacity))
    {
        start(*m_receiver.m_ring);
    }
    ~QtBusReceiver() override
    {
        stop();
        m_receiver.unsubscribe();
    }

    /// Calls `f(const E&)` for every event, in this object's thread, in the
    /// order the callbacks were added, before eventReceived(). Call it from
    /// this object's thread (callbacks are not synchronised); a callback
    /// added during a delivery is called from the next event on. A callback
    /// that throws does not keep the event from the later callbacks and
    /// eventReceived(); after them, the first exception goes on to the event
    /// loop, as from any event handler (catch it in a
    /// QCoreApplication::notify() override), and the receiver delivers the
    /// next events in a later turn.
    template <class F>
    void onEvent(F &&f)
    {
        static_assert(std::is_invocable_v<std::decay_t<F> &, const E &>,
                      "sigreg::QtBusReceiver<E>::onEvent: the callback must be callable as f(const E&)");
        m_callbacks.push_back(Callback{std::function<void(const E &)>(std::forward<F>(f)), {}, false});
    }
    /// As onEvent(f), while `context` exists. `f` runs in this receiver's
    /// thread, not the context's; the context is checked before each call,
    /// so one that lives in another thread may be destroyed while `f` runs:
    /// give it a context of this thread.
    template <class F>
    void onEvent(const QObject *context, F &&f)
    {
        static_assert(std::is_invocable_v<std::decay_t<F> &, const E &>,
                      "sigreg::QtBusReceiver<E>::onEvent: the callback must be callable as f(const E&)");
        m_callbacks.push_back(Callback{std::function<void(const E &)>(std::forward<F>(f)), context, true});
    }

private:
    struct Callback {
        std::function<void(const E &)> fn;
        QPointer<const QObject> context;
        bool hasContext;
    };

    Step deliverNext() override
    {
        // An event whose move out of the ring throws is dropped and reported
        // by lagged(1), then its exception goes on (retried, it would throw
        // again on every turn of the loop).
        std::exception_ptr moveError;
        ReceiveResult<E> r = m_receiver.tryReceiveImpl(&moveError);
        switch (r.status()) {
        case ReceiveStatus::Received: {
            ++m_received;
            const bool variant = variantWanted();
            QPointer<QtBusReceiverBase> self(this);
            // A callback may add callbacks (a deque keeps the others where
            // they are) or delete this object.
            // A callback that throws does not keep the event from the others
            // or from eventReceived(): the first exception goes on once all
            // have had it (to drain(), which passes it to the event loop).
            std::exception_ptr error;
            const std::size_t count = m_callbacks.size();
            for (std::size_t i = 0; i < count; ++i) {
                const Callback &c = m_callbacks[i];
                if (c.hasContext && !c.context)
                    continue;
                try {
                    c.fn(*r);
#if defined(__GLIBCXX__)
                } catch (abi::__forced_unwind &) {
                    throw; // the thread is being cancelled: not a failure to hold back
#endif
                } catch (...) {
                    if (!error)
                        error = detail::currentException();
                }
                if (!self)
                    break;
            }
            if (variant && self) {
                try {
                    Q_EMIT eventReceived(QVariant::fromValue(*r));
#if defined(__GLIBCXX__)
                } catch (abi::__forced_unwind &) {
                    throw;
#endif
                } catch (...) {
                    if (!error)
                        error = detail::currentException();
                }
            }
            if (error)
                std::rethrow_exception(error);
            return Step::Delivered;
        }
        case ReceiveStatus::Lagged:
            m_missed += r.lagged();
            Q_EMIT lagged(r.lagged());
            if (moveError)
                std::rethrow_exception(moveError);
            return Step::Lagged;
        case ReceiveStatus::Closed:
            return Step::Closed;
        case ReceiveStatus::Empty:
        case ReceiveStatus::TimedOut:
            break;
        }
        return Step::Empty;
    }
    void unsubscribeReceiver() noexcept override { m_receiver.unsubscribe(); }

    Receiver<E> m_receiver;
    std::deque<Callback> m_callbacks;
};

namespace detail {

template <class E>
struct NextEventState {
    std::mutex mutex;
    bool fired = false;
    Guard guard;
    QPromise<E> promise;
};

} // namespace detail

/// The next event of type E emitted on `bus` after this call (see the top of this file).
template <class E>
QFuture<E> nextEvent(Bus &bus)
{
    static_assert(std::is_copy_constructible_v<E>,
                  "sigreg::nextEvent<E>: the future holds a copy of the event, so E must be copy-constructible");
    auto state = std::make_shared<detail::NextEventState<E>>();
    state->promise.start();
    QFuture<E> future = state->promise.future();
    // Highest priority: the future sees the event before other handlers run.
    Guard guard = bus.onGuarded<E>(std::numeric_limits<int>::max(), [state](const E &event) {
        {
            std::lock_guard<std::mutex> lock(state->mutex);
            if (state->fired)
                return;
            state->fired = true;
            state->guard.resetNoWait(); // no-op if the registration has not stored it yet
        }
        // Finished whatever happens: a copy of the event that throws (or
        // no memory for it) leaves the future failed (or, failing that too,
        // cancelled), not pending until the bus goes.
        struct Finish {
            QPromise<E> &promise;
            ~Finish() { promise.finish(); }
        } finish{state->promise};
        if (!state->promise.isCanceled()) {
            try {
                state->promise.addResult(event);
            } catch (...) {
                try {
                    state->promise.setException(detail::currentException());
                } catch (...) {
                    state->promise.future().cancel();
                }
                throw; // reported by the bus as this handler's failure
            }
        }
    });
    std::lock_guard<std::mutex> lock(state->mutex);
    if (state->fired)
        guard.resetNoWait();
    else
        state->guard = std::move(guard);
    return future;
}

/// Emits ShutdownInitiated on `bus` when the application is about to quit
/// (see the top of this file). Returns false if `bus` was attached already.
/// Call it in the application's thread; the attachment ends with the bus or
/// the application, whichever goes first.
/// Throws: std::logic_error if no QCoreApplication exists, or if called from
/// another thread than the application's.
SIGREG_QT_EXPORT bool attachToApplication(Bus &bus);

} // namespace sigreg
