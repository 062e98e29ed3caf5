// SPDX-License-Identifier: MIT
// Sigreg — writer side of the registry engine: copy-then-swap publication,
// removal that waits for running calls, and hazard-based reclamation.
#include <sigreg/detail/registry_core.h>

#include "backoff_p.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <new>
#include <stdexcept>
#include <thread>

#ifdef SIGREG_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace sigreg::detail {

namespace {

// The snapshot of an empty registry. Shared by all registries, never freed and
// never appended to (its capacity is zero), so a new registry allocates nothing.
alignas(64) Block g_emptyBlock;

// Publication order of m_head / m_errorSink: release is enough with
// asymmetric fences (the heavy fence comes later); the symmetric protocol
// needs the store in the single total order.
constexpr std::memory_order kPublish =
    SIGREG_ASYMMETRIC_FENCES ? std::memory_order_release : std::memory_order_seq_cst;

// Retired objects accumulate until this many are waiting; a removal reclaims
// at once anyway (it has to fence for its wait).
constexpr std::size_t kRetireLimit = 4;

constexpr std::align_val_t kBlockAlign{64};

std::size_t blockBytes(std::uint32_t capacity) noexcept
{
    return sizeof(Block) + std::size_t(capacity) * sizeof(Node *); // NOLINT(bugprone-sizeof-expression)
}

void freeBlock(const Block *b) noexcept
{
    if (b != &g_emptyBlock)
        ::operator delete(const_cast<Block *>(b), kBlockAlign);
}

// A spare block is memory no reader may touch: under AddressSanitizer it is
// poisoned while spare, so that such a read is reported as it would be after
// free().
void poisonSpare([[maybe_unused]] Block *b) noexcept
{
#ifdef SIGREG_ASAN
    ASAN_POISON_MEMORY_REGION(b, blockBytes(b->capacity));
#endif
}
void unpoisonSpare([[maybe_unused]] Block *b, [[maybe_unused]] std::uint32_t capacity) noexcept
{
#ifdef SIGREG_ASAN
    ASAN_UNPOISON_MEMORY_REGION(b, blockBytes(capacity));
#endif
}

std::uint32_t grownCapacity(std::size_t needed)
{
    if (needed > std::numeric_limits<std::uint32_t>::max() / 2)
        throw std::length_error("sigreg::Registry: too many handlers");
    return static_cast<std::uint32_t>(std::max<std::size_t>(8, needed * 2));
}

/// The heavy fence, skipped when no other thread has a hazard record in use.
///
/// A thread takes its record with a sequentially consistent exchange followed
/// by a full fence before its first read (ThreadRecord::acquire). So if, after
/// this full fence, no record but the caller's is in use, every thread that
/// reads later sees everything written before this call, and no thread is
/// reading now: the system-wide barrier has nothing to order. This keeps the
/// common single-notifier case (a GUI thread) free of the system call.
void fenceAgainstReaders() noexcept
{
    protocolFence();
    const ThreadRecord *self = tl_record;
    for (ThreadRecord *rec = ThreadRecord::first(); rec; rec = rec->next.load(std::memory_order_acquire)) {
        if (rec != self && rec->inUse.load(std::memory_order_seq_cst)) {
            heavyFence();
            return;
        }
    }
}

void destroySink(const void *p) noexcept
{
    auto *s = const_cast<ErrorSink *>(static_cast<const ErrorSink *>(p));
    s->destroy(s);
}

bool byId(const Node *a, const Node *b) noexcept
{
    return a->id < b->id;
}

} // namespace

void removedInvoke(const Node *, const void *) noexcept {}

/// User-visible destructors (handlers, error sinks) that must run after the
/// registry's mutex is released, since they may call back into the registry.
/// Intrusive lists: collecting garbage never allocates (and so never fails).
struct RegistryCore::Garbage {
    Node *nodes = nullptr;
    ErrorSink *sinks = nullptr;

    void add(Node *n) noexcept
    {
        n->nextGarbage = nodes;
        nodes = n;
    }
    void add(ErrorSink *s) noexcept
    {
        s->nextGarbage = sinks;
        sinks = s;
    }

