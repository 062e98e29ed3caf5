// SPDX-License-Identifier: MIT
// Sigreg — sigreg::Bus, a typed event bus: one channel per event type,
// created on demand; push handlers and pull receivers.
//
// ============================================================================
// Design
// ============================================================================
//
// Any code can define an event type and emit or subscribe to it: the bus
// knows no types in advance. Each type gets a channel the first time anyone
// registers a handler or subscribes:
//
//   * push handlers: a sigreg::Registry<E> (priorities, guards, exception
//     isolation, lock-free notify: everything the registry guarantees);
//   * pull receivers: one bounded ring per receiver (detail/bus_ring.h),
//     holding the last `capacity` events; a receiver that falls further
//     behind is told how many it missed ("lagged by N") and continues with
//     the oldest event still held.
//
// emit(e) finds the channel without a lock and without allocating: every
// event type has a process-wide small index (below), and the bus keeps an
// array of channels by index. Receivers get their copy first, then the
// handlers run: a handler that emits a second event of the same type cannot
// put it ahead of the first in any receiver.
//
// The common case skips even that: for the first kDirectTypes type indexes
// the bus holds a direct slot that mirrors the current handler list of the
// type's channel, with a flag bit set while the channel has receivers. An
// emit of such a type with no receiver reads the slot and walks the
// handlers as Registry::notify() does, protecting the list through the slot
// (docs/ARCHITECTURE.md has the argument); any other case goes through the
// channel, out of line.
//
// Type identity across shared libraries
// -------------------------------------
// A type's index is interned by its mangled name (std::type_info::name()) in
// the Sigreg core library, one copy per process, so an application and a
// plugin agree on it even when their copies of the type's std::type_info
// differ (hidden visibility, RTLD_LOCAL). Types that have no linkage outside
// their translation unit (anonymous namespaces, local classes) are keyed by
// their std::type_info object instead, so two of them never share a channel.
// GCC marks such names; for clang, which does not, the name itself is read
// (a local class of a `static` function, clang's unnamed "$_0" types), and
// CI builds a two-file test of that with clang. A local class of a function
// with external linkage is one type program-wide, but the compilers' names
// may still mark it local (GCC does; clang does for one inside a lambda):
// it is then keyed by its std::type_info, safe but not shared between a
// plugin and the application. Use namespace-scope types for events that
// cross shared objects.
//
// Channels are never reclaimed
// ----------------------------
// A channel stays for the bus's lifetime once created, even when its last
// handler and receiver are gone. That is what keeps emit free of hazard
// pointers and reference counts for the channel itself. Memory stays
// bounded: one channel per event type the program uses (a number fixed when
// it is compiled), 896 bytes each on x86-64 (sizeof(detail::Channel<E>))
// plus the type's name; what can be large (rings, handlers)
// goes with its receiver or handler. typeCount() therefore counts the types
// that have had a channel.
//
// Ordering and delivery
// ---------------------
// * A receiver sees the events emitted after subscribe() returned; events
//   emitted concurrently with subscribe() may or may not reach it.
// * Each receiver gets each event at most once, and events of one producing
//   thread in the order they were emitted. Two receivers may see two
//   producers' events interleaved differently.
// * For each receiver, events received + events reported missed = events
//   emitted while it was subscribed (checked by the stress tests).
// * A producer never blocks on a slow receiver: it overwrites the oldest
//   unread event. It may wait (spinning, then yielding) for another producer
//   that took the same slot one lap earlier and has not finished copying
//   into it — only possible when `capacity` emits overtake one copy.
//
// Not covered: events are matched by exact type (emitting a Derived does not
// reach Base's subscribers). A channel runs code of the module that created
// it (the first to call on<E>() or subscribe<E>(), or to register a
// QtBusReceiver<E>): such a module must stay loaded while the bus exists.
// So must a module that registered handlers or receivers, even once they are
// removed: a removed handler may be destroyed later (see Registry::remove()),
// and that runs the module's code.
// The interning needs one copy of Sigreg per process: modules in separate
// shared objects must share one shared sigreg_core (the default when the
// QML module is built, or with BUILD_SHARED_LIBS), not each link a static one.
// ============================================================================
#pragma once

/// @file
/// sigreg::Bus, the typed event bus: one channel per event type, created on
/// demand, with push handlers and pull receivers (sigreg::Receiver). Part of
/// Sigreg::Core (no Qt).
///
/// The comment at the top of this header (see its source) states the
/// design and its guarantees: type identity across shared libraries, why
/// channels are never reclaimed, ordering and delivery, and what is not
/// covered.

#include <sigreg/detail/bus_ring.h>
#include <sigreg/guard.h>
#include <sigreg/handler_id.h>
#include <sigreg/registry.h>
#include <sigreg/sigreg_export.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>

// Qt defines `emit` (and `signals`, `slots`) as macros unless its keywords
// are switched off; this header must compile after any Qt header all the same.
#if defined(emit)
#pragma push_macro("emit")
#undef emit
#define SIGREG_BUS_RESTORE_EMIT
#endif

