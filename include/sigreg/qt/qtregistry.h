// SPDX-License-Identifier: MIT
// Sigreg Qt — a QObject registry over the lock-free core, with thread-affine
// dispatch (Auto / Direct / Queued / BlockingQueued) and QFuture handlers.
//
// What it adds to sigreg::Registry<E>
// -----------------------------------
// * Handlers with a context QObject run in the context's thread, chosen per
//   handler with a Qt::ConnectionType, and are removed when the context is
//   destroyed.
// * Marshalled events travel through one mailbox per target thread: a
//   lock-free queue of pooled tasks drained by one posted event. Events that
//   reach a thread before it drains share one wake-up, and a notify copies
//   its event at most once, for all its queued and async handlers together.
// * Handlers may return QFuture<void> (or any QFuture): notifyAsync() starts
//   them all and joins them, notifySequential() starts each after the
//   previous one finished. Futures still running when returned are awaited
//   by a QFutureWatcher on one Sigreg-owned thread ("sigreg-completion"), not
//   with QFuture::then(): in Qt 6.4 a continuation attached while another
//   thread finishes the future can run twice. Futures already finished need
//   no hop to that thread, nor do notifyAsync()'s futures that finish before
//   its walk ends; the rest of one walk's go there in one request.
//   The same Qt 6.4 bug applies to the futures notifyAsync() and
//   notifySequential() return, which Sigreg's completion thread may finish
//   at any time: as with any future another thread finishes (a
//   QtConcurrent::run(), say), await them with waitForFinished() or a
//   QFutureWatcher, not with then(), on Qt 6.4.
// * Failures of any kind (thrown inline, thrown in another thread, thrown
//   before a future was returned, a failed or cancelled future) reach
//   handlerFailed() and the error handler with the handler's id. Nothing is
//   thrown across an event loop. They are reported once the handler's call
//   is over, as in the core: a removal of the handler on another thread
//   does not wait for its error handler.
//
// What "removed" means
// --------------------
// When remove(id) (or a guard, clear(), or the context's destruction)
// returns on thread T, whether it removed the handler or found it removed by
// another call (see sigreg::Registry::remove(); a context's destruction
// after a removeNoWait() has returned no longer concerns the handler):
// * the handler is not running on any thread other than T, inline or
//   marshalled, and is never called again;
// * events already queued for it are dropped, not delivered;
// * an async handler is not started again; a future it returned earlier
//   keeps running (Sigreg does not cancel it) and its outcome is still
//   reported.
// A marshalled call running on T itself (a handler removing itself)
// completes normally. The one hazard is the core's: a call blocked on
// something T holds. removeNoWait() does not wait.
//
// Threads
// -------
// Events queued for a thread whose event loop never runs are never
// delivered (as with Qt). Events queued for a thread that has finished, for
// a context whose QThread object was destroyed, or for a context with no
// thread (moveToThread(nullptr)) are dropped (a BlockingQueued notify
// returns at once); notifySequential(event, context) with such a context
// starts no async handler, and its future is cancelled if there was one to
// start. BlockingQueuedConnection from the context's
// own thread runs the handler directly (Qt would deadlock).
//
// A marshalled handler may spin a nested event loop (QDialog::exec(), a
// QEventLoop waiting for a reply, QCoreApplication::processEvents()): Sigreg
// events to its thread, BlockingQueued ones included, are delivered inside
// that loop, in their order, as Qt's queued calls are. (A bare
// QCoreApplication::sendPostedEvents() is not a loop: it delivers only what
// a loop iteration already handed over.)
//
// After moveToThread(), a notify from the context's *new* thread may queue
// its first events through the old thread (which forwards them) until that
// thread has seen the move. A BlockingQueued notify in that window reads the
// context's thread again and runs the handler at once when it is the
// caller's own, so it never waits for the old thread (which may be waiting
// for the caller). An old thread that ends before it saw the move forwards
// nothing: the next notify reads the context's thread again and follows it.
// Known limit: each restart of a context's QThread (start() after it
// finished) costs every handler bound to that context a few hundred bytes,
// kept until the handler is removed (the thread's new mailbox; see
// docs/ARCHITECTURE.md). Moves between running threads cost nothing that stays.
// Known limit: events that one producer queued through the old thread before
// the move was seen may run after events it queued later straight to the new
// thread (Qt moves an object's posted events in one step; Sigreg forwards
// them as they are drained). The
// context may be destroyed in its new thread at any time: a destruction that
// meets the old thread reading the context (to forward a task) waits for it,
// as it waits for a running call. Two exceptions: after removeNoWait() (see
// there), and a call of the handler itself destroying its context, since a
// removal from inside a call of its handler does not wait (see
// sigreg::Registry::remove()). From inside the handler, use deleteLater().
//
// notifySequential(event) starts each handler after the previous one's
// future finished: at once, in the same thread, if that future was finished
// when returned; else in Sigreg's completion thread ("sigreg-completion").
// Such a later handler must not touch objects bound to the caller's thread,
// and must not block (it would hold up every registry's completions), e.g.
// by waiting for another notifyAsync() to finish. notifySequential(event,
// context) starts every handler in the context's thread instead.
#pragma once