    Garbage() = default;
    Garbage(const Garbage &) = delete;
    Garbage &operator=(const Garbage &) = delete;
    ~Garbage()
    {
        while (Node *n = nodes) {
            nodes = n->nextGarbage;
            n->destroy(n);
        }
        while (ErrorSink *s = sinks) {
            sinks = s->nextGarbage;
            s->destroy(s);
        }
    }
};

RegistryCore::RegistryCore() noexcept : m_head(&g_emptyBlock) {}

RegistryCore::~RegistryCore()
{
    if (m_anchor)
        m_anchor->kill();
    // By contract nobody notifies a registry that is being destroyed, so
    // everything can go without consulting hazards. Nothing here allocates.
    freeBlock(m_head.load(std::memory_order_relaxed));
    for (const Retired &r : m_retired) {
        if (r.isBlock)
            freeBlock(static_cast<const Block *>(r.object));
        else
            destroySink(r.object);
    }
    for (Node *n : m_live)
        n->destroy(n);
    for (Node *n : m_removed)
        n->destroy(n);
    while (m_spareCount != 0)
        freeBlock(takeSpare(0));
    if (ErrorSink *s = m_errorSink.load(std::memory_order_relaxed))
        s->destroy(s);
}

Block *RegistryCore::allocateBlock(std::size_t needed, std::uint32_t wanted)
{
    // A spare with room for a quarter more than needed, so that appends
    // after this copy stay amortised O(1); the smallest such.
    const std::size_t fits = std::max<std::size_t>(8, needed + needed / 4);
    std::size_t best = m_spareCount;
    for (std::size_t i = 0; i < m_spareCount; ++i) {
        if (m_spare[i].capacity >= fits && (best == m_spareCount || m_spare[i].capacity < m_spare[best].capacity))
            best = i;
    }
    if (best != m_spareCount) {
        Block *const mem = takeSpare(best);
        const std::uint32_t capacity = mem->capacity;
        mem->~Block();
        Block *b = new (mem) Block;
        b->capacity = capacity;
        return b;
    }
    // Entries are node pointers, stored after the header.
    void *mem = ::operator new(blockBytes(wanted), kBlockAlign);
    Block *b = new (mem) Block;
    b->capacity = wanted;
    return b;
}

Block *RegistryCore::takeSpare(std::size_t i) noexcept
{
    Block *const block = m_spare[i].block;
    unpoisonSpare(block, m_spare[i].capacity);
    m_spare[i] = m_spare[--m_spareCount];
    return block;
}

void RegistryCore::recycleBlock(const Block *retired) noexcept
{
    if (retired == &g_emptyBlock)
        return;
    auto *block = const_cast<Block *>(retired);
    if (m_spareCount == kSpareBlocks) {
        // Full: keep the larger of the two (a growing registry needs it).
        const auto smallest = std::min_element(m_spare.begin(), m_spare.end(), [](const Spare &x, const Spare &y) {
            return x.capacity < y.capacity;
        });
        if (smallest->capacity >= block->capacity) {
            freeBlock(block);
            return;
        }
        freeBlock(takeSpare(static_cast<std::size_t>(smallest - m_spare.begin())));
    }
    m_spare[m_spareCount++] = Spare{block, block->capacity};
    poisonSpare(block);
}

Node **RegistryCore::firstSlot(Block *b, std::size_t count) const noexcept
{
    return b->cells() + (m_prepends ? (b->capacity - count) / 2 : 0);
}

void RegistryCore::trimSpares() noexcept
{
    // A spare may hold four times the handlers there are now (and 64
    // entries whatever the count): idle memory stays within a small multiple
    // of the current snapshot's, also after the registry shrank.
    const std::size_t limit =
        4 * std::size_t(Block::countOf(m_head.load(std::memory_order_relaxed)->range.load(std::memory_order_relaxed)))
        + 64;
    for (std::size_t i = 0; i < m_spareCount;) {
        if (m_spare[i].capacity > limit)
            freeBlock(takeSpare(i)); // the last spare moved to i
        else
            ++i;
    }
}

