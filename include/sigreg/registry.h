// SPDX-License-Identifier: MIT
// Sigreg — sigreg::Registry<E>, a lock-free in-process event registry.
//
// ============================================================================
// Design
// ============================================================================
//
// What it guarantees
// ------------------
// * notify() never takes a lock, never allocates, and writes only cache lines
//   private to the calling thread. (Exceptions, once per thread: its first
//   notification takes a per-thread record, and the first time it nests
//   notifications more than eight deep it adds a chunk of levels to it.) Any number of threads may notify one
//   registry at once, also from inside handlers, to any nesting depth.
// * Handlers run in priority order (higher first), ties in registration order.
//   Every handler of one notify() receives the same `const E&`.
// * A throwing handler never stops its siblings: the exception is caught,
//   counted and passed, with the handler's id, to the error handler.
// * When remove(id) returns on thread T, true or false, the handler is not
//   running on any thread other than T and will never be called again. Calls
//   running on T itself (a handler removing itself or a sibling) complete
//   normally.
//
// How: snapshots and hazard slots
// -------------------------------
// The handlers live in an immutable array (a "block") of node pointers, sorted
// by priority. The registry's head is an atomic pointer to the current block.
// Writers (add, remove, clear, batches) serialise on a mutex, build a new
// block and swap the head (copy-then-swap). One exception keeps registration
// cheap: a handler whose priority does not exceed the last one's is appended
// in place when the block has room, and one whose priority exceeds the first
// one's is prepended likewise. The block's entries are the cells [first,
// first + count), both in one atomic word: the entry is written in a free
// cell next to them (no reader looks there), then the word is stored with
// release. Blocks that reclamation frees are reused for the next copies.
//
// A reader protects what it reads with hazard slots in a per-thread record
// (one pair per nesting level): it stores the block pointer in its slot,
// re-reads the head, and retries until both agree (the classic hazard-pointer
// validation). Before calling each handler it stores the handler's node
// pointer in the second slot of that level ("announce"), then loads the
// node's invoke function; remove() swaps that function for a no-op. The
// record is found through a thread_local pointer; each module (executable,
// plugin) reads its own hidden copy of it, one load at a constant offset
// from the thread pointer, rather than the library's through the GOT (see
// tl_moduleRecord in detail/hazard.h for how the copies stay current).
//
// Both handshakes are Dekker-style: a store followed by a load on each side.
// Ordinarily that needs a full fence on both sides, which on the read path
// would cost more than the handler call itself. Sigreg uses asymmetric
// fences instead: readers issue a compiler-only barrier; writers call
// membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) on Linux x86 and x86-64
// (FlushProcessWriteBuffers on Windows), which executes a full barrier on
// every CPU currently running a thread of this process. Elsewhere (other
// platforms, and Linux on other architectures, Arm included) and under
// ThreadSanitizer both sides use sequentially consistent operations
// instead: same protocol, slower reads.
//
// Reclamation
// -----------
// A replaced block is retired. Reclamation (after removals, and when four
// objects are waiting) runs one heavy fence (skipped when no other thread
// holds a hazard record, e.g. when only one thread ever notifies), collects
// every thread's hazard slots — the calling thread's own included — and frees
// each retired block no slot holds. A node is listed by the blocks from the
// one it was first added to up to (not including) the one its removal
// published; it is destroyed once no retained block is among them, so a
// long read (a handler running a nested event loop) keeps only what its own
// block lists. Destructors of handlers run outside the registry's mutex, so
// they may use the registry. Memory held is therefore bounded by: the
// current block, at most four retired blocks, the blocks that threads are
// reading right now, and the removed handlers those blocks list.
//
// Why removal can wait, and the hazard that remains
// -------------------------------------------------
// remove() marks the node, publishes a block without it, fences, then waits
// until no *other* thread announces that node. The wait is per handler, not
// per snapshot, so two threads whose handlers remove themselves (or each
// other's siblings) at the same time do not wait for each other. A removal
// that finds the handler removed already (by a concurrent remove() still
// waiting, or by removeNoWait()) waits the same way before it returns false,
// unless it runs inside a call of that handler: two calls of a one-shot
// handler that both remove it must not wait for each other. The one
// hazard left: a remover waits for the handler to return, so if that handler
// is blocked on something the remover holds (a mutex the remover locked, or
// the remover's own handler in a mutual removal), they deadlock — just as
// joining a thread that waits for you does. For that case use
// removeNoWait(): it returns at once, the handler is never *started* again,
// but a call already running on another thread may still be in progress.
//
// When not to use it
// ------------------
// Sigreg optimises notify at the expense of writes: each removal (and each
// add that lands between two handlers' priorities) copies the handler array,
// and a removal costs a system call (~0.3 µs). With millions of
// registrations per second and few notifications, a mutex-protected vector
// is simpler and faster.
//
// See docs/ARCHITECTURE.md for the proof sketch.
// ============================================================================
#pragma once