/// @file
/// sigreg::QtRegistry<E>: a QObject registry with thread-affine dispatch
/// (Auto, Direct, Queued, BlockingQueued) and QFuture handlers. Part of
/// Sigreg::Qt.
///
/// The comment at the top of this header (see its source) states what it
/// adds to sigreg::Registry, what "removed" means for handlers in other
/// threads and for futures, how threads are handled, and the known limits.

#include <sigreg/guard.h>
#include <sigreg/handler_id.h>
#include <sigreg/qt/detail/dispatch.h>
#include <sigreg/registry.h>
#include <sigreg/sigreg_qt_export.h>

#include <QtCore/QFuture>
#include <QtCore/QObject>
#include <QtCore/QString>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <type_traits>

namespace sigreg {

/// The exception reported (as `HandlerFailure::exception`) when a handler's
/// future was cancelled.
class SIGREG_QT_EXPORT HandlerCanceled : public std::exception {
public:
    /// A fixed description of the cancellation.
    const char *what() const noexcept override;
};

class QtRegistryBasePrivate;

/// The non-template QObject part of every `QtRegistry<E>`: signals,
/// properties and everything that does not depend on the event type.
class SIGREG_QT_EXPORT QtRegistryBase : public QObject {
    Q_OBJECT
    /// The number of registered handlers; countChanged() tells when it changed.
    Q_PROPERTY(int count READ count NOTIFY countChanged)
    /// Failed handler calls since construction (see failureCount()); grows
    /// with each handlerFailed().
    Q_PROPERTY(quint64 failureCount READ failureCount NOTIFY handlerFailed)

public:
    ~QtRegistryBase() override;

    /// Number of registered handlers (lock-free).
    int count() const noexcept { return static_cast<int>(m_core.size()); }
    /// Failed handler calls since construction: thrown inline, thrown in a
    /// marshalled call, thrown before returning a future, or a failed or
    /// cancelled future.
    quint64 failureCount() const noexcept;

    /// Removes handler `id` and waits as described in the header; returns
    /// true if this call removed it.
    Q_INVOKABLE bool remove(quint64 id);
    /// As remove() without waiting for calls running on other threads.
    Q_INVOKABLE bool removeNoWait(quint64 id);
    /// Removes every handler (waiting); returns how many.
    Q_INVOKABLE int clear();
    /// True if handler `id` is registered here. Takes the writers' mutex briefly.
    Q_INVOKABLE bool contains(quint64 id) const;

    /// A guard that removes handler `id` when destroyed.
    [[nodiscard]] Guard guard(HandlerId id) { return Guard(m_core.anchor(), id); }

    /// Effect: installs `f`, callable as `f(const sigreg::HandlerFailure&)`,
    /// called for every failure after handlerFailed() was emitted, on the
    /// thread where the failure was seen (the notifying thread, also for a
    /// notifyAsync() handler's future that finished before the walk ended;
    /// the context's thread; or Sigreg's completion thread for futures that
    /// finished later).
    /// Exceptions thrown by `f` are dropped.
    void setErrorHandler(std::function<void(const HandlerFailure &)> f);
    /// Effect: removes the error handler; failures are then only counted and
    /// signalled with handlerFailed().
    void resetErrorHandler() { setErrorHandler({}); }

Q_SIGNALS:
    /// A handler failed. Emitted on the thread where the failure was seen.
    void handlerFailed(quint64 id, const QString &message);
    /// The number of handlers changed. Emitted on the thread that changed it.
    /// That may be a guard's removal on another thread while this registry
    /// is being destroyed (the destructor waits for it): a slot connected
    /// directly, running there, must not use the registry. Connect with a
    /// context object living in the registry's thread instead (the registry
    /// itself will do): the call is then queued there, and dropped if the
    /// context is gone first.
    void countChanged();