// Never throws: every writer reserves room in m_retired before it changes
// anything (strong guarantee for the writers up to the publication).
void RegistryCore::publish(Block *block, Garbage &garbage)
{
    if (block != &g_emptyBlock)
        block->version = m_version + 1;
    ++m_version;
    Block *old = m_head.exchange(block, kPublish);
    // Before `old` is retired: once a reader's validation sees the mirror no
    // longer naming `old`, the reclamation below may free it.
    if (m_mirror)
        followMirror(block);
    if (old != &g_emptyBlock) {
        m_retired.push_back(Retired{old, true, old->version});
        ++m_retiredSinceFence;
    }
    if (m_retired.size() >= kRetireLimit)
        reclaim(garbage);
}

// Never throws and never leaves the lists half-edited: if it cannot get the
// memory it needs, nothing is reclaimed this time (a later call retries).
void RegistryCore::reclaim(Garbage &garbage) noexcept
{
    if (m_retired.empty() && m_removed.empty())
        return;
    // Every object any thread is reading right now, own thread included (a
    // handler of ours may be running further up this very stack).
    std::vector<const void *> &hazards = m_hazards;
    hazards.clear();
    try {
        if (m_retiredSinceFence != 0) {
            fenceAgainstReaders();
            m_retiredSinceFence = 0;
        }
        for (ThreadRecord *rec = ThreadRecord::first(); rec; rec = rec->next.load(std::memory_order_acquire)) {
            rec->forEachLevel([&](const HazardLevel &level) {
                if (const void *p = level.object.load(kHazardLoad))
                    hazards.push_back(p);
            });
        }
    } catch (const std::bad_alloc &) {
        trimSpares(); // needs no hazards; the registry may have shrunk
        return;
    }
    std::sort(hazards.begin(), hazards.end());

    std::uint64_t oldestKept = std::numeric_limits<std::uint64_t>::max();
    std::erase_if(m_retired, [&](const Retired &r) {
        if (std::binary_search(hazards.begin(), hazards.end(), r.object)) {
            if (r.isBlock)
                oldestKept = std::min(oldestKept, r.version);
            return false;
        }
        if (r.isBlock)
            recycleBlock(static_cast<const Block *>(r.object));
        else
            garbage.add(const_cast<ErrorSink *>(static_cast<const ErrorSink *>(r.object)));
        return true;
    });
    trimSpares();
    // A removed node is listed exactly by the blocks of versions in
    // [addedVersion, removedVersion); it is destroyed once none of them is
    // retained. Nodes added after a block some reader holds are not kept for
    // it, however long that read lasts (a handler running a nested event
    // loop, say), so churn meanwhile holds no memory.
    std::vector<std::uint64_t> &kept = m_keptVersions;
    bool exact = true;
    try {
        kept.clear();
        for (const Retired &r : m_retired) {
            if (r.isBlock)
                kept.push_back(r.version);
        }
        std::sort(kept.begin(), kept.end());
    } catch (const std::bad_alloc &) {
        exact = false; // then by the oldest retained block alone, conservatively
    }
    auto listedByKeptBlock = [&](const Node *n) {
        if (!exact)
            return n->removedVersion > oldestKept;
        const auto it = std::lower_bound(kept.begin(), kept.end(), n->addedVersion);
        return it != kept.end() && *it < n->removedVersion;
    };
    std::erase_if(m_removed, [&](Node *n) {
        // A pinned node is still being waited for by address: freeing it
        // could let a new handler take the address and prolong that wait.
        if (n->waitPins != 0 || listedByKeptBlock(n))
            return false;
        garbage.add(n);
        return true;
    });
}

void RegistryCore::markRemoved(Node *node)
{
    // Readers that load the invoke function after the next heavy fence skip
    // the handler; a reader that loaded it before has announced the node and
    // is waited for.
    node->invoke.store(&removedInvoke, kHazardStore);
}