namespace sigreg {

class Bus;

/// Built-in lifecycle event: the process is shutting down. Emitted once per
/// bus by Bus::initiateShutdown(), and, for a bus attached to the Qt
/// application (sigreg::attachToApplication()), when the application is
/// about to quit.
struct ShutdownInitiated {
};

/// What a bus's error handler receives: a handler's failure, with the event
/// type it was handling.
struct BusFailure : HandlerFailure {
    /// The event type, demangled where the platform allows (e.g. "app::CertReloaded").
    std::string_view eventType;
    /// True if the failure was copying the event into a receiver (the
    /// receiver then reports the event as missed); false for a push handler.
    bool receiver = false;
};

/// The outcome of a receive.
enum class ReceiveStatus : std::uint8_t {
    Received, ///< an event: ReceiveResult::value()
    Lagged,   ///< events were missed: ReceiveResult::lagged() tells how many
    Empty,    ///< tryReceive(): nothing to take now
    TimedOut, ///< receiveFor()/receiveUntil(): nothing arrived in time
    Closed,   ///< unsubscribed, or the bus is gone, and nothing is left to take
};

/// Readable name of a status ("Received", "Lagged", ...).
[[nodiscard]] constexpr std::string_view toString(ReceiveStatus s) noexcept
{
    switch (s) {
    case ReceiveStatus::Received: return "Received";
    case ReceiveStatus::Lagged: return "Lagged";
    case ReceiveStatus::Empty: return "Empty";
    case ReceiveStatus::TimedOut: return "TimedOut";
    case ReceiveStatus::Closed: return "Closed";
    }
    return "?";
}

/// Result of Receiver<E>'s receive functions: an event, or why there is none.
template <class E>
class [[nodiscard]] ReceiveResult {
public:
    /// What the receive found: an event, a lag report, or why there is nothing.
    [[nodiscard]] ReceiveStatus status() const noexcept { return m_status; }
    /// True when status() is Received, i.e. the result holds an event.
    [[nodiscard]] bool hasValue() const noexcept { return m_status == ReceiveStatus::Received; }
    /// As hasValue().
    explicit operator bool() const noexcept { return hasValue(); }

    /// @{
    /// The event. Throws std::logic_error when status() is not Received.
    /// The rvalue overload moves the event out of the result.
    [[nodiscard]] E &value() & { return checked(); }
    [[nodiscard]] const E &value() const & { return const_cast<ReceiveResult *>(this)->checked(); }
    [[nodiscard]] E &&value() && { return std::move(checked()); }
    /// @}
    /// @{
    /// The event, unchecked: status() must be Received.
    E &operator*() noexcept { return *m_value; }
    const E &operator*() const noexcept { return *m_value; }
    E *operator->() noexcept { return &*m_value; }
    const E *operator->() const noexcept { return &*m_value; }
    /// @}

    /// Number of events missed, when status() is Lagged; 0 otherwise.
    [[nodiscard]] std::uint64_t lagged() const noexcept { return m_lagged; }

private:
    template <class>
    friend class Receiver;

    static ReceiveResult lagged(std::uint64_t missed) noexcept
    {
        ReceiveResult r(ReceiveStatus::Lagged);
        r.m_lagged = missed;
        return r;
    }
    static ReceiveResult of(ReceiveStatus status) noexcept { return ReceiveResult(status); }

    explicit ReceiveResult(ReceiveStatus s) noexcept : m_status(s) {}
    /// Moves the event out of a receiver's ring, then frees its slot.
    explicit ReceiveResult(typename detail::Ring<E>::Head &head)
        : m_value(std::in_place, std::move(head.value())), m_status(ReceiveStatus::Received)
    {
        head.release();
    }

    E &checked()
    {
        if (!hasValue()) {
            throw std::logic_error(std::string("sigreg::ReceiveResult::value(): no event (status ")
                                   + std::string(toString(m_status)) + ")");
        }
        return *m_value;
    }

    std::optional<E> m_value;
    ReceiveStatus m_status;
    std::uint64_t m_lagged = 0;
};

namespace detail {

/// Returned by internEventType() when it could not allocate: no channel can
/// exist for such a type yet.
inline constexpr std::uint32_t kNoEventType = std::numeric_limits<std::uint32_t>::max();

/// The process-wide index of an event type (see "Type identity" above).
/// Thread-safe; allocates only the first time a type is seen.
SIGREG_CORE_EXPORT std::uint32_t internEventType(const std::type_info &type) noexcept;

/// Whether an Itanium-mangled type name (as type_info::name() gives it)
/// spells a type that only one translation unit can see, for compilers that
/// do not mark such names themselves (GCC prefixes them with '*'; clang
/// does not): a local type of a function with internal linkage, or one of
/// clang's unnamed types ("$_0"). Another file may then use the same name
/// for another type. Exposed for tests.
SIGREG_CORE_EXPORT bool spellsTranslationUnitLocalType(const char *mangled) noexcept;

/// Caches a type's index; one cache per module at worst, all holding the same value.
template <class E>
struct EventTypeIndex {
    /// The index, or kNoEventType while this module has not looked it up.
    /// Emit reads it as it is: an unknown index is larger than any table, so
    /// the table's bounds check sends it to the slow path with no test of
    /// its own.
    static inline std::atomic<std::uint32_t> cached{kNoEventType};

