// SPDX-License-Identifier: MIT
// Sigreg Qt — type-erased dispatch machinery behind sigreg::QtRegistry<E> (internal).
//
// Templates stay thin: they only know how to copy an event and call a
// handler. Everything else (mailboxes, pooling, gating, async joins) is
// compiled once, in the Sigreg::Qt library.
#pragma once

#include <sigreg/detail/registry_core.h>
#include <sigreg/handler_id.h>
#include <sigreg/sigreg_qt_export.h>

#include <QtCore/qnamespace.h>
#include <QtCore/QFuture>
#include <QtCore/QMetaObject>
#include <QtCore/QObject>
#include <QtCore/QPointer>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <typeinfo>
#include <mutex>
#include <new>
#include <vector>

QT_BEGIN_NAMESPACE
class QThread;
QT_END_NAMESPACE

namespace sigreg {
class QtRegistryBase;
}

namespace sigreg::qtdetail {

// ---------------------------------------------------------------- wake-ups
/// Wake-ups (posted drain events) posted so far to `thread`'s current
/// mailbox (0 if it has none): events for one thread that arrive before it
/// drains share one. For tests and diagnostics.
SIGREG_QT_EXPORT std::uint64_t wakeupsPosted(QThread *thread) noexcept;

/// For tests only: `hook` (null to remove) is called with a handler's context
/// where a thread reads the context's thread and has not yet acted on what it
/// read, so that a test can destroy or move the context, or let another
/// thread act first, in between: by a thread running a marshalled task (after
/// it read the context pointer, before it reads the context's thread); by a
/// notifying thread that finds the context gone from the thread it was last
/// seen in (before it records the new one); and by a BlockingQueued notify
/// that reads the context's thread again (after the read). Not for
/// production use.
SIGREG_QT_EXPORT void setContextReadHookForTesting(void (*hook)(QObject *context)) noexcept;

/// For tests only: the next `count` wake-ups any mailbox or QtBusReceiver
/// tries to post fail as if out of memory (0 to stop). Returns how many failures of an earlier
/// call were still to come (0: all happened). Not for production use.
SIGREG_QT_EXPORT int failWakeupsForTesting(int count) noexcept;

/// For tests only: the QEvent type of the wake-ups mailboxes post, so that a
/// test can have Qt delete one undelivered (removePostedEvents()), as Qt
/// does with a thread's posted events when its QCoreApplication is
/// destroyed. Not for production use.
SIGREG_QT_EXPORT int wakeupEventTypeForTesting() noexcept;

// ---------------------------------------------------------------- pooling
/// Fixed-size blocks (size classes of 64 bytes up to 1 KiB, 64-byte aligned)
/// recycled across threads: marshalled events and their tasks allocate
/// nothing in steady state. Larger requests go to operator new.
SIGREG_QT_EXPORT void *poolAllocate(std::size_t bytes);
SIGREG_QT_EXPORT void poolFree(void *block, std::size_t bytes) noexcept;
inline constexpr std::size_t kPoolAlign = 64;

// ---------------------------------------------------------------- parcels
/// One shared copy of an event, made at most once per notify and handed to
/// every queued and asynchronous handler of that notify.
struct Parcel {
    std::atomic<std::uint32_t> refs{1};
    void (*destroy)(Parcel *) noexcept;
    const void *event = nullptr;

    void ref() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
    void deref() noexcept
    {
        if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
            destroy(this);
    }
};
using MakeParcelFn = Parcel *(*)(const void *event);

template <class E>
struct ParcelOf final : Parcel {
    E value;

    explicit ParcelOf(const E &e) : value(e)
    {
        destroy = &destroyFn;
        event = &value;
    }
    static Parcel *make(const void *e)
    {
        void *mem = allocate();
        try {
            return new (mem) ParcelOf(*static_cast<const E *>(e));
        } catch (...) {
            deallocate(mem);
            throw;
        }
    }
    static void destroyFn(Parcel *p) noexcept
    {
        auto *self = static_cast<ParcelOf *>(p);
        self->~ParcelOf();
        deallocate(self);
    }

private:
    // The pool's blocks are aligned to kPoolAlign; an event aligned to more
    // (alignas(128), say) gets a block of its own, aligned as it needs.
    static constexpr bool kPooled = alignof(ParcelOf) <= kPoolAlign;
    static void *allocate()
    {
        if constexpr (kPooled)
            return poolAllocate(sizeof(ParcelOf));
        else
            return ::operator new(sizeof(ParcelOf), std::align_val_t(alignof(ParcelOf)));
    }
    static void deallocate(void *block) noexcept
    {
        if constexpr (kPooled)
            poolFree(block, sizeof(ParcelOf));
        else
            ::operator delete(block, std::align_val_t(alignof(ParcelOf)));
    }
};

// ---------------------------------------------------------------- handler state
class Mailbox;
struct Reporter;

/// Per-handler state shared by the registry's node, queued tasks and async
/// continuations. Reference counted; the handler object lives in it.
struct SIGREG_QT_EXPORT HandlerState {
    using CallFn = void (*)(HandlerState *, const void *event);
    using CallAsyncFn = QFuture<void> (*)(HandlerState *, const void *event);

    static constexpr std::uint32_t kRemoved = 0x80000000u;