void RegistryCore::waitUntilIdle(std::span<const Node *const> nodes) noexcept
{
    const ThreadRecord *self = tl_record;
    for (ThreadRecord *rec = ThreadRecord::first(); rec; rec = rec->next.load(std::memory_order_acquire)) {
        if (rec == self)
            continue; // calls running on this thread complete normally
        rec->forEachLevel([&](const HazardLevel &level) {
            Backoff backoff;
            // `current` first, then `object`: if the level names one of the nodes
            // and is still in use afterwards, the thread is in that call (or
            // about to overwrite a stale `current` without running user code).
            while (std::binary_search(nodes.begin(), nodes.end(), level.current.load(kHazardLoad))
                   && level.object.load(kHazardLoad) != nullptr)
                backoff.pause();
        });
    }
}

bool RegistryCore::runningOnThisThread(const Node *node) noexcept
{
    // A layer's own calls (the Qt facade's marshalled calls and async steps
    // run outside any walk of ours).
    if (node->runningHere && node->runningHere(node))
        return true;
    // Every level this thread has in use is inside a handler call right now
    // (we are running on it), and names that handler in `current`.
    bool found = false;
    if (const ThreadRecord *self = tl_record) {
        self->forEachLevel([&](const HazardLevel &level) {
            found = found || (level.object.load(std::memory_order_relaxed) != nullptr
                              && level.current.load(std::memory_order_relaxed) == node);
        });
    }
    return found;
}

Node *RegistryCore::findRemoved(HandlerId id) const noexcept
{
    for (Node *n : m_removed) {
        if (n->id == id)
            return n;
    }
    return nullptr;
}

Node *RegistryCore::findLive(HandlerId id) const noexcept
{
    auto it = std::lower_bound(m_live.begin(), m_live.end(), id,
                               [](const Node *n, HandlerId key) { return n->id < key; });
    return it != m_live.end() && (*it)->id == id ? *it : nullptr;
}

HandlerId RegistryCore::add(Node *node, int priority)
{
    std::unique_ptr<Node, void (*)(Node *)> owned(node, [](Node *n) { n->destroy(n); });
    Garbage garbage;
    HandlerId id;
    {
        std::lock_guard lock(m_mutex);
        reserveFor(m_live, 1);
        reserveFor(m_retired, 1);
        // Taken under the mutex, so m_live stays sorted by id: any id reserved
        // earlier by a batch is smaller, and batches merge theirs in on commit.
        // A node may come with an id reserved earlier (see reserveId()).
        if (!node->id.isValid())
            node->id = reserveId();
        node->priority = priority;
        node->owner = this;

        Block *cur = m_head.load(std::memory_order_relaxed);
        const std::uint64_t range = cur->range.load(std::memory_order_relaxed);
        const std::uint32_t first = Block::firstOf(range);
        const std::uint32_t n = Block::countOf(range);
        Node **e = cur->entries(range);
        if (first + n < cur->capacity && (n == 0 || e[n - 1]->priority >= priority)) {
            // Append in place: readers of this block loaded a count <= n and never
            // look at slot n; the release store publishes it to later readers.
            e[n] = node;
            node->addedVersion = cur->version;
            cur->range.store(Block::pack(first, n + 1), std::memory_order_release);
        } else if (first != 0 && n != 0 && priority > e[0]->priority) {
            // Prepend in place, likewise: readers of this block began at
            // `first` or later and never look at the slot before it.
            e[-1] = node;
            node->addedVersion = cur->version;
            cur->range.store(Block::pack(first - 1, n + 1), std::memory_order_release);
        } else {
            // First position whose priority is lower: ties stay in registration order.
            Node **pos = std::upper_bound(e, e + n, priority,
                                          [](int p, const Node *x) { return p > x->priority; });
            Block *b = allocateBlock(std::size_t(n) + 1, grownCapacity(std::size_t(n) + 1));
            if (pos == e && n != 0)
                m_prepends = true; // after the last allocation: a failed add changes nothing
            Node **const begin = firstSlot(b, std::size_t(n) + 1);
            Node **out = std::copy(e, pos, begin);
            *out++ = node;
            b->setEntries(begin, std::copy(pos, e + n, out));
            publish(b, garbage);
            node->addedVersion = b->version;
        }
        // Capacity reserved above: cannot throw.
        if (m_live.empty() || m_live.back()->id < node->id)
            m_live.push_back(owned.release());
        else
            m_live.insert(std::lower_bound(m_live.begin(), m_live.end(), node, byId), owned.release());
        m_size.store(m_live.size(), std::memory_order_relaxed);
        id = node->id;
    }
    notifyObserver(true);
    return id;
}