    SIGREG_ALWAYS_INLINE static std::uint32_t get() noexcept
    {
        const std::uint32_t c = cached.load(std::memory_order_relaxed);
        if (SIGREG_LIKELY(c != kNoEventType))
            return c;
        return lookup();
    }
    SIGREG_NOINLINE static std::uint32_t lookup() noexcept
    {
        const std::uint32_t i = internEventType(typeid(E));
        if (i != kNoEventType)
            cached.store(i, std::memory_order_relaxed);
        return i;
    }
};

/// What a channel of any type has: the receivers (one handler each, copying
/// into its ring) live in a type-erased registry engine, so their walk is
/// compiled once, out of line; only the push handlers are typed.
/// Created by the bus (installChannel) and destroyed with it.
struct SIGREG_CORE_EXPORT ChannelBase {
    using DestroyFn = void (*)(ChannelBase *) noexcept;
    ChannelBase(Bus &b, DestroyFn d);
    ChannelBase(const ChannelBase &) = delete;
    ChannelBase &operator=(const ChannelBase &) = delete;

    /// Copies `event` into every receiver. Out of line: it keeps emit's
    /// inlined code to the handlers' walk.
    SIGREG_NOINLINE void notifyReceivers(const void *event) const noexcept;

    /// True while any receiver is subscribed (read by emit's channel path).
    [[nodiscard]] bool hasReceivers() const noexcept { return receivers.size() != 0; }

    /// The receivers' observer (for a channel with a direct slot): sets the
    /// slot's divert bit while any receiver is subscribed, so that emit
    /// takes the path that copies into them.
    static void receiversChanged(void *channel) noexcept;

    Bus *bus;
    DestroyFn destroy;
    std::string typeName; // set by the bus when it installs the channel
    /// The push handlers' engine (set by Channel<E>).
    RegistryCore *handlersCore = nullptr;
    /// The bus's direct slot for this type, or null (see Bus::kDirectTypes).
    std::atomic<std::uintptr_t> *direct = nullptr;
    std::mutex directMutex; // serialises receiversChanged()
    RegistryCore receivers;
};

/// A mirror word whose divert bit is always set: what a Sender reads when its
/// type has no direct slot (see Bus::kDirectTypes). Never written.
inline const std::atomic<std::uintptr_t> g_diverted{RegistryCore::kMirrorDivert};

/// The handler a receiver registers in its channel: copies each event into the ring.
template <class E>
struct RingPusher {
    std::shared_ptr<Ring<E>> ring;

    explicit RingPusher(std::shared_ptr<Ring<E>> r) noexcept : ring(std::move(r)) {}
    RingPusher(RingPusher &&) noexcept = default;
    RingPusher &operator=(RingPusher &&) = delete;
    /// The handler is gone (unsubscribed, or the bus destroyed): nothing
    /// more arrives, so a waiting receiver wakes and reports Closed.
    ~RingPusher()
    {
        if (ring)
            ring->close();
    }
    void operator()(const E &event) const { ring->push(event); }
};

struct DeduceEvent {
};

// The event type of a handler, from its parameter: f(const E&), or f(E).
template <class M>
struct MemberCallArg {
    using type = void;
};
#define SIGREG_MEMBER_CALL_ARG(QUALS)                                                                       \
    template <class C, class R, class A>                                                                     \
    struct MemberCallArg<R (C::*)(A) QUALS> {                                                                \
        using type = A;                                                                                      \
    };
SIGREG_MEMBER_CALL_ARG()
SIGREG_MEMBER_CALL_ARG(const)
SIGREG_MEMBER_CALL_ARG(noexcept)
SIGREG_MEMBER_CALL_ARG(const noexcept)
SIGREG_MEMBER_CALL_ARG(&)
SIGREG_MEMBER_CALL_ARG(const &)
SIGREG_MEMBER_CALL_ARG(& noexcept)
SIGREG_MEMBER_CALL_ARG(const & noexcept)
#undef SIGREG_MEMBER_CALL_ARG

template <class F, class = void>
struct CallArg {
    using type = void;
};
template <class R, class A>
struct CallArg<R (*)(A), void> {
    using type = A;
};
template <class R, class A>
struct CallArg<R (*)(A) noexcept, void> {
    using type = A;
};
template <class F>
struct CallArg<F, std::void_t<decltype(&F::operator())>> : MemberCallArg<decltype(&F::operator())> {
};

template <class E, class F>
struct BusEventOf {
    using type = E;
};
template <class F>
struct BusEventOf<DeduceEvent, F> {
    using type = std::remove_cvref_t<typename CallArg<std::decay_t<F>>::type>;
    static_assert(!std::is_void_v<type>,
                  "sigreg::Bus::on: cannot tell the event type from this handler (a generic lambda, an overloaded "
                  "call operator, or not one parameter); name it: bus.on<Event>(handler)");
};

} // namespace detail

/// A pull subscription to the events of type `E` on a bus.
///
/// Obtained from Bus::subscribe<E>(). Holds the last capacity() events it has
/// not taken yet. Move-only; destroying it unsubscribes. A receiver may
/// outlive its bus: it then hands out what it still holds and reports Closed.
///
/// Safety: one thread at a time takes events from a receiver (it is a value,
/// like a std::vector); any number of threads may emit into it meanwhile.
template <class E>
class Receiver {
public:
    /// A receiver subscribed to nothing: every receive reports Closed.
    Receiver() noexcept = default;
    /// Takes the other receiver's subscription and held events; the other
    /// is left subscribed to nothing.
    Receiver(Receiver &&) noexcept = default;
    /// Unsubscribes this receiver (as unsubscribe()), then takes `other`'s subscription.
    Receiver &operator=(Receiver &&) noexcept = default;
    Receiver(const Receiver &) = delete;
    Receiver &operator=(const Receiver &) = delete;
    ~Receiver() = default; // the guard (declared last) unsubscribes first

