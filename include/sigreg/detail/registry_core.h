// SPDX-License-Identifier: MIT
// Sigreg — the type-erased registry engine behind sigreg::Registry<E> (internal).
#pragma once

#include <sigreg/detail/hazard.h>
#include <sigreg/handler_id.h>
#include <sigreg/sigreg_export.h>

#include <algorithm>
#include <array>
#include <atomic>
#if defined(__GLIBCXX__)
#include <cxxabi.h> // abi::__forced_unwind
#endif
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

namespace sigreg::detail {

using InvokeFn = void (*)(const Node *, const void *event);
using DestroyFn = void (*)(Node *) noexcept;
/// Which removal a removal hook (RemovedFn) is called for.
enum class Removal : std::uint8_t {
    /// The call that removed the handler, a non-waiting one.
    NoWait,
    /// The call that removed the handler, a waiting one: the hook waits too.
    Wait,
    /// A waiting removal of a handler removed earlier by another call (a
    /// concurrent remove(), or a removeNoWait()) and not yet reclaimed: the
    /// hook waits as for Wait, and must not repeat what the first call did.
    /// May run concurrently with the first call's hook.
    WaitForEarlier,
};
/// Called on the thread of a removal, after it is published (and, for a
/// waiting removal, after the wait), outside the registry's mutex: once with
/// Removal::NoWait or Removal::Wait, then once per later waiting removal of
/// the same id (Removal::WaitForEarlier) while the node is not reclaimed.
using RemovedFn = void (*)(Node *, Removal) noexcept;
/// True if the calling thread is inside a call of the node that a layer
/// above the core made outside the core's walk (a marshalled call, say).
using RunningHereFn = bool (*)(const Node *) noexcept;
/// Called after a writer changed the number of handlers, outside the mutex.
using ObserverFn = void (*)(void *context) noexcept;

/// The invoke function of a removed handler: does nothing.
SIGREG_CORE_EXPORT void removedInvoke(const Node *, const void *) noexcept;

/// One registered handler. Allocated once by `add`, shared by every snapshot
/// that lists it, destroyed once no snapshot that lists it can still be read.
struct Node {
    /// Swapped to `removedInvoke` when the handler is removed, so that readers
    /// still walking an older snapshot skip it.
    std::atomic<InvokeFn> invoke;
    DestroyFn destroy;
    /// Optional removal hook (layers above the core keep per-handler state).
    RemovedFn removed = nullptr;
    /// Optional: calls of the handler a layer runs outside the core's walk.
    RunningHereFn runningHere = nullptr;
    /// The registry the node was added to (set by add, before publication).
    /// A failing call is reported through it, so that the notify loop need
    /// not keep the registry's address alive across its handler calls.
    const class RegistryCore *owner = nullptr;
    HandlerId id;
    int priority = 0;
    // Writer-side bookkeeping, guarded by the registry's mutex. The blocks
    // that list the node are those of versions in [addedVersion,
    // removedVersion): the first, in place or new, and every later one until
    // the removal published a block without it.
    std::uint64_t addedVersion = 0;
    std::uint64_t removedVersion = 0;
    Node *nextGarbage = nullptr; // intrusive list: destruction after unlock
    std::uint32_t waitPins = 0;   // removers waiting on this node: not reclaimed meanwhile

    Node(InvokeFn i, DestroyFn d) noexcept : invoke(i), destroy(d) {}
};

/// An immutable (apart from entries added at either end) snapshot of the
/// handler list, sorted by priority, highest first, ties in registration
/// order. The entries are cells()[first, first + count) of `capacity` cells,
/// so that both a handler of the lowest priority (appended) and one of a
/// priority above all others (prepended) are added in place.
static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "Sigreg needs lock-free 64-bit atomics (a block's first + count is read by notify in one load); on "
              "this target std::atomic<std::uint64_t> would take a lock");
struct Block {
    /// first | count << 32, read by a notify in one load. Changed only while
    /// the block is the registry's current one, and only to take in one more
    /// entry next to the valid ones (written first, then published here with
    /// release): a reader that loaded the range before never looks at it.
    std::atomic<std::uint64_t> range{0};
    std::uint32_t capacity = 0;
    /// Registry version at which this block was created.
    std::uint64_t version = 0;