/// @file
/// sigreg::Registry<E>, the lock-free event registry, and its batches. Part
/// of Sigreg::Core (no Qt).
///
/// The comment at the top of this header (see its source) is the design in
/// short: what is guaranteed, snapshots and hazard slots, reclamation, why
/// removal can wait and the hazard that remains, and when not to use it.
/// docs/ARCHITECTURE.md has the full account and the proof sketches.

#include <sigreg/detail/registry_core.h>
#include <sigreg/guard.h>
#include <sigreg/handler_id.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace sigreg {

namespace detail {

/// Reaches the engine of a Registry<E>, for layers built on it (the bus).
struct CoreAccess;

template <class T, template <class...> class Tmpl>
inline constexpr bool isSpecialization = false;
template <template <class...> class Tmpl, class... Args>
inline constexpr bool isSpecialization<Tmpl<Args...>, Tmpl> = true;

/// Rejects null function pointers and empty std::function objects up front:
/// they would otherwise fail on every notification.
template <class F>
void checkNotEmpty(const F &f)
{
    if constexpr (std::is_pointer_v<F> || std::is_member_pointer_v<F>
                  || isSpecialization<F, std::function>) {
        if (!f)
            throw std::invalid_argument("sigreg::Registry: empty handler (null function pointer or empty std::function)");
    }
}

template <class E, class F>
struct HandlerNode final : Node {
    F fn;

    template <class G>
    explicit HandlerNode(G &&g) : Node(&invoke, &destroy), fn(std::forward<G>(g))
    {
    }

    static void invoke(const Node *n, const void *event)
    {
        // Handlers may have non-const call operators (like std::function).
        std::invoke(const_cast<HandlerNode *>(static_cast<const HandlerNode *>(n))->fn,
                    *static_cast<const E *>(event));
    }
    static void destroy(Node *n) noexcept { delete static_cast<HandlerNode *>(n); }
};

template <class F>
struct ErrorSinkFor final : ErrorSink {
    F fn;
    template <class G>
    explicit ErrorSinkFor(G &&g) : ErrorSink{&call, &destroy, nullptr}, fn(std::forward<G>(g))
    {
    }
    static void call(const ErrorSink *s, const HandlerFailure &f)
    {
        std::invoke(const_cast<ErrorSinkFor *>(static_cast<const ErrorSinkFor *>(s))->fn, f);
    }
    static void destroy(ErrorSink *s) noexcept { delete static_cast<ErrorSinkFor *>(s); }
};

template <class E, class F>
Node *makeNode(F &&f)
{
    using D = std::decay_t<F>;
    static_assert(std::is_invocable_v<D &, const E &>,
                  "sigreg::Registry<E>: a handler must be callable as f(const E&)");
    static_assert(std::is_constructible_v<D, F>,
                  "sigreg::Registry<E>: the handler must be move- or copy-constructible from what was passed");
    checkNotEmpty(f);
    return new HandlerNode<E, D>(std::forward<F>(f));
}

} // namespace detail

/// Result of `Registry<E>::Batch::commit()`.
struct BatchResult {
    /// Handlers registered by the commit (every queued add).
    std::size_t added = 0;
    /// Handlers removed by the commit (queued removals of unknown or already
    /// removed ids are not counted).
    std::size_t removed = 0;
};

/// A registry of handlers for events of type `E`.
///
/// Handlers are callables invocable as `f(const E&)`; their return value is
/// ignored. They may be move-only. `E` need not be copyable or movable: the
/// event is passed by reference to every handler.
///
/// A registry is neither copyable nor movable (handlers and guards refer to
/// it); hold it by value or in a `std::unique_ptr`.
///
/// Safety: every member function may be called concurrently from any number
/// of threads, and from inside handlers (of this or any other registry),
/// except the destructor, which must not run concurrently with any other use
/// or from inside one of this registry's handlers.
template <class E>
class Registry {
    static_assert(std::is_object_v<E>, "sigreg::Registry<E>: E must be an object type (not a reference or function)");
    static_assert(!std::is_const_v<E> && !std::is_volatile_v<E>,
                  "sigreg::Registry<E>: E must not be const- or volatile-qualified; handlers receive `const E&` anyway");

public:
    class Batch;

    Registry() noexcept { detail::requireMatchingProtocol(); }
    Registry(const Registry &) = delete;
    Registry &operator=(const Registry &) = delete;
    /// Destroys every handler and error handler. Guards of this registry
    /// become inert.
    ~Registry() = default;