    // Read-mostly, by every thread that notifies or drains.
    CallFn call = nullptr;           // synchronous handlers
    CallAsyncFn callAsync = nullptr; // handlers returning a QFuture
    MakeParcelFn makeParcel = nullptr;
    // The event type: parcel makers of one type compiled into two shared
    // objects (hidden visibility) differ in address, the types do not.
    const std::type_info *eventType = nullptr;
    void (*destroy)(HandlerState *) noexcept = nullptr;

    HandlerId id;
    Qt::ConnectionType type = Qt::DirectConnection;
    QPointer<QObject> context;
    /// The mailbox of `thread`. Read lock-free; replaced (rarely: the context
    /// moved, or its thread finished and restarted) under `rebindMutex`.
    /// Every mailbox it ever pointed to stays in `mailboxes`, so a pointer
    /// loaded by a caller holding a reference to this state stays valid.
    std::atomic<Mailbox *> mailbox{nullptr};
    std::mutex rebindMutex;
    std::vector<std::shared_ptr<Mailbox>> mailboxes;
    std::shared_ptr<Reporter> reporter;
    QMetaObject::Connection contextDestroyed;
    /// The context's thread as last seen (updated when a moved context is
    /// detected while draining).
    std::atomic<QThread *> thread{nullptr};

    // Written per event: producers take references, the consumer enters the
    // gate. Each on a line of its own, away from the fields above.
    alignas(64) std::atomic<std::uint32_t> refs{1};
    /// kRemoved, plus the number of marshalled or asynchronous calls running.
    alignas(64) std::atomic<std::uint32_t> gate{0};

    HandlerState() noexcept = default;
    HandlerState(const HandlerState &) = delete;
    HandlerState &operator=(const HandlerState &) = delete;

    void ref() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
    void deref() noexcept
    {
        if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
            destroy(this);
    }
    /// Enters a marshalled or asynchronous call; false once removed.
    bool enter() noexcept;
    void leave() noexcept;
    /// Marks the handler removed; unless `how` is Removal::NoWait, waits for
    /// calls running on other threads than the calling one.
    void markRemoved(detail::Removal how) noexcept;
    /// Number of this handler's calls the calling thread is inside
    /// (marshalled calls, async starts, sequential steps).
    std::uint32_t callsOnThisThread() const noexcept;

protected:
    ~HandlerState() = default;
};

template <class E, class F>
struct HandlerStateOf final : HandlerState {
    F fn;

    template <class G>
    explicit HandlerStateOf(G &&g) : fn(std::forward<G>(g))
    {
        destroy = &destroyFn;
    }
    static void callFn(HandlerState *s, const void *e)
    {
        std::invoke(static_cast<HandlerStateOf *>(s)->fn, *static_cast<const E *>(e));
    }
    static QFuture<void> callAsyncFn(HandlerState *s, const void *e)
    {
        return QFuture<void>(std::invoke(static_cast<HandlerStateOf *>(s)->fn, *static_cast<const E *>(e)));
    }
    static void destroyFn(HandlerState *s) noexcept { delete static_cast<HandlerStateOf *>(s); }
};

/// Wraps a handler state in a core node whose invoke function dispatches
/// (inline, queued, blocking or asynchronously). Takes ownership of `state`.
SIGREG_QT_EXPORT detail::Node *makeStateNode(HandlerState *state);

/// Connects the context's destruction to the removal of `state->id` from
/// the registry behind `anchor`, and finds the context thread's mailbox.
SIGREG_QT_EXPORT void bindContext(HandlerState *state, QObject *context, Qt::ConnectionType type,
                                  const std::shared_ptr<detail::Anchor> &anchor);

// ---------------------------------------------------------------- notify frames
enum class Mode : std::uint8_t { Notify, Async, Sequential };

struct AsyncJoin;
struct SequentialRun;

/// Per-notify context, found by the handlers of that notify through a
/// thread-local pointer (nested notifies stack their frames).
struct SIGREG_QT_EXPORT Frame {
    const void *event = nullptr;
    MakeParcelFn makeParcel = nullptr;
    const std::type_info *eventType = nullptr;
    Parcel *parcel = nullptr; // made on first need; one reference owned here
    Mode mode = Mode::Notify;
    /// Mode::Sequential with a context: the context, and the mailbox of its
    /// thread, taken before the walk (a handler may destroy or move the
    /// context, or end and delete its thread). Null mailbox: no context.
    QPointer<QObject> stepContext;
    std::shared_ptr<Mailbox> stepBox;
    std::shared_ptr<AsyncJoin> join;      // Mode::Async, made on the first async handler
    std::shared_ptr<SequentialRun> run;   // Mode::Sequential, made on the first async handler
    Frame *prev = nullptr;

    Frame(const void *e, MakeParcelFn make, const std::type_info *type, Mode m) noexcept;
    ~Frame();
    Frame(const Frame &) = delete;
    Frame &operator=(const Frame &) = delete;

    /// The shared copy of the event (made on first call).
    Parcel *sharedParcel();
    /// Makes a Sequential frame start its steps in `context`'s thread (live,
    /// non-null: the caller of notifySequential() vouches for it).
    void setStepContext(QObject *context);
    /// Ends an Async or Sequential frame: the future of its handlers.
    QFuture<void> finish();
};

} // namespace sigreg::qtdetail