    static constexpr std::uint64_t pack(std::uint32_t first, std::uint32_t count) noexcept
    {
        return std::uint64_t(first) | std::uint64_t(count) << 32;
    }
    static constexpr std::uint32_t firstOf(std::uint64_t range) noexcept { return static_cast<std::uint32_t>(range); }
    static constexpr std::uint32_t countOf(std::uint64_t range) noexcept
    {
        return static_cast<std::uint32_t>(range >> 32);
    }
    Node *const *cells() const noexcept { return reinterpret_cast<Node *const *>(this + 1); }
    Node **cells() noexcept { return reinterpret_cast<Node **>(this + 1); }
    /// The first entry of `word`, a value of `range` loaded before.
    Node *const *entries(std::uint64_t word) const noexcept { return cells() + firstOf(word); }
    Node **entries(std::uint64_t word) noexcept { return cells() + firstOf(word); }
    /// Sets the entries of a block no reader can see yet to the cells
    /// [begin, end), which the writer filled.
    void setEntries(Node *const *begin, Node *const *end) noexcept
    {
        range.store(pack(static_cast<std::uint32_t>(begin - cells()), static_cast<std::uint32_t>(end - begin)),
                    std::memory_order_relaxed);
    }
};
static_assert(sizeof(Block) % alignof(Node *) == 0);
static_assert(alignof(Block) > 1, "a mirror word keeps a flag in bit 0 of a block's address");

/// A type-erased error handler.
struct ErrorSink {
    using CallFn = void (*)(const ErrorSink *, const HandlerFailure &);
    CallFn call;
    void (*destroy)(ErrorSink *) noexcept;
    ErrorSink *nextGarbage = nullptr; // writer-side, see Node::nextGarbage
};

/// Makes room for `extra` more elements with geometric growth (a plain
/// `reserve(size() + 1)` would reallocate on every call: quadratic).
template <class V>
void reserveFor(V &v, std::size_t extra)
{
    if (v.capacity() - v.size() < extra)
        v.reserve(std::max(v.size() + extra, 2 * v.capacity()));
}

/// Operations collected by a batch, applied with one publication.
struct BatchOps {
    std::vector<Node *> adds;
    std::vector<HandlerId> removes;
};

/// Stands in for an exception std::current_exception() cannot capture (one
/// thrown by code in another language through the same unwinder), so that
/// HandlerFailure::exception is never null: a std::runtime_error saying so.
SIGREG_CORE_EXPORT SIGREG_COLD std::exception_ptr foreignException() noexcept;

/// In a catch block: std::current_exception(), never null.
inline std::exception_ptr currentException() noexcept
{
    std::exception_ptr e = std::current_exception();
    return SIGREG_UNLIKELY(!e) ? foreignException() : e;
}

/// Liveness anchor shared between a registry and its guards.
class SIGREG_CORE_EXPORT Anchor {
public:
    explicit Anchor(class RegistryCore *core) noexcept : m_core(core) {}
    /// Removes `id` if the registry still exists.
    bool remove(HandlerId id, bool wait) noexcept;
    /// Called by the registry's destructor: no guard can reach it afterwards.
    /// Waits for guard removals on other threads that are still using the
    /// registry (not for the destruction of the handlers they removed, which
    /// comes after); one in progress on the calling thread (the registry is
    /// destroyed from inside it) is not waited for.
    void kill() noexcept;

private:
    friend class RegistryCore;
    /// Called by RegistryCore::removeForAnchor() once the removal is done
    /// with the registry, before it destroys what it removed.
    void endRemoval() noexcept;

    static constexpr std::uint32_t kDead = 0x80000000u;
    std::atomic<std::uint32_t> m_state{0};
    class RegistryCore *m_core;
};

class SIGREG_CORE_EXPORT RegistryCore {
public:
    RegistryCore() noexcept;
    ~RegistryCore();
    RegistryCore(const RegistryCore &) = delete;
    RegistryCore &operator=(const RegistryCore &) = delete;

    /// Calls every handler with `event`. Lock-free, allocation-free.
    ///
    /// The common case, the outermost read on a thread that has read before,
    /// is inline; a nested read and a thread's first read take the
    /// out-of-line notifyBusy(). Keeping that branch out of line (rather
    /// than picking the level in a phi) leaves the inline path one pointer
    /// to hold across the handler calls, the record, which is its level 0.
    SIGREG_ALWAYS_INLINE void notify(const void *event) const noexcept
    {
        ThreadRecord *const rec = moduleRecord();
        if (SIGREG_UNLIKELY(rec->levels[0].inUse())) {
            notifyBusy(event);
            afterBusyRead();
            return;
        }
        HazardScope scope(&rec->levels[0]);
        dispatch(scope, event);
    }