    /// Takes the next event without waiting. Received: an event; Lagged:
    /// lagged() events were lost (overrun, or a copy that threw), and the
    /// next receive continues with the oldest event still held; Empty:
    /// nothing now; Closed: unsubscribed and drained.
    /// Throws what E's move constructor throws (the event stays for the next call).
    ReceiveResult<E> tryReceive() { return tryReceiveImpl(nullptr); }

    /// Waits for the next event, a lag report or the closure (never Empty or TimedOut).
    ReceiveResult<E> receive() { return receiveImpl(nullptr); }

    /// As receive(), giving up after `timeout` (then TimedOut). A zero or
    /// negative timeout only looks. A timeout beyond maxTimeout() (about a
    /// century, e.g. `duration::max()`) waits as receive() does: no deadline
    /// is computed that the clock could not represent (nor for a NaN).
    template <class Rep, class Period>
    ReceiveResult<E> receiveFor(const std::chrono::duration<Rep, Period> &timeout)
    {
        using Steady = std::chrono::steady_clock;
        const auto now = Steady::now();
        if (timeout <= timeout.zero())
            return receiveImpl(&now); // looks once, then TimedOut
        // Compared in floating point: converting `timeout` to the clock's
        // unit first could overflow (hours::max() in nanoseconds).
        if (!(std::chrono::duration<double>(timeout) < maxTimeout()))
            return receiveImpl(nullptr);
        const auto deadline = now + std::chrono::ceil<Steady::duration>(timeout);
        return receiveImpl(&deadline);
    }

    /// As receive(), giving up at `deadline` (then TimedOut), a time point of
    /// any clock; one further than maxTimeout() away waits as receive().
    template <class Clock, class Duration>
    ReceiveResult<E> receiveUntil(const std::chrono::time_point<Clock, Duration> &deadline)
    {
        // The distance in floating point first: comparing or subtracting in
        // the common (finer) unit overflows for e.g. time_point::max().
        const auto now = Clock::now();
        const std::chrono::duration<double> left = std::chrono::duration<double>(deadline.time_since_epoch())
            - std::chrono::duration<double>(now.time_since_epoch());
        if (left <= std::chrono::duration<double>::zero()) {
            const auto past = std::chrono::steady_clock::now();
            return receiveImpl(&past); // looks once, then TimedOut
        }
        if (!(left < maxTimeout()))
            return receiveImpl(nullptr);
        if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>
                      && std::is_same_v<Duration, std::chrono::steady_clock::duration>) {
            return receiveImpl(&deadline);
        } else {
            return receiveFor(deadline - now);
        }
    }

    /// The longest wait receiveFor()/receiveUntil() time out after; longer
    /// ones wait without a deadline.
    static constexpr std::chrono::duration<double> maxTimeout() noexcept
    {
        return std::chrono::hours(24 * 365 * 100);
    }

    /// Stops receiving: no new events arrive (waiting, as Registry::remove()
    /// does, for emits copying into it on other threads). Events already held
    /// can still be taken; then receives report Closed.
    void unsubscribe() noexcept
    {
        m_guard.reset();
        if (m_ring)
            m_ring->close();
    }

    /// True until unsubscribe(), or until the bus is destroyed.
    [[nodiscard]] bool isSubscribed() const noexcept { return m_ring && !m_ring->isClosed(); }
    /// The most events it holds (0 for a default-constructed receiver).
    [[nodiscard]] std::size_t capacity() const noexcept { return m_ring ? m_ring->capacity() : 0; }
    /// Events it could take now or soon (at most capacity()).
    [[nodiscard]] std::size_t pending() const noexcept { return m_ring ? m_ring->pending() : 0; }
    /// Events it missed since it subscribed (the sum of the Lagged reports so far).
    [[nodiscard]] std::uint64_t missedCount() const noexcept { return m_ring ? m_ring->missedTotal() : 0; }

private:
    friend class Bus;
    template <class>
    friend class QtBusReceiver;