void RegistryCore::notifyObserver(bool changed) const noexcept
{
    if (!changed)
        return;
    if (ObserverFn fn = m_observer.load(std::memory_order_acquire))
        fn(m_observerContext);
}

void RegistryCore::prepareWait(std::span<const Node *const> removed, bool wait,
                               std::span<const Node *const> earlier) noexcept
{
    // Pinned: not reclaimed (so its address not reused, and its removal hook
    // still callable) until finishRemoval() is done with it.
    for (const Node *n : removed)
        ++const_cast<Node *>(n)->waitPins;
    for (const Node *n : earlier)
        ++const_cast<Node *>(n)->waitPins;
    if (!wait || (removed.empty() && earlier.empty()))
        return;
    // Orders the invoke-function swap before reading the announcements.
    fenceAgainstReaders();
    m_retiredSinceFence = 0;
}

void RegistryCore::finishRemoval(std::span<const Node *const> removed, bool wait, Garbage &garbage,
                                 std::span<const Node *const> earlier)
{
    if (wait) {
        // One after the other: no call of a removed node starts any more, so
        // waiting for the second set after the first misses nothing.
        if (!removed.empty())
            waitUntilIdle(removed);
        if (!earlier.empty())
            waitUntilIdle(earlier);
    }
    for (const Node *n : removed) {
        if (n->removed)
            n->removed(const_cast<Node *>(n), wait ? Removal::Wait : Removal::NoWait);
    }
    for (const Node *n : earlier) {
        if (n->removed)
            n->removed(const_cast<Node *>(n), Removal::WaitForEarlier);
    }
    {
        std::lock_guard lock(m_mutex);
        for (const Node *n : removed)
            --const_cast<Node *>(n)->waitPins;
        for (const Node *n : earlier)
            --const_cast<Node *>(n)->waitPins;
        reclaim(garbage);
    }
    notifyObserver(!removed.empty());
}

bool RegistryCore::remove(HandlerId id, bool wait)
{
    Garbage garbage;
    return removeInto(id, wait, garbage);
}

bool RegistryCore::removeForAnchor(HandlerId id, bool wait, Anchor &anchor)
{
    Garbage garbage; // destroyed last, after the registry may have gone
    const bool removed = removeInto(id, wait, garbage);
    // Nothing below touches the registry: its destructor may run from here
    // on, on another thread or in a destructor `garbage` runs on this one.
    anchor.endRemoval();
    return removed;
}