    /// Effect: registers `f` with priority 0 and returns its id. It is called
    /// from the next notify() on.
    /// Throws: std::invalid_argument for a null function pointer or empty
    /// std::function; std::bad_alloc.
    /// Safety: thread-safe; may be called from a handler.
    /// Cost: amortised O(1) when `priority` does not exceed the lowest present
    /// priority (always true when all priorities are equal) or exceeds the
    /// highest; else O(n) (a copy of the handler array: for many such adds,
    /// use a batch).
    template <class F>
    HandlerId add(F &&f)
    {
        return add(0, std::forward<F>(f));
    }

    /// Effect: as add(f), with a priority: higher runs first; equal
    /// priorities run in registration order.
    template <class F>
    HandlerId add(int priority, F &&f)
    {
        return m_core.add(detail::makeNode<E>(std::forward<F>(f)), priority);
    }

    /// Effect: as add(f), returning a guard that removes the handler when it
    /// is destroyed.
    template <class F>
    [[nodiscard]] Guard addGuarded(F &&f)
    {
        return addGuarded(0, std::forward<F>(f));
    }

    /// Effect: as add(priority, f), returning a guard.
    template <class F>
    [[nodiscard]] Guard addGuarded(int priority, F &&f)
    {
        auto anchor = m_core.anchor();
        return Guard(std::move(anchor), add(priority, std::forward<F>(f)));
    }

    /// Effect: a guard owning the already registered handler `id` (which may
    /// have been removed already: the guard then does nothing).
    [[nodiscard]] Guard guard(HandlerId id) { return Guard(m_core.anchor(), id); }

    /// Effect: removes handler `id`. Returns true if this call removed it;
    /// false if `id` is unknown or already removed (of several concurrent
    /// calls for one id exactly one returns true). When it returns, true or
    /// false, the handler is not running on any other thread and will not be
    /// called again: a call that finds it removed by another call, still
    /// waiting or a removeNoWait(), waits as that call would have (except
    /// from inside a call of that handler, see the header's essay). A call
    /// running on this thread (a handler removing itself) completes normally.
    /// The handler object is destroyed once no snapshot can reach it —
    /// possibly before this returns, possibly later (when another thread
    /// was walking a snapshot that lists it: then at a later write to the
    /// registry, or at its destruction). So a shared object that registered
    /// handlers must stay loaded while the registry exists, even after it
    /// removed them: their destruction runs its code.
    /// Warning: waits for running calls of the handler on other threads; if
    /// such a call is blocked on something the caller holds, this deadlocks.
    /// Use removeNoWait() there.
    /// Throws: std::bad_alloc only.
    bool remove(HandlerId id) { return m_core.remove(id, true); }

    /// Effect: as remove(), but returns without waiting: no new call of the
    /// handler starts after it returns, yet a call already running on another
    /// thread may still be in progress.
    bool removeNoWait(HandlerId id) { return m_core.remove(id, false); }

    /// Effect: removes every handler, waiting as remove() does for the
    /// handlers this call removed. Handlers another call removed before
    /// (a remove() still waiting, a removeNoWait(), another clear()) are not
    /// waited for: that call answers for them. (Waiting for them too would
    /// deadlock two threads that clear from inside handlers at once.) Ids
    /// are not reused afterwards. Returns the number of handlers removed.
    std::size_t clear() { return m_core.clear(true); }

    /// True if `id` is registered here. Takes the writers' mutex briefly.
    [[nodiscard]] bool contains(HandlerId id) const { return m_core.contains(id); }
    /// Number of registered handlers. Lock-free.
    [[nodiscard]] std::size_t size() const noexcept { return m_core.size(); }
    /// True when no handler is registered. Lock-free.
    [[nodiscard]] bool empty() const noexcept { return size() == 0; }

    /// Effect: calls every handler with `event`, in priority order, on the
    /// calling thread. Exceptions thrown by handlers are caught and reported
    /// (see setErrorHandler()); nothing escapes. A thread cancelled inside a
    /// handler or the error handler (pthread_cancel(), pthread_exit()) cannot unwind through this
    /// noexcept function: the process ends (std::terminate()).
    /// Safety: lock-free; may run concurrently with any other member and be
    /// nested in handlers. Handlers added during the call are called from the
    /// next notify() on; handlers removed during it are skipped if not yet
    /// started.
    /// Allocation: none, except a thread's first notify (its hazard record,
    /// reused after the thread ends) and its first nesting beyond eight
    /// levels (a chunk of 32 more). If that allocation fails, the noexcept
    /// boundary calls std::terminate(): notify a registry once on each
    /// thread early (e.g. at thread start) where that matters.
    SIGREG_ALWAYS_INLINE void notify(const E &event) const noexcept { m_core.notify(std::addressof(event)); }