    Receiver(std::shared_ptr<detail::Ring<E>> ring, Guard guard) noexcept
        : m_ring(std::move(ring)), m_guard(std::move(guard))
    {
    }

    /// tryReceive(). With `moveError`, an event whose move throws is dropped
    /// instead of left for the next call: reported as one missed event
    /// (Lagged), its exception stored there (for QtBusReceiver, which would
    /// otherwise retry it on every turn of its event loop).
    ReceiveResult<E> tryReceiveImpl(std::exception_ptr *moveError)
    {
        if (!m_ring)
            return ReceiveResult<E>::of(ReceiveStatus::Closed);
        for (;;) {
            switch (m_ring->peek()) {
            case detail::RingBase::Peek::Ready: {
                typename detail::Ring<E>::Head head(*m_ring);
                if (!head.claimed())
                    continue; // overwritten meanwhile
                if (head.missed()) {
                    head.release();
                    return ReceiveResult<E>::lagged(1);
                }
                // Moved once, straight into the caller's result; the slot is
                // freed only then (if the move throws, the event stays).
                try {
                    return ReceiveResult<E>(head);
                } catch (...) {
                    if (!moveError)
                        throw; // `head` puts the event back
                    *moveError = detail::currentException();
                    head.discard();
                    return ReceiveResult<E>::lagged(1);
                }
            }
            case detail::RingBase::Peek::Overwritten:
                if (const std::uint64_t skipped = m_ring->skipOverwritten())
                    return ReceiveResult<E>::lagged(skipped);
                continue;
            case detail::RingBase::Peek::NotReady:
                if (!m_ring->isClosed())
                    return ReceiveResult<E>::of(ReceiveStatus::Empty);
                // Closed: every event was written before the closure; look once more.
                if (m_ring->peek() != detail::RingBase::Peek::NotReady)
                    continue;
                return ReceiveResult<E>::of(ReceiveStatus::Closed);
            }
        }
    }

    ReceiveResult<E> receiveImpl(const std::chrono::steady_clock::time_point *deadline)
    {
        // Returns tryReceive()'s result itself (not a local copy of it): moving
        // an event after tryReceive() freed its slot could throw and lose it.
        // Once peek() is not NotReady, tryReceive() does not report Empty.
        for (;;) {
            if (!m_ring || m_ring->peek() != detail::RingBase::Peek::NotReady || m_ring->isClosed())
                return tryReceive();
            if (!m_ring->waitReady(deadline))
                return ReceiveResult<E>::of(ReceiveStatus::TimedOut);
        }
    }

    std::shared_ptr<detail::Ring<E>> m_ring;
    Guard m_guard;
};

namespace detail {
template <class E>
struct Channel;
class BusLink;

/// The bus's channels, by event type index: a header and the entries right
/// after it (one load less on emit's path). Grows by replacement; replaced
/// tables stay until the bus goes (emits may still be reading them).
struct ChannelTable {
    std::uint32_t size;
    ChannelTable *older;

    std::atomic<ChannelBase *> *entries() noexcept
    {
        return std::launder(reinterpret_cast<std::atomic<ChannelBase *> *>(this + 1));
    }
    const std::atomic<ChannelBase *> *entries() const noexcept
    {
        return std::launder(reinterpret_cast<const std::atomic<ChannelBase *> *>(this + 1));
    }
};
static_assert(sizeof(ChannelTable) % alignof(std::atomic<ChannelBase *>) == 0);
} // namespace detail

/// Emits events of type E on one bus without looking the channel up: for a
/// hot path that emits one type. Obtained from Bus::sender<E>() (which
/// creates the channel); usable while the bus exists. Copyable; a
/// default-constructed sender emits nothing.
template <class E>
class Sender {
public:
    Sender() noexcept = default;

    /// As Bus::emit(event).
    SIGREG_ALWAYS_INLINE void emit(const E &event) const noexcept { publish(event); }
    /// As Bus::publish(event) (emit() under a name Qt's `emit` macro leaves alone).
    SIGREG_ALWAYS_INLINE void publish(const E &event) const noexcept
    {
        // As Bus::publish(), with the slot already found.
        if (SIGREG_LIKELY(detail::RegistryCore::notifyMirrored(*m_direct, std::addressof(event))))
            return;
        publishViaChannel(event);
    }
    /// False for a default-constructed sender.
    explicit operator bool() const noexcept { return m_channel != nullptr; }

private:
    friend class Bus;
    explicit Sender(const detail::Channel<E> *channel) noexcept
        : m_channel(channel), m_direct(channel->direct ? channel->direct : &detail::g_diverted)
    {
    }
    SIGREG_NOINLINE void publishViaChannel(const E &event) const noexcept
    {
        if (m_channel)
            m_channel->deliver(event);
    }