    /// @cond SIGREG_INTERNAL
    // The protected part is QtRegistry<E>'s interface to its base, not API.
protected:
    explicit QtRegistryBase(QObject *parent);

    /// Marks that handlers needing a notify frame exist (set once). Kept in
    /// the core's flags, on the cache line notify reads anyway.
    void noteSpecialHandler() noexcept { m_core.setLayerFlags(kSpecialHandlers); }
    static constexpr std::uint32_t kSpecialHandlers = 1;
    const std::shared_ptr<qtdetail::Reporter> &reporter() const noexcept { return m_reporter; }
    void bind(qtdetail::HandlerState *state, QObject *context, Qt::ConnectionType type);
    /// Undoes bind() for a handler that was never published.
    static void unbind(qtdetail::HandlerState *state) noexcept;

    detail::RegistryCore m_core;
    /// @endcond

private:
    friend struct qtdetail::Reporter;
    static void observe(void *self) noexcept;

    std::shared_ptr<qtdetail::Reporter> m_reporter;
};

/// A QObject registry of handlers for events of type `E`.
///
/// Without a context, handlers run inline on the notifying thread, exactly as
/// in `sigreg::Registry<E>`. With a context QObject they run in the context's
/// thread according to a Qt::ConnectionType and go away with the context.
/// Handlers returning a QFuture are asynchronous (see notifyAsync()).
///
/// Safety: every member may be called from any thread and from handlers,
/// except the destructor (not concurrently with other uses, not from one of
/// its handlers).
template <class E>
class QtRegistry final : public QtRegistryBase {
    static_assert(std::is_object_v<E> && !std::is_const_v<E> && !std::is_volatile_v<E>,
                  "sigreg::QtRegistry<E>: E must be a non-const, non-volatile object type");

    template <class F>
    static constexpr bool isAsync = std::is_invocable_v<std::decay_t<F> &, const E &>
        && std::is_constructible_v<QFuture<void>, std::invoke_result_t<std::decay_t<F> &, const E &>>
        && !std::is_same_v<std::invoke_result_t<std::decay_t<F> &, const E &>, void>;

public:
    /// An empty registry, a QObject child of `parent`.
    explicit QtRegistry(QObject *parent = nullptr) : QtRegistryBase(parent)
    {
        sigreg::detail::requireMatchingProtocol();
    }
    ~QtRegistry() override = default;

    /// Effect: registers `f` (callable as `f(const E&)`), run inline on the
    /// notifying thread, with priority 0 (or `priority`: higher runs first,
    /// ties in registration order). A handler returning a QFuture is
    /// asynchronous: it is started inline and its future is awaited by
    /// notifyAsync() / notifySequential(); an async handler needs a copyable
    /// E (it may read the event after notify returned).
    /// Throws: std::invalid_argument for an empty handler; std::bad_alloc.
    template <class F>
    HandlerId add(F &&f)
    {
        return add(0, std::forward<F>(f));
    }
    /// As add(f), with a priority: higher runs first; equal priorities run
    /// in registration order.
    template <class F>
    HandlerId add(int priority, F &&f)
    {
        checkHandler<F>();
        if constexpr (isAsync<F>) {
            static_assert(std::is_copy_constructible_v<E>,
                          "sigreg::QtRegistry<E>: an async handler (returning QFuture) may read the event after "
                          "notify returned, so E must be copy-constructible");
            return addState(priority, makeState<F>(std::forward<F>(f)), nullptr, Qt::DirectConnection);
        } else {
            return m_core.add(detail::makeNode<E>(std::forward<F>(f)), priority);
        }
    }