    /// Bit of a mirror word (see setMirror()) that a layer sets to send its
    /// readers elsewhere; the rest of the word is the current block's address.
    static constexpr std::uintptr_t kMirrorDivert = 1;

    /// notify() of the registry whose mirror is `mirror` (see setMirror()),
    /// reading the handlers through the mirror: for a layer that keeps the
    /// mirrors of many registries in one array and finds a registry's slot
    /// by index, without loading the registry's address. Returns false,
    /// having called nothing, when the mirror's divert bit is set, when the
    /// mirror changes under the read, or for a nested read or a thread's
    /// first read: the caller then notifies the usual way.
    SIGREG_ALWAYS_INLINE static bool notifyMirrored(const std::atomic<std::uintptr_t> &mirror,
                                                    const void *event) noexcept
    {
        ThreadRecord *const rec = moduleRecord();
        if (SIGREG_UNLIKELY(rec->levels[0].inUse())) {
            afterBusyRead();
            return false;
        }
        const std::uintptr_t word = mirror.load(std::memory_order_relaxed);
        if (SIGREG_UNLIKELY(word & kMirrorDivert))
            return false;
        HazardScope scope(&rec->levels[0]);
        if (SIGREG_UNLIKELY(!scope.protectIfUnchanged(mirror, word)))
            return false;
        walk(scope, reinterpret_cast<const Block *>(word), event);
        return true;
    }

    /// Makes `mirror` follow this registry's current block from now on
    /// (keeping its divert bit, which only the layer changes, with atomic
    /// read-modify-writes). Set before the registry is shared; the mirror
    /// must outlive the registry. Readers through the mirror are protected
    /// exactly like readers of the head: a block is retired only after the
    /// mirror stopped naming it.
    void setMirror(std::atomic<std::uintptr_t> *mirror) noexcept;

    /// The mirror word of a registry without handlers (the shared empty
    /// block): what a layer's mirror slots hold before they follow a registry.
    static std::uintptr_t emptyMirror() noexcept;

    /// notify(), unless a layer flag in `mask` is set: then `other()` instead.
    /// For a layer whose notify needs more than the core's when some of its
    /// handlers are special; with both reads on one base the inline path
    /// keeps one pointer to the registry, not two.
    template <class Other>
    SIGREG_ALWAYS_INLINE void notifyUnlessFlagged(const void *event, std::uint32_t mask, Other &&other) const noexcept
    {
        const RegistryCore *self = this;
#if defined(__GNUC__) || defined(__clang__)
        asm("" : "+r"(self)); // one base for both reads (see above)
#endif
        if (SIGREG_UNLIKELY(self->m_layerFlags.load(std::memory_order_relaxed) & mask)) {
            other();
            return;
        }
        self->notify(event);
    }

    /// Takes ownership of `node` (also on failure) and registers it, with
    /// `node->id` if that is valid (reserved with reserveId()), else a new id.
    HandlerId add(Node *node, int priority);
    bool remove(HandlerId id, bool wait);
    std::size_t clear(bool wait);
    bool contains(HandlerId id) const;
    std::size_t size() const noexcept { return m_size.load(std::memory_order_relaxed); }

    /// Allocates an id for a batch entry. Lock-free.
    HandlerId reserveId() noexcept
    {
        return HandlerId(m_nextId.fetch_add(1, std::memory_order_relaxed) + 1);
    }
    /// Applies adds (ids already reserved) and removes in one publication.
    /// Returns the number of handlers removed.
    std::size_t apply(BatchOps &ops, bool wait);

    /// Takes ownership of `sink` (also when it throws std::bad_alloc).
    void setErrorSink(ErrorSink *sink);
    std::uint64_t failureCount() const noexcept { return m_failures.load(std::memory_order_relaxed); }
    std::uint64_t unhandledFailureCount() const noexcept
    {
        return m_unhandled.load(std::memory_order_relaxed);
    }

    std::shared_ptr<Anchor> anchor();