    const detail::Channel<E> *m_channel = nullptr;
    /// The type's direct slot, or a word that always diverts (a type past
    /// the slots, or no channel).
    const std::atomic<std::uintptr_t> *m_direct = &detail::g_diverted;
};

/// A typed event bus: one channel per event type, created on demand.
///
/// Safety: every member function may be called concurrently from any number
/// of threads, and from inside handlers, except the destructor, which must
/// not run concurrently with any other use or inside one of its handlers.
class SIGREG_CORE_EXPORT Bus {
public:
    /// The receiver capacity of a bus constructed without one.
    static constexpr std::size_t kDefaultCapacity = 64;
    /// The largest receiver capacity accepted.
    static constexpr std::size_t kMaxCapacity = std::size_t(1) << 30;
    /// Event types whose process-wide index is below this have a direct
    /// slot in every bus: their emit reads the handlers from the slot,
    /// without the channel lookup. Later types (a process that uses more
    /// event types than this) take the channel lookup on every emit; they
    /// work the same, slightly slower.
    static constexpr std::uint32_t kDirectTypes = 64;

    /// A bus whose receivers hold `defaultCapacity` events unless
    /// subscribe() says otherwise.
    /// Throws: std::invalid_argument for 0; std::length_error above kMaxCapacity.
    explicit Bus(std::size_t defaultCapacity = kDefaultCapacity);
    /// Destroys every channel: handlers are destroyed, receivers report
    /// Closed once drained, guards become inert.
    ~Bus();
    Bus(const Bus &) = delete;
    Bus &operator=(const Bus &) = delete;

    // --- push handlers -----------------------------------------------------

    /// Effect: registers `f`, called as f(const E&) for every event of type
    /// E emitted from now on, with `priority` (higher first; ties in
    /// registration order). E may be left out when `f` takes one parameter
    /// of a non-template type: bus.on([](const Ping &) {...}).
    /// Returns its id, for remove<E>(). Throws as Registry<E>::add().
    template <class E = detail::DeduceEvent, class F>
    HandlerId on(int priority, F &&f)
    {
        using Event = typename detail::BusEventOf<E, F>::type;
        return channel<Event>().handlers.add(priority, std::forward<F>(f));
    }
    /// As on(0, f).
    template <class E = detail::DeduceEvent, class F>
    HandlerId on(F &&f)
    {
        return on<E>(0, std::forward<F>(f));
    }
    /// As on(), returning a guard that removes the handler when destroyed.
    template <class E = detail::DeduceEvent, class F>
    [[nodiscard]] Guard onGuarded(int priority, F &&f)
    {
        using Event = typename detail::BusEventOf<E, F>::type;
        return channel<Event>().handlers.addGuarded(priority, std::forward<F>(f));
    }
    /// As onGuarded(0, f).
    template <class E = detail::DeduceEvent, class F>
    [[nodiscard]] Guard onGuarded(F &&f)
    {
        return onGuarded<E>(0, std::forward<F>(f));
    }
    /// Effect: removes handler `id` of type E, as Registry<E>::remove().
    template <class E>
    bool remove(HandlerId id)
    {
        detail::Channel<E> *ch = find<E>();
        return ch && ch->handlers.remove(id);
    }

    // --- emitting -----------------------------------------------------------

    /// Effect: copies `event` into every receiver of type E, then calls
    /// every handler of type E, in priority order, on this thread. Nothing
    /// happens when nobody ever listened to E.
    /// Lock-free; allocates nothing, except once per process for a type it
    /// has never seen (its index), and, as Registry::notify(), a thread's
    /// first emit (its hazard record, reused after the thread ends) and its
    /// first nesting beyond eight levels. If the index cannot be made, the
    /// event is dropped (as for a type nobody listens to); if the record or
    /// the nesting chunk cannot, the noexcept boundary calls
    /// std::terminate(): emit once on each thread early where that matters. Handlers' exceptions go to the
    /// error handler. E is the static type of the argument
    /// (emit<Base>(derived) to choose another).
    template <class E>
    SIGREG_ALWAYS_INLINE void emit(const E &event) const noexcept
    {
        publish(event);
    }
    /// The same as emit(), under a name Qt's `emit` macro leaves alone: in
    /// code compiled with Qt's keywords on (the default), that macro expands
    /// to nothing and `bus.emit(e)` does not compile.
    template <class E>
    SIGREG_ALWAYS_INLINE void publish(const E &event) const noexcept
    {
        // The common case (a type with a direct slot, no receiver, the
        // outermost read on a thread that has read before) walks the
        // handlers straight from the slot; everything else goes through the
        // channel, out of line.
        const std::uint32_t index = detail::EventTypeIndex<E>::cached.load(std::memory_order_relaxed);
        if (SIGREG_LIKELY(index < kDirectTypes)
            && SIGREG_LIKELY(detail::RegistryCore::notifyMirrored(m_direct[index], std::addressof(event))))
            return;
        publishViaChannel(event);
    }