    /// Effect: registers `f` to run in `context`'s thread according to
    /// `type` (Qt::AutoConnection: inline when notify runs in that thread,
    /// else queued; Qt::DirectConnection: inline, always;
    /// Qt::QueuedConnection: queued, always; Qt::BlockingQueuedConnection:
    /// queued and waited for, or inline from the context's own thread). The
    /// handler is removed when `context` is destroyed.
    /// Throws: std::invalid_argument for a null context, an empty handler or
    /// another connection type (flags like Qt::UniqueConnection included).
    template <class F>
    HandlerId add(QObject *context, F &&f, Qt::ConnectionType type = Qt::AutoConnection)
    {
        return add(0, context, std::forward<F>(f), type);
    }
    /// As add(context, f, type), with a priority: higher runs first; equal
    /// priorities run in registration order.
    template <class F>
    HandlerId add(int priority, QObject *context, F &&f, Qt::ConnectionType type = Qt::AutoConnection)
    {
        static_assert(std::is_copy_constructible_v<E>,
                      "sigreg::QtRegistry<E>: a handler with a context QObject may be called in another thread, "
                      "which needs a copy of the event, but E is not copy-constructible. Register the handler "
                      "without a context (it then runs inline), or make E copyable.");
        static_assert(!isAsync<F>,
                      "sigreg::QtRegistry<E>: async handlers (returning QFuture) take no context; continue in "
                      "an object's thread with QFuture::then(context, ...) inside the handler");
        checkHandler<F>();
        if (!context)
            throw std::invalid_argument("sigreg::QtRegistry: null context object");
        if (type != Qt::AutoConnection && type != Qt::DirectConnection && type != Qt::QueuedConnection
            && type != Qt::BlockingQueuedConnection)
            throw std::invalid_argument("sigreg::QtRegistry: unsupported connection type (use Auto, Direct, "
                                        "Queued or BlockingQueued, without flags)");
        return addState(priority, makeState<F>(std::forward<F>(f)), context, type);
    }

    /// As the add() overloads, returning a guard that removes the handler.
    template <class... Args>
    [[nodiscard]] Guard addGuarded(Args &&...args)
    {
        auto anchor = m_core.anchor();
        return Guard(std::move(anchor), add(std::forward<Args>(args)...));
    }

    /// Effect: removes handler `id`; returns true if this call removed it.
    /// When it returns (true or false) the handler is not running on another
    /// thread, inline or marshalled, its queued events are dropped, and it is
    /// never called again (see `What "removed" means` at the top of this
    /// header).
    /// Waits for running calls on other threads, so it deadlocks if such a
    /// call is blocked on something the caller holds: use removeNoWait() there.
    bool remove(HandlerId id) { return m_core.remove(id, true); }
    /// Effect: as remove(), but returns without waiting for calls already
    /// running on other threads; no new call starts after it returns. Such a
    /// call (and a thread about to forward one of its tasks) may still use
    /// the handler's context: keep the context alive until they are over.
    bool removeNoWait(HandlerId id) { return m_core.remove(id, false); }
    using QtRegistryBase::remove;
    using QtRegistryBase::removeNoWait;
    /// True if `id` is registered here. Takes the writers' mutex briefly.
    [[nodiscard]] bool contains(HandlerId id) const { return m_core.contains(id); }
    using QtRegistryBase::contains;
    /// Number of registered handlers. Lock-free.
    [[nodiscard]] std::size_t size() const noexcept { return m_core.size(); }
    /// True when no handler is registered. Lock-free.
    [[nodiscard]] bool empty() const noexcept { return size() == 0; }

    /// Effect: calls every handler in priority order: inline ones now, on
    /// this thread; marshalled ones are queued (the event is copied once for
    /// all of them); async ones are started and not awaited. Never throws.
    SIGREG_ALWAYS_INLINE void notify(const E &event) const noexcept
    {
        // Only inline handlers: the core's notify, inline. Otherwise the
        // frame that queued and async handlers need, out of line, so that its
        // stack frame and saved registers are not paid by the common case.
        m_core.notifyUnlessFlagged(std::addressof(event), kSpecialHandlers, [&] { notifyInFrame(event); });
    }

    /// Effect: as notify(), and returns a future that finishes when every
    /// async handler's future has finished (whatever the outcome: failures
    /// and cancellations are reported, not propagated). Async handlers get a
    /// shared copy of the event that lives until the returned future
    /// finishes. The future never fails and is never cancelled by Sigreg.
    /// Cancelling it (QFuture::cancel()) changes nothing for the handlers:
    /// they have all started, and their futures are not cancelled; it still
    /// finishes once they have.
    /// A handler returning a default-constructed QFuture (which Qt treats as
    /// cancelled) is reported as cancelled (sigreg::HandlerCanceled).
    /// Failures of handler futures that finished before the walk over the
    /// handlers ended are reported on this thread, before this returns.
    QFuture<void> notifyAsync(const E &event)
    {
        qtdetail::Frame frame(std::addressof(event), parcelMaker(), &typeid(E), qtdetail::Mode::Async);
        m_core.notify(std::addressof(event));
        return frame.finish();
    }