    /// Installs a callback run after every change of size() made by a writer
    /// (not during destruction). Set it before the registry is shared; it may
    /// be cleared (null `fn`) at any time, e.g. by an owner being destroyed
    /// while a guard removes a handler on another thread.
    void setObserver(ObserverFn fn, void *context) noexcept
    {
        if (fn)
            m_observerContext = context; // published by the release below
        m_observer.store(fn, std::memory_order_release);
    }

    /// Number of retired snapshots and removed handlers not yet reclaimed
    /// (for tests and diagnostics).
    std::size_t pendingReclamation() const;
    /// Reclaimed snapshots kept for the next copies, at most: as many as one
    /// reclaim frees when nobody reads, so that a run of writes to a large
    /// registry reuses warm memory instead of returning each copy to malloc
    /// and faulting a new one in. Each holds at most 4 entries per current
    /// handler, plus 64; larger ones are freed when the registry shrinks.
    static constexpr std::size_t kSpareBlocks = 4;
    /// Total capacity, in entries, of the snapshots kept for reuse (for tests
    /// and diagnostics).
    std::size_t spareCapacity() const;

private:
    /// notify() for a nested read or a thread's first read.
    SIGREG_NOINLINE void notifyBusy(const void *event) const noexcept;

    /// The body of a notify, on the level `scope` holds.
    SIGREG_ALWAYS_INLINE void dispatch(HazardScope &scope, const void *event) const noexcept
    {
        walk(scope, scope.protect(m_head), event);
    }

    /// Calls the handlers of `block`, which `scope` protects.
    SIGREG_ALWAYS_INLINE static void walk(HazardScope &scope, const Block *block, const void *event) noexcept
    {
        const std::uint64_t range = block->range.load(std::memory_order_acquire);
        Node *const *it = block->entries(range);
        Node *const *const end = it + Block::countOf(range);
        if (SIGREG_UNLIKELY(it == end)) {
            // Nothing to announce, so withdraw what an earlier read on this
            // level left announced (announcements are not cleared when a read
            // ends): a remover of that handler would otherwise wait for this
            // read, and a thread that alternates between a registry and an
            // empty one would keep it waiting.
            scope.announce(nullptr);
            return;
        }
        for (; it != end; ++it) {
            const Node *node = *it;
            scope.announce(node);
            const InvokeFn fn = node->invoke.load(kHazardLoad);
            // The handlers below read the node again from `it` (the block is
            // immutable up to `count`) and reach this registry through it, so
            // that neither `node` nor `this` need survive the call in a
            // register of its own: the caller's loop keeps them for itself.
            try {
                fn(node, event);
#if defined(__GLIBCXX__)
            } catch (abi::__forced_unwind &) {
                // The thread is being cancelled (pthread_cancel, pthread_exit):
                // not a handler failure, and it cannot be stopped; nor can it
                // unwind through notify(), which is noexcept. (Not `throw;`:
                // the same end, with a -Wterminate warning in every includer.)
                std::terminate();
#endif
            } catch (const std::exception &e) {
                // The call is over: withdraw its announcement before the
                // error handler runs, or a remover of this handler would wait
                // for the error handler, and one inside it would count as
                // inside the handler. The node lives on as long as the block
                // that lists it, which `scope` protects.
                scope.announce(nullptr);
                (*it)->owner->reportFailure(*it, e.what());
            } catch (...) {
                scope.announce(nullptr);
                (*it)->owner->reportFailure(*it, nullptr);
            }
        }
    }

    struct Retired {
        const void *object;
        bool isBlock;          // a Block, else an ErrorSink
        std::uint64_t version; // creation version (blocks only)
    };
    struct Garbage;

    SIGREG_COLD void reportFailure(const Node *node, const char *what) const noexcept;