bool RegistryCore::removeInto(HandlerId id, bool wait, Garbage &garbage)
{
    Node *node = nullptr;
    const Node *removed[1] = {};
    {
        std::unique_lock lock(m_mutex);
        node = findLive(id);
        if (!node) {
            // Removed already, by a concurrent remove() (possibly still
            // waiting) or a removeNoWait(): a waiting removal still waits for
            // its calls on other threads, so that whichever remove() returns,
            // the handler is idle. Reclaimed (or never known): nothing runs it.
            // Not from inside a call of that handler: the removal that won may
            // be waiting for this very call (two calls of a one-shot handler
            // removing it at once), and the handler runs here anyway.
            if (!wait || !(node = findRemoved(id)) || runningOnThisThread(node))
                return false;
            removed[0] = node;
            // Fences too: the earlier call may not have (a removeNoWait()).
            prepareWait({}, true, removed);
            lock.unlock();
            finishRemoval({}, true, garbage, removed);
            return false;
        }
        reserveFor(m_removed, 1);
        reserveFor(m_retired, 1);
        const Block *cur = m_head.load(std::memory_order_relaxed);
        const std::uint64_t range = cur->range.load(std::memory_order_relaxed);
        const std::uint32_t n = Block::countOf(range);
        // Keep slack so that the next append does not reallocate. In size_t:
        // n + n / 2 overflows 32 bits from n = 2^32 / 1.5 on.
        Block *b = allocateBlock(n - 1, static_cast<std::uint32_t>(std::min<std::size_t>(
            std::numeric_limits<std::uint32_t>::max(), std::max<std::size_t>(8, std::size_t(n) + n / 2))));
        Node **const begin = firstSlot(b, n - 1);
        Node *const *e = cur->entries(range);
        b->setEntries(begin, std::remove_copy(e, e + n, begin, node));

        markRemoved(node);
        m_live.erase(std::lower_bound(m_live.begin(), m_live.end(), node, byId));
        m_size.store(m_live.size(), std::memory_order_relaxed);
        publish(b, garbage);
        node->removedVersion = m_version;
        m_removed.push_back(node);
        removed[0] = node;
        prepareWait(removed, wait);
    }
    finishRemoval(removed, wait, garbage);
    return true;
}

std::size_t RegistryCore::clear(bool wait)
{
    Garbage garbage;
    std::vector<const Node *> removed;
    {
        std::lock_guard lock(m_mutex);
        if (m_live.empty())
            return 0;
        reserveFor(m_removed, m_live.size());
        reserveFor(m_retired, 1);
        removed.assign(m_live.begin(), m_live.end());
        for (Node *n : m_live)
            markRemoved(n);
        publish(&g_emptyBlock, garbage);
        for (Node *n : m_live) {
            n->removedVersion = m_version;
            m_removed.push_back(n);
        }
        m_live.clear();
        m_size.store(0, std::memory_order_relaxed);
        std::sort(removed.begin(), removed.end());
        prepareWait(removed, wait);
    }
    finishRemoval(removed, wait, garbage);
    return removed.size();
}

std::size_t RegistryCore::apply(BatchOps &ops, bool wait)
{
    Garbage garbage;
    std::vector<const Node *> removed;
    std::vector<const Node *> earlier; // named in the batch, removed before by other calls
    bool added = false;
    {
        std::lock_guard lock(m_mutex);
        // Allocate everything first: nothing below may fail half-way.
        reserveFor(m_live, ops.adds.size());
        reserveFor(m_removed, ops.removes.size());
        reserveFor(m_retired, 1);
        std::sort(ops.removes.begin(), ops.removes.end());
        ops.removes.erase(std::unique(ops.removes.begin(), ops.removes.end()), ops.removes.end());
        for (HandlerId id : ops.removes) {
            if (Node *n = findLive(id))
                removed.push_back(n);
            else if (Node *e = wait ? findRemoved(id) : nullptr; e && !runningOnThisThread(e))
                earlier.push_back(e); // as in remove()
        }
        std::sort(removed.begin(), removed.end());
        std::sort(earlier.begin(), earlier.end()); // both by address, for waitUntilIdle()

        const Block *cur = m_head.load(std::memory_order_relaxed);
        const std::uint64_t range = cur->range.load(std::memory_order_relaxed);
        const std::uint32_t n = Block::countOf(range);
        const std::size_t total = n - removed.size() + ops.adds.size();
        const bool publishing = !(ops.adds.empty() && removed.empty());
        // The last allocation, before anything changes the batch: a failed
        // commit leaves its adds in the order Batch::remove() searches (by id).
        Block *const b = publishing ? allocateBlock(total, grownCapacity(total)) : nullptr;
        for (Node *a : ops.adds)
            a->owner = this;
        // New handlers arrive in id order (one thread fills a batch); sort them
        // by priority, stable so that ties keep registration order.
        std::stable_sort(ops.adds.begin(), ops.adds.end(),
                         [](const Node *x, const Node *y) { return x->priority > y->priority; });
        if (!publishing) {
            // Nothing to publish; perhaps handlers removed earlier to wait for.
            if (earlier.empty())
                return 0;
        } else {
            Node **const begin = firstSlot(b, total);
            Node **out = begin;
            Node *const *e = cur->entries(range);
            auto add = ops.adds.begin();
            for (std::uint32_t i = 0; i < n; ++i) {
                if (std::binary_search(removed.begin(), removed.end(), e[i]))
                    continue;
                // Existing handlers precede new ones of equal priority.
                while (add != ops.adds.end() && (*add)->priority > e[i]->priority)
                    *out++ = *add++;
                *out++ = e[i];
            }
            out = std::copy(add, ops.adds.end(), out);
            b->setEntries(begin, out);

            for (const Node *r : removed)
                markRemoved(const_cast<Node *>(r));
            std::erase_if(m_live, [&](Node *x) { return std::binary_search(removed.begin(), removed.end(), x); });
            // A concurrent add() may have taken a larger id than some of ours.
            const auto mid = m_live.insert(m_live.end(), ops.adds.begin(), ops.adds.end());
            std::sort(mid, m_live.end(), byId);
            std::inplace_merge(m_live.begin(), mid, m_live.end(), byId);
            added = !ops.adds.empty();
            m_size.store(m_live.size(), std::memory_order_relaxed);
            publish(b, garbage);
            for (Node *a : ops.adds)
                a->addedVersion = b->version;
            ops.adds.clear(); // owned by the registry now
            for (const Node *r : removed) {
                const_cast<Node *>(r)->removedVersion = m_version;
                m_removed.push_back(const_cast<Node *>(r));
            }
        }
        prepareWait(removed, wait, earlier);
    }
    finishRemoval(removed, wait, garbage, earlier);
    notifyObserver(removed.empty() && added);
    return removed.size();
}