    /// A handle that emits events of type E on this bus without the lookup
    /// (see Sender). Creates E's channel. Throws: std::bad_alloc.
    template <class E>
    [[nodiscard]] Sender<E> sender()
    {
        return Sender<E>(&channel<E>());
    }

    // --- pull receivers ------------------------------------------------------

    /// A receiver of the events of type E emitted from now on, holding up to
    /// `capacity` of them (default: the bus's).
    /// Throws: std::invalid_argument for capacity 0; std::length_error
    /// above kMaxCapacity; std::bad_alloc.
    template <class E>
    [[nodiscard]] Receiver<E> subscribe()
    {
        return subscribe<E>(m_defaultCapacity);
    }
    /// As subscribe<E>(), holding up to `capacity` events.
    template <class E>
    [[nodiscard]] Receiver<E> subscribe(std::size_t capacity)
    {
        static_assert(std::is_copy_constructible_v<E>,
                      "sigreg::Bus::subscribe<E>: a receiver keeps its own copy of each event, so E must be "
                      "copy-constructible. Emit a std::shared_ptr<const E> to share one object instead; push "
                      "handlers (Bus::on) need no copy.");
        static_assert(std::is_nothrow_destructible_v<E>, "sigreg::Bus::subscribe<E>: E's destructor must not throw");
        checkCapacity(capacity);
        auto ring = std::make_shared<detail::Ring<E>>(capacity);
        detail::RegistryCore &receivers = channel<E>().receivers;
        auto anchor = receivers.anchor();
        const HandlerId id = receivers.add(detail::makeNode<E>(detail::RingPusher<E>(ring)), 0);
        return Receiver<E>(std::move(ring), Guard(std::move(anchor), id));
    }

    // --- lifecycle ---------------------------------------------------------------

    /// Effect: emits ShutdownInitiated, the first time only. Returns true if
    /// this call emitted it.
    bool initiateShutdown() noexcept;
    /// True once initiateShutdown() was called.
    [[nodiscard]] bool isShuttingDown() const noexcept { return m_shuttingDown.load(std::memory_order_acquire); }

    // --- failures ------------------------------------------------------------------

    /// Effect: installs `f`, called as f(const BusFailure&) on the emitting
    /// thread when a handler throws or a receiver's copy of an event throws.
    /// If `f` throws, the failure is counted in unhandledFailureCount() only.
    template <class F>
    void setErrorHandler(F &&f)
    {
        using D = std::decay_t<F>;
        static_assert(std::is_invocable_v<D &, const BusFailure &>,
                      "sigreg::Bus::setErrorHandler: the callback must be callable as f(const sigreg::BusFailure&)");
        detail::checkNotEmpty(f);
        setErrorFunction(std::make_shared<const ErrorFunction>(std::forward<F>(f)));
    }
    /// Effect: removes the error handler; failures are then only counted.
    void resetErrorHandler() { setErrorFunction(nullptr); }
    /// Failures (of handlers and receivers' copies) since construction.
    [[nodiscard]] std::uint64_t failureCount() const noexcept { return m_failures.load(std::memory_order_relaxed); }
    /// Failures that reached no error handler (none installed, or it threw).
    [[nodiscard]] std::uint64_t unhandledFailureCount() const noexcept
    {
        return m_unhandled.load(std::memory_order_relaxed);
    }

    // --- introspection ---------------------------------------------------------------

    /// Number of event types that have a channel (see "Channels are never reclaimed").
    [[nodiscard]] std::size_t typeCount() const noexcept { return m_typeCount.load(std::memory_order_acquire); }
    /// True if E has a channel.
    template <class E>
    [[nodiscard]] bool hasChannel() const noexcept
    {
        return find<E>() != nullptr;
    }
    /// Handlers of type E registered now.
    template <class E>
    [[nodiscard]] std::size_t handlerCount() const noexcept
    {
        const detail::Channel<E> *ch = find<E>();
        return ch ? ch->handlers.size() : 0;
    }
    /// Receivers of type E subscribed now.
    template <class E>
    [[nodiscard]] std::size_t receiverCount() const noexcept
    {
        const detail::Channel<E> *ch = find<E>();
        return ch ? ch->receivers.size() : 0;
    }
    /// The default receiver capacity.
    [[nodiscard]] std::size_t defaultCapacity() const noexcept { return m_defaultCapacity; }

    /// For layers above the core (the Qt attachment): a handle that reaches
    /// this bus while it exists.
    [[nodiscard]] std::shared_ptr<detail::BusLink> link() const noexcept { return m_link; }

private:
    template <class E>
    friend struct detail::Channel;
    friend struct detail::ChannelBase;
    using ErrorFunction = std::function<void(const BusFailure &)>;
    using MakeChannelFn = detail::ChannelBase *(*)(Bus &);

    using Table = detail::ChannelTable;

    /// publish() through the channel: receivers first, then the handlers.
    template <class E>
    SIGREG_NOINLINE void publishViaChannel(const E &event) const noexcept
    {
        if (const detail::Channel<E> *ch = find<E>())
            ch->deliver(event);
    }