    /// Effect: installs `f`, callable as `f(const HandlerFailure&)`, replacing
    /// the previous error handler. It runs on the notifying thread right after
    /// the failing handler. If it throws, the exception is counted in
    /// unhandledFailureCount() and dropped.
    template <class F>
    void setErrorHandler(F &&f)
    {
        using D = std::decay_t<F>;
        static_assert(std::is_invocable_v<D &, const HandlerFailure &>,
                      "sigreg::Registry<E>::setErrorHandler: the callback must be callable as f(const sigreg::HandlerFailure&)");
        detail::checkNotEmpty(f);
        m_core.setErrorSink(new detail::ErrorSinkFor<D>(std::forward<F>(f)));
    }

    /// Effect: removes the error handler; failures are then only counted.
    void resetErrorHandler() { m_core.setErrorSink(nullptr); }

    /// Number of handler calls that threw, since construction.
    [[nodiscard]] std::uint64_t failureCount() const noexcept { return m_core.failureCount(); }
    /// Failures that reached no error handler (none installed, or it threw).
    [[nodiscard]] std::uint64_t unhandledFailureCount() const noexcept
    {
        return m_core.unhandledFailureCount();
    }

    /// Starts a batch: many adds and removes, published at once by commit().
    [[nodiscard]] Batch batch() { return Batch(m_core); }

    /// Diagnostics: retired snapshots and removed handlers not yet reclaimed.
    [[nodiscard]] std::size_t pendingReclamation() const { return m_core.pendingReclamation(); }

private:
    friend struct detail::CoreAccess;
    detail::RegistryCore m_core;
};

namespace detail {
struct CoreAccess {
    template <class E>
    static RegistryCore &of(Registry<E> &registry) noexcept
    {
        return registry.m_core;
    }
};
} // namespace detail

/// Collects adds and removes and publishes them in one step: one copy of
/// the handler array and one fence instead of one per operation. Ids are
/// assigned at add(); the handlers are registered at commit(). A batch
/// dropped without commit() changes nothing (its handlers are destroyed).
/// Until commit(), an id this batch added is the batch's alone: the
/// registry does not know it yet (Registry::remove() and contains() answer
/// false, and the handler is still registered by commit()); take it out
/// with the batch's own remove().
///
/// Safety: a batch is used by one thread; the registry stays fully usable
/// meanwhile.
template <class E>
class Registry<E>::Batch {
public:
    /// Takes over the other batch's queued operations, leaving it empty.
    Batch(Batch &&) noexcept = default;
    Batch &operator=(Batch &&) = delete;
    Batch(const Batch &) = delete;
    Batch &operator=(const Batch &) = delete;
    ~Batch()
    {
        for (detail::Node *n : m_ops.adds)
            n->destroy(n);
    }

    /// Queues `f` with priority 0; returns the id it will have.
    template <class F>
    HandlerId add(F &&f)
    {
        return add(0, std::forward<F>(f));
    }

    /// Queues `f` with `priority`; returns the id it will have.
    template <class F>
    HandlerId add(int priority, F &&f)
    {
        detail::reserveFor(m_ops.adds, 1);
        detail::Node *node = detail::makeNode<E>(std::forward<F>(f));
        node->priority = priority;
        node->id = m_core->reserveId();
        m_ops.adds.push_back(node);
        return node->id;
    }

    /// Queues the removal of `id` (unknown ids are ignored at commit()).
    /// An id added by this batch and not yet committed is taken out of the
    /// batch at once: that handler is destroyed here and never registered
    /// (not counted in the commit's `added` nor `removed`).
    /// Throws: std::bad_alloc.
    void remove(HandlerId id)
    {
        // This batch's ids were reserved in the order of its adds: ascending.
        const auto it = std::lower_bound(m_ops.adds.begin(), m_ops.adds.end(), id,
                                         [](const detail::Node *n, HandlerId v) { return n->id < v; });
        if (it != m_ops.adds.end() && (*it)->id == id) {
            detail::Node *n = *it;
            m_ops.adds.erase(it);
            n->destroy(n);
            return;
        }
        m_ops.removes.push_back(id);
    }

    /// Effect: publishes all queued operations at once, waiting for removed
    /// handlers as Registry::remove() does. The batch is empty afterwards.
    BatchResult commit()
    {
        BatchResult r;
        r.added = m_ops.adds.size();
        r.removed = m_core->apply(m_ops, true);
        m_ops.removes.clear();
        return r;
    }

private:
    friend class Registry<E>;
    explicit Batch(detail::RegistryCore &core) : m_core(&core) {}

    detail::RegistryCore *m_core;
    detail::BatchOps m_ops;
};

} // namespace sigreg