bool RegistryCore::contains(HandlerId id) const
{
    std::lock_guard lock(m_mutex);
    return findLive(id) != nullptr;
}

void RegistryCore::setErrorSink(ErrorSink *sink)
{
    // Owns `sink` until it is published, also if making room fails.
    std::unique_ptr<ErrorSink, void (*)(ErrorSink *)> owned(sink, [](ErrorSink *p) {
        if (p)
            p->destroy(p);
    });
    Garbage garbage;
    std::lock_guard lock(m_mutex);
    reserveFor(m_retired, 1);
    if (ErrorSink *old = m_errorSink.exchange(owned.release(), kPublish)) {
        m_retired.push_back(Retired{old, false, 0});
        ++m_retiredSinceFence;
        reclaim(garbage);
    }
}

void RegistryCore::setMirror(std::atomic<std::uintptr_t> *mirror) noexcept
{
    std::lock_guard lock(m_mutex);
    m_mirror = mirror;
    followMirror(m_head.load(std::memory_order_relaxed));
}

void RegistryCore::followMirror(const Block *block) noexcept
{
    // A read-modify-write, so that a divert bit the layer flips meanwhile is kept.
    const auto address = reinterpret_cast<std::uintptr_t>(block);
    std::uintptr_t word = m_mirror->load(std::memory_order_relaxed);
    while (!m_mirror->compare_exchange_weak(word, address | (word & kMirrorDivert), kPublish,
                                            std::memory_order_relaxed)) {
    }
}

std::uintptr_t RegistryCore::emptyMirror() noexcept
{
    return reinterpret_cast<std::uintptr_t>(&g_emptyBlock);
}

std::shared_ptr<Anchor> RegistryCore::anchor()
{
    std::lock_guard lock(m_mutex);
    if (!m_anchor)
        m_anchor = std::make_shared<Anchor>(this);
    return m_anchor;
}

std::size_t RegistryCore::pendingReclamation() const
{
    std::lock_guard lock(m_mutex);
    return m_retired.size() + m_removed.size();
}

std::size_t RegistryCore::spareCapacity() const
{
    std::lock_guard lock(m_mutex);
    std::size_t total = 0;
    for (std::size_t i = 0; i < m_spareCount; ++i)
        total += m_spare[i].capacity;
    return total;
}