    template <class E>
    SIGREG_ALWAYS_INLINE detail::Channel<E> *find() const noexcept
    {
        const std::uint32_t index = detail::EventTypeIndex<E>::cached.load(std::memory_order_relaxed);
        const Table *t = m_table.load(std::memory_order_acquire);
        if (SIGREG_UNLIKELY(index >= t->size)) // also an index this module has not looked up yet
            return findUncached<E>(t);
        return static_cast<detail::Channel<E> *>(t->entries()[index].load(std::memory_order_acquire));
    }
    /// find() when the cached index is beyond `t`: not looked up yet in this
    /// module (done now), or no channel of E on this bus.
    template <class E>
    SIGREG_NOINLINE static detail::Channel<E> *findUncached(const Table *t) noexcept
    {
        const std::uint32_t index = detail::EventTypeIndex<E>::get();
        if (index >= t->size) // also kNoEventType: the lookup could not allocate
            return nullptr;
        return static_cast<detail::Channel<E> *>(t->entries()[index].load(std::memory_order_acquire));
    }
    template <class E>
    detail::Channel<E> &channel()
    {
        if (detail::Channel<E> *ch = find<E>())
            return *ch;
        return *static_cast<detail::Channel<E> *>(installChannel(typeid(E), &makeChannel<E>));
    }
    template <class E>
    static detail::ChannelBase *makeChannel(Bus &bus);

    detail::ChannelBase *installChannel(const std::type_info &type, MakeChannelFn make);
    void checkCapacity(std::size_t capacity) const;
    void setErrorFunction(std::shared_ptr<const ErrorFunction> f);
    void reportFailure(const detail::ChannelBase &channel, const HandlerFailure &failure, bool receiver) noexcept;

    // Read by every emit; written when a type gets its first channel.
    alignas(64) std::atomic<Table *> m_table;
    std::size_t m_defaultCapacity;

    // The direct slots, by event type index (see kDirectTypes): each follows
    // the current handler block of its type's channel (the shared empty
    // block while there is none), with the divert bit set while the channel
    // has receivers. Written on publication and when the receivers come
    // and go, read by every emit.
    alignas(64) std::atomic<std::uintptr_t> m_direct[kDirectTypes];

    alignas(64) mutable std::mutex m_mutex; // channel creation
    std::atomic<std::size_t> m_typeCount{0};
    std::atomic<bool> m_shuttingDown{false};
    std::shared_ptr<detail::BusLink> m_link;
    mutable std::mutex m_errorMutex;
    std::shared_ptr<const ErrorFunction> m_errorFunction;
    std::atomic<std::uint64_t> m_failures{0};
    std::atomic<std::uint64_t> m_unhandled{0};
};

namespace detail {

/// A channel: the receivers (in the base) and the push handlers of one event type.
template <class E>
struct Channel final : ChannelBase {
    Registry<E> handlers;

    explicit Channel(Bus &b) : ChannelBase(b, &destroyChannel)
    {
        handlersCore = &CoreAccess::of(handlers);
        handlers.setErrorHandler([this](const HandlerFailure &f) { bus->reportFailure(*this, f, false); });
    }
    /// Receivers first, then the handlers (see "Ordering and delivery").
    SIGREG_ALWAYS_INLINE void deliver(const E &event) const noexcept
    {
        if (hasReceivers())
            notifyReceivers(std::addressof(event));
        handlers.notify(event);
    }
    static void destroyChannel(ChannelBase *c) noexcept { delete static_cast<Channel *>(c); }
};

/// Reaches a bus while it exists (for the Qt attachment).
class SIGREG_CORE_EXPORT BusLink {
public:
    explicit BusLink(Bus *bus) noexcept : m_bus(bus) {}
    /// Calls f(bus) if the bus still exists; it is not destroyed meanwhile.
    /// Returns false if it is gone. `f` must not destroy the bus.
    template <class F>
    bool with(F &&f)
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        Bus *bus = m_bus.load(std::memory_order_relaxed);
        if (!bus)
            return false;
        std::forward<F>(f)(*bus);
        return true;
    }
    /// Called by the bus's destructor.
    void detach() noexcept;
    /// True while the bus exists (a snapshot). Takes no lock, so that code
    /// running inside with() (a handler of the event it emits) may call it
    /// for any link, its own included.
    [[nodiscard]] bool alive() const noexcept { return m_bus.load(std::memory_order_acquire) != nullptr; }

private:
    std::mutex m_mutex; // held by with() and detach()
    std::atomic<Bus *> m_bus;
};

} // namespace detail

template <class E>
detail::ChannelBase *Bus::makeChannel(Bus &bus)
{
    return new detail::Channel<E>(bus);
}

} // namespace sigreg

#if defined(SIGREG_BUS_RESTORE_EMIT)
#pragma pop_macro("emit")
#undef SIGREG_BUS_RESTORE_EMIT
#endif