    /// Effect: walks the handlers in priority order as notify() does, but
    /// starts each async handler only once the previous async handler's
    /// future finished (whatever its outcome): an async handler with nothing
    /// pending before it starts at its place in the walk; the others start
    /// on Sigreg's completion thread once their predecessor's future
    /// finished (or inline, if it finished before it was returned). Inline
    /// handlers run during the walk. Returns a future finished after the
    /// last async handler's future.
    ///
    /// Cancelling the returned future (QFuture::cancel()) stops the run: no
    /// async handler not started yet is started. The one pending keeps
    /// running (its future is not cancelled) and is still reported; the
    /// returned future, cancelled at once, finishes after it. The same holds
    /// for notifySequential(event, context).
    QFuture<void> notifySequential(const E &event)
    {
        qtdetail::Frame frame(std::addressof(event), parcelMaker(), &typeid(E), qtdetail::Mode::Sequential);
        m_core.notify(std::addressof(event));
        return frame.finish();
    }

    /// Effect: as notifySequential(event), but every async handler starts in
    /// the thread `context` lives in when this is called. If that is the
    /// calling thread, a handler with nothing pending before it starts at its
    /// place in the walk. The others start in that thread once their
    /// predecessor's future finished: at once (in the same turn of its event
    /// loop) if that future was finished when returned, else through its
    /// event loop. For handlers that use objects bound
    /// to that thread (widgets, a QNetworkAccessManager). If `context` is
    /// destroyed before the last handler started, the handlers not started
    /// yet are skipped and the returned future is cancelled, as a
    /// QFuture::then() continuation with a context is; likewise if that
    /// thread finishes first. Until then the thread must run its event loop.
    /// Steps travel through the thread's Sigreg mailbox, in order with the
    /// events queued there.
    /// Throws: std::invalid_argument for a null context; std::bad_alloc.
    QFuture<void> notifySequential(const E &event, QObject *context)
    {
        if (!context)
            throw std::invalid_argument("sigreg::QtRegistry::notifySequential: null context object");
        qtdetail::Frame frame(std::addressof(event), parcelMaker(), &typeid(E), qtdetail::Mode::Sequential);
        frame.setStepContext(context);
        m_core.notify(std::addressof(event));
        return frame.finish();
    }

private:
    SIGREG_NOINLINE void notifyInFrame(const E &event) const noexcept
    {
        qtdetail::Frame frame(std::addressof(event), parcelMaker(), &typeid(E), qtdetail::Mode::Notify);
        m_core.notify(std::addressof(event));
    }

    template <class F>
    static void checkHandler()
    {
        static_assert(std::is_invocable_v<std::decay_t<F> &, const E &>,
                      "sigreg::QtRegistry<E>: a handler must be callable as f(const E&)");
    }

    static constexpr qtdetail::MakeParcelFn parcelMaker() noexcept
    {
        if constexpr (std::is_copy_constructible_v<E>)
            return &qtdetail::ParcelOf<E>::make;
        else
            return nullptr;
    }

    template <class F>
    static qtdetail::HandlerState *makeState(F &&f)
    {
        detail::checkNotEmpty(f);
        using S = qtdetail::HandlerStateOf<E, std::decay_t<F>>;
        auto *s = new S(std::forward<F>(f));
        if constexpr (isAsync<F>)
            s->callAsync = &S::callAsyncFn;
        else
            s->call = &S::callFn;
        s->makeParcel = parcelMaker();
        s->eventType = &typeid(E);
        return s;
    }

    HandlerId addState(int priority, qtdetail::HandlerState *state, QObject *context, Qt::ConnectionType type)
    {
        detail::Node *node = nullptr;
        try {
            // The id is known before the handler is published, so that no
            // call or failure report can see it unset.
            state->id = m_core.reserveId();
            bind(state, context, type);
            node = qtdetail::makeStateNode(state); // owns state from here
        } catch (...) {
            unbind(state);
            state->deref();
            throw;
        }
        node->id = state->id;
        noteSpecialHandler();
        // Our own reference: once published, a concurrent removal (or the
        // context's death) may reclaim the node and its reference.
        state->ref();
        HandlerId id;
        try {
            id = m_core.add(node, priority);
        } catch (...) {
            unbind(state); // the node (and its reference) is gone already
            state->deref();
            throw;
        }
        // A context destroyed while we were adding: its destroyed() may
        // have come before the handler existed.
        const bool contextGone = context && state->context.isNull();
        state->deref();
        if (contextGone)
            m_core.remove(id, true);
        return id;
    }
};

} // namespace sigreg