void RegistryCore::notifyBusy(const void *event) const noexcept
{
    HazardScope scope; // a nested level, or level 0 of a record taken now
    dispatch(scope, event);
}

std::exception_ptr foreignException() noexcept
{
    try {
        static const std::exception_ptr e = std::make_exception_ptr(
            std::runtime_error("sigreg: a handler threw an exception that is not a C++ exception"));
        return e;
    } catch (...) {
        return std::current_exception(); // std::bad_alloc: not null either
    }
}

void RegistryCore::reportFailure(const Node *node, const char *what) const noexcept
{
    m_failures.fetch_add(1, std::memory_order_relaxed);
    const HandlerFailure failure{node->id, currentException(), what};
    HazardScope scope;
    const ErrorSink *sink = scope.protect(m_errorSink);
    if (!sink) {
        m_unhandled.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    // This level's `current` may still name a handler from an earlier read;
    // clear it before user code runs, or a remover of that handler would
    // wait for this error handler.
    scope.announce(nullptr);
    try {
        sink->call(sink, failure);
#if defined(__GLIBCXX__)
    } catch (abi::__forced_unwind &) {
        std::terminate(); // a cancellation in the error handler: as in the notify loop
#endif
    } catch (...) {
        m_unhandled.fetch_add(1, std::memory_order_relaxed);
    }
}

namespace {
/// The guard removals in progress on this thread, innermost first: a removal
/// destroys the handler, whose destructor may remove more (nesting) or
/// destroy the registry itself (a handler holding the last reference to the
/// registry's owner). Frames live on the stack of Anchor::remove().
struct AnchorRemoval {
    const Anchor *anchor;
    const AnchorRemoval *outer;
};
constinit thread_local const AnchorRemoval *tl_anchorRemovals SIGREG_TLS_INITIAL_EXEC = nullptr;
} // namespace

bool Anchor::remove(HandlerId id, bool wait) noexcept
{
    std::uint32_t s = m_state.load(std::memory_order_acquire);
    do {
        if (s & kDead)
            return false;
    } while (!m_state.compare_exchange_weak(s, s + 1, std::memory_order_acquire));
    const AnchorRemoval frame{this, tl_anchorRemovals};
    tl_anchorRemovals = &frame;
    // Allocation failure while removing cannot be reported from a destructor:
    // std::terminate (noexcept) is the honest outcome. The removal ends the
    // count (endRemoval()) before it destroys the handler, whose destructor
    // may destroy the registry: m_core may dangle once it returns; this
    // object is kept alive by the caller's reference.
    return m_core->removeForAnchor(id, wait, *this);
}

void Anchor::endRemoval() noexcept
{
    // The innermost frame is this removal's: the frames of removals nested
    // in it (from the observer) have ended.
    tl_anchorRemovals = tl_anchorRemovals->outer;
    // Once the registry is dying, every end is announced: its destructor may
    // be waiting for a count other than 0 (its own thread's removals).
    if (m_state.fetch_sub(1, std::memory_order_acq_rel) & kDead)
        m_state.notify_all();
}

void Anchor::kill() noexcept
{
    // Waits for the removals in progress on other threads, until they are
    // done with the registry (a removal ends its count before it destroys the
    // handler it removed, so a handler's destructor is never waited for: it
    // may be destroying another registry whose destructor waits for this
    // thread). Those of this thread are further up its stack (the registry is
    // destroyed from inside one of them, by the observer, which a layer may
    // let run user code: the Qt facade's countChanged()): waiting for them
    // would never end, and the observer is the last thing a removal calls
    // before it ends its count.
    std::uint32_t own = 0;
    for (const AnchorRemoval *f = tl_anchorRemovals; f; f = f->outer)
        own += f->anchor == this ? 1u : 0u;
    std::uint32_t s = m_state.fetch_or(kDead, std::memory_order_acq_rel) | kDead;
    while (s != (kDead | own)) {
        m_state.wait(s, std::memory_order_acquire);
        s = m_state.load(std::memory_order_acquire);
    }
}

} // namespace sigreg::detail