    void publish(Block *block, Garbage &garbage);
    /// Under the mutex: points m_mirror at `block`, keeping its divert bit.
    void followMirror(const Block *block) noexcept;
    void reclaim(Garbage &garbage) noexcept;
    void markRemoved(Node *node);
    static void waitUntilIdle(std::span<const Node *const> nodes) noexcept;
    /// Under the mutex, after publishing a snapshot without `removed`
    /// (sorted by address): pins them and fences.
    void prepareWait(std::span<const Node *const> removed, bool wait,
                     std::span<const Node *const> earlier = {}) noexcept;
    void notifyObserver(bool changed) const noexcept;
    /// Without the mutex: waits for `removed` if asked, unpins, reclaims.
    /// With `earlier` (pinned too, sorted by address), nodes removed before by
    /// other calls that this waiting removal waits for as well, without
    /// counting them.
    void finishRemoval(std::span<const Node *const> removed, bool wait, Garbage &garbage,
                       std::span<const Node *const> earlier = {});
    Node *findLive(HandlerId id) const noexcept;
    /// remove(), leaving the destruction of what it reclaimed to the caller.
    bool removeInto(HandlerId id, bool wait, Garbage &garbage);
    /// remove() for Anchor::remove(): ends the anchor's count of removals in
    /// progress (anchor.endRemoval()) before the removed handler is destroyed,
    /// so that the registry's destructor, on another thread, never waits for
    /// a handler's destructor (which may itself wait for that thread).
    friend class Anchor;
    bool removeForAnchor(HandlerId id, bool wait, Anchor &anchor);
    /// True if the calling thread is inside a call of `node`.
    static bool runningOnThisThread(const Node *node) noexcept;
    /// A node removed earlier and not yet reclaimed, by id (linear: rare).
    Node *findRemoved(HandlerId id) const noexcept;
    /// A block for at least `needed` entries, of capacity `wanted` when new:
    /// a spare one (see m_spare) if one fits, else a new allocation.
    Block *allocateBlock(std::size_t needed, std::uint32_t wanted);
    /// A block no reader holds any more: kept as a spare, or freed.
    void recycleBlock(const Block *block) noexcept;
    /// Removes spare `i` from the spares and returns its block, unpoisoned
    /// (header intact), for reuse or freeBlock().
    Block *takeSpare(std::size_t i) noexcept;
    /// Frees spares too large for the current handler count.
    void trimSpares() noexcept;
    /// The cell of a new block `b` where its first of `count` entries goes:
    /// the first cell, or, once a handler was added in front of all others
    /// (see m_prepends), the middle of the free cells.
    Node **firstSlot(Block *b, std::size_t count) const noexcept;

public:
    /// Bits a layer above the core may set (rarely) and test on its notify
    /// path (notifyUnlessFlagged): they share m_head's cache line, which that
    /// path reads anyway.
    void setLayerFlags(std::uint32_t bits) noexcept { m_layerFlags.fetch_or(bits, std::memory_order_relaxed); }

private:
    // Read by every notify; written only on publication (and, once, by a
    // layer's flags). Nothing else on this line.
    alignas(64) std::atomic<Block *> m_head;
    std::atomic<std::uint32_t> m_layerFlags{0};

    // Writer side, guarded by m_mutex (except m_size, which is read lock-free).
    alignas(64) mutable std::mutex m_mutex;
    std::atomic<std::size_t> m_size{0};
    std::atomic<std::uint64_t> m_nextId{0}; // last id handed out
    std::uint64_t m_version = 0;
    std::uint64_t m_retiredSinceFence = 0;
    std::vector<Node *> m_live;    // live handlers, by id (ids only grow)
    std::vector<Node *> m_removed; // removed, awaiting reclamation
    std::vector<Retired> m_retired;
    std::vector<const void *> m_hazards; // reclaim() scratch, kept to avoid reallocation
    std::vector<std::uint64_t> m_keptVersions; // reclaim() scratch: versions of retained blocks
    /// Reclaimed blocks kept for the next copies (see kSpareBlocks), the
    /// first m_spareCount of m_spare. The capacity is kept here too: a spare
    /// block is poisoned under ASan, its header included.
    struct Spare {
        Block *block;
        std::uint32_t capacity;
    };
    std::array<Spare, kSpareBlocks> m_spare{};
    std::size_t m_spareCount = 0;
    /// A handler was added in front of all others (priorities rising): new
    /// blocks keep free cells at both ends, so that the next ones are
    /// prepended in place.
    bool m_prepends = false;
    std::shared_ptr<Anchor> m_anchor;
    std::atomic<ObserverFn> m_observer{nullptr};
    std::atomic<std::uintptr_t> *m_mirror = nullptr; // see setMirror()
    void *m_observerContext = nullptr; // never written once an observer was published

    // Failure path only.
    alignas(64) std::atomic<ErrorSink *> m_errorSink{nullptr};
    mutable std::atomic<std::uint64_t> m_failures{0};
    mutable std::atomic<std::uint64_t> m_unhandled{0};
};

} // namespace sigreg::detail
