// SPDX-License-Identifier: MIT
// Sigreg — the bounded ring behind a bus receiver (internal).
//
// Not part of the public API: names here may change in any release.
//
// One ring per receiver: many producers (emitting threads), one consumer
// (the receiver's owner). It holds the last `capacity` events; a producer
// that finds the slot it needs still holding an unread event from one lap
// earlier overwrites it, and the consumer learns how many it missed.
//
// Every slot carries a sequence word: (position << 3) | state. For position
// p the slot is p % capacity, and it moves through
//
//   Free(p) -> Writing(p) -> Full(p) -> Reading(p) -> Free(p + capacity)
//                                    \-> Writing(p + capacity)   (overwrite)
//                         \-> Missed(p)                          (copy threw)
//
// Producers take positions with one fetch_add on `tail`, so positions are
// the order of emission (per producer, the order of its emits). A producer
// claims its slot with a CAS from Free(p) or, overwriting, from Full or
// Missed(p - capacity); anything else means an earlier producer or the
// consumer is still in that slot, and it waits (they finish without
// blocking: a copy or a move). The consumer claims Full(head) with a CAS; if
// the slot shows a later position, it was overwritten: the consumer has
// lagged and jumps to the oldest position still retained.
//
// Waking a sleeping consumer costs producers nothing while nobody sleeps: a
// consumer that is about to block sets a bit in `waiters`, then runs the heavy
// fence (see hazard.h) and checks the ring again; a producer publishes its
// slot, runs the light fence and checks `waiters`. One of them sees the other.
#pragma once

#include <sigreg/detail/hazard.h>
#include <sigreg/sigreg_export.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace sigreg::detail {

/// The type-erased part of a ring: positions, waiting, closing, wake-up hook.
class SIGREG_CORE_EXPORT RingBase {
public:
    enum State : std::uint64_t { Free = 0, Writing = 1, Full = 2, Reading = 3, Missed = 4 };
    static constexpr unsigned kStateBits = 3;
    static constexpr std::uint64_t kStateMask = (1u << kStateBits) - 1;

    /// What the consumer finds at its head.
    enum class Peek { Ready, Overwritten, NotReady };

    /// Called (on a producer's thread, or the closing thread) when the hook
    /// is armed and an event or the closure arrives; disarms the hook. It
    /// returns false if it could not wake the consumer (out of memory): the
    /// hook is then armed again, and the next event fires it again.
    using WakeHook = bool (*)(void *context) noexcept;

    RingBase(const RingBase &) = delete;
    RingBase &operator=(const RingBase &) = delete;

    [[nodiscard]] std::size_t capacity() const noexcept { return m_capacity; }
    [[nodiscard]] bool isClosed() const noexcept { return m_closed.load(std::memory_order_acquire); }

    /// Events a consumer could still take: emitted since its head, at most
    /// `capacity`, including any still being written. Consumer thread only.
    [[nodiscard]] std::size_t pending() const noexcept
    {
        const std::uint64_t t = m_tail.load(std::memory_order_acquire);
        const std::uint64_t n = t > m_head ? t - m_head : 0;
        return n > m_capacity ? m_capacity : static_cast<std::size_t>(n);
    }
    /// Events this consumer missed so far (overrun, or a copy that threw).
    [[nodiscard]] std::uint64_t missedTotal() const noexcept { return m_missedTotal; }

    /// What the slot at the consumer's head holds now.
    [[nodiscard]] Peek peek(std::memory_order order = std::memory_order_acquire) const noexcept
    {
        const std::uint64_t seq = seqAt(m_head).load(order);
        const std::uint64_t pos = seq >> kStateBits;
        if (pos == m_head) {
            const std::uint64_t st = seq & kStateMask;
            return (st == Full || st == Missed) ? Peek::Ready : Peek::NotReady;
        }
        return pos > m_head ? Peek::Overwritten : Peek::NotReady;
    }

    /// Consumer: after peek() == Overwritten, jumps to the oldest retained
    /// position and returns how many events were skipped (at least one).
    std::uint64_t skipOverwritten() noexcept
    {
        // The slot shows a later lap: position `later` >= head + capacity was
        // taken, so `tail` is past it (the claim is a release; peek() acquired).
        const std::uint64_t later = seqAt(m_head).load(std::memory_order_acquire) >> kStateBits;
        std::uint64_t t = m_tail.load(std::memory_order_acquire);
        if (t <= later)
            t = later + 1;
        const std::uint64_t oldest = t - m_capacity;
        if (oldest <= m_head) // cannot happen: later >= head + capacity
            return 0;
        const std::uint64_t skipped = oldest - m_head;
        m_head = oldest;
        m_missedTotal += skipped;
        return skipped;
    }

    /// Blocks until peek() != NotReady, the ring is closed, or `deadline`
    /// (when set) passes. Returns false on timeout. Consumer thread only.
    bool waitReady(const std::chrono::steady_clock::time_point *deadline);

    /// Arms the wake-up hook (set with setHook()) for when the consumer has
    /// drained the ring. Returns true when armed, or when a producer already
    /// fired it; false when an event arrived meanwhile and the caller should
    /// drain again (the hook is then not armed). Consumer thread only.
    bool armHook() noexcept;
    /// Arms the hook whatever the ring holds, so that the next event (or the
    /// closure) fires it: for a consumer that found events but could not
    /// schedule itself to drain them (out of memory). Consumer thread only.
    void armHookForNextEvent() noexcept;
    /// Installs the hook. It is called under the ring's mutex, so after
    /// clearHook() returns it is neither running nor called again.
    void setHook(WakeHook hook, void *context) noexcept;
    void clearHook() noexcept;

    /// No more events will arrive: wakes a waiting consumer and fires the
    /// hook. Idempotent.
    void close() noexcept;

protected:
    RingBase(unsigned char *slotMemory, std::size_t stride, std::size_t capacity) noexcept
        : m_slots(slotMemory), m_stride(stride), m_capacity(capacity),
          m_pow2((capacity & (capacity - 1)) == 0)
    {
    }
    ~RingBase() = default;

    [[nodiscard]] std::size_t indexOf(std::uint64_t pos) const noexcept
    {
        return static_cast<std::size_t>(m_pow2 ? (pos & (m_capacity - 1)) : (pos % m_capacity));
    }
    // The sequence word is the first member of every slot.
    [[nodiscard]] std::atomic<std::uint64_t> &seqAt(std::uint64_t pos) const noexcept
    {
        return *std::launder(reinterpret_cast<std::atomic<std::uint64_t> *>(m_slots + indexOf(pos) * m_stride));
    }

    /// Producer, after publishing: wakes a sleeping consumer or fires the
    /// hook, if any is waiting. Costs one load otherwise.
    SIGREG_ALWAYS_INLINE void wakeIfWaiting() noexcept
    {
        lightFence();
        if (SIGREG_UNLIKELY(m_waiters.load(kHazardLoad) != 0))
            wakeSlow();
    }
    void wakeSlow() noexcept;
    void fireHook() noexcept;
    /// Producer: waits for a slot held by an earlier lap's producer or by the consumer.
    static void backoff(unsigned &round) noexcept;

    static constexpr std::uint32_t kSleeper = 1;
    static constexpr std::uint32_t kHook = 2;

    unsigned char *const m_slots;
    const std::size_t m_stride;
    const std::size_t m_capacity;
    const bool m_pow2;

    // Producers.
    alignas(64) std::atomic<std::uint64_t> m_tail{0};

    // Consumer-private.
    alignas(64) std::uint64_t m_head = 0;
    std::uint64_t m_missedTotal = 0;

    // Waking.
    alignas(64) std::atomic<std::uint32_t> m_waiters{0};
    std::atomic<bool> m_closed{false};
    std::mutex m_mutex;              // sleeping consumer; the hook
    WakeHook m_hook = nullptr;       // guarded by m_mutex
    void *m_hookContext = nullptr;   // guarded by m_mutex
    std::condition_variable m_cv;
};

/// A ring of events of type `E`.
template <class E>
class Ring final : public RingBase {
    struct Slot {
        explicit Slot(std::uint64_t s) noexcept : seq(s) {}
        std::atomic<std::uint64_t> seq;
        alignas(E) unsigned char storage[sizeof(E)];

        E *value() noexcept { return std::launder(reinterpret_cast<E *>(storage)); }
    };
    static_assert(std::is_standard_layout_v<Slot> && std::is_trivially_destructible_v<Slot>);

public:
    explicit Ring(std::size_t capacity)
        : RingBase(reinterpret_cast<unsigned char *>(allocate(capacity)), sizeof(Slot), capacity)
    {
    }
    ~Ring()
    {
        Slot *all = typedSlots();
        for (std::size_t i = 0; i < m_capacity; ++i) {
            if ((all[i].seq.load(std::memory_order_relaxed) & kStateMask) == Full)
                all[i].value()->~E();
        }
        ::operator delete(all, std::align_val_t(alignof(Slot)));
    }

    /// Producer: appends a copy of `event`, overwriting the oldest unread
    /// one if the ring is full. If the copy throws, the position is marked
    /// missed (the consumer counts it as lagged) and the exception propagates.
    void push(const E &event)
    {
        const std::uint64_t pos = m_tail.fetch_add(1, std::memory_order_relaxed);
        Slot &slot = slotAt(pos);
        const std::uint64_t mine = pos << kStateBits;
        const std::uint64_t lapBefore = (pos - m_capacity) << kStateBits; // meaningful when pos >= capacity
        std::uint64_t seq = slot.seq.load(std::memory_order_acquire);
        for (unsigned round = 0;;) {
            const bool claimable = seq == (mine | Free)
                || (pos >= m_capacity && (seq == (lapBefore | Full) || seq == (lapBefore | Missed)));
            if (claimable) {
                // Release: a consumer that sees Writing(pos) also sees `tail` past pos.
                if (slot.seq.compare_exchange_weak(seq, mine | Writing, std::memory_order_acq_rel,
                                                   std::memory_order_acquire)) {
                    break;
                }
                continue;
            }
            backoff(round);
            seq = slot.seq.load(std::memory_order_acquire);
        }
        if ((seq & kStateMask) == Full)
            slot.value()->~E(); // overwritten unread: the consumer will see it lagged
        try {
            ::new (static_cast<void *>(slot.storage)) E(event);
        } catch (...) {
            slot.seq.store(mine | Missed, kHazardStore);
            wakeIfWaiting();
            throw;
        }
        slot.seq.store(mine | Full, kHazardStore);
        wakeIfWaiting();
    }

    /// Consumer: claims the event at the head, if peek() == Ready, for as
    /// long as it lives. The caller moves the event straight to where it
    /// goes (value()), then release() frees the slot; a Head destroyed
    /// without release() (the move threw) leaves the event for the next
    /// take. So no move of the event happens after its slot is freed, and a
    /// throwing move loses nothing. A missed position (missed()) is released
    /// without a value (then counted in missedTotal()).
    class Head {
    public:
        explicit Head(Ring &ring) noexcept : m_ring(ring)
        {
            Slot &slot = ring.slotAt(ring.m_head);
            const std::uint64_t mine = ring.m_head << kStateBits;
            std::uint64_t seq = slot.seq.load(std::memory_order_acquire);
            const std::uint64_t state = seq & kStateMask;
            if ((seq >> kStateBits) != ring.m_head || (state != Full && state != Missed))
                return;
            if (!slot.seq.compare_exchange_strong(seq, mine | Reading, std::memory_order_acquire,
                                                  std::memory_order_relaxed)) {
                return;
            }
            m_slot = &slot;
            m_seq = seq;
        }
        Head(const Head &) = delete;
        Head &operator=(const Head &) = delete;
        ~Head()
        {
            if (m_slot)
                m_slot->seq.store(m_seq, std::memory_order_release); // still Full: taken next time
        }

        /// False if a producer overwrote the slot meanwhile (peek() again).
        [[nodiscard]] bool claimed() const noexcept { return m_slot != nullptr; }
        /// The position holds no event (its copy threw). Only when claimed().
        [[nodiscard]] bool missed() const noexcept { return (m_seq & kStateMask) == Missed; }
        /// The event. Only when claimed() and not missed().
        [[nodiscard]] E &value() noexcept { return *m_slot->value(); }
        /// The event was moved out (or the position was missed): frees the
        /// slot and advances the head. Only when claimed().
        void release() noexcept { free(missed()); }

        /// Drops the event instead of moving it out (its move threw, and the
        /// consumer will not retry): destroys it, counts it missed, frees
        /// the slot and advances the head. Only when claimed().
        void discard() noexcept { free(true); }

    private:
        void free(bool countMissed) noexcept
        {
            if (!missed())
                m_slot->value()->~E();
            if (countMissed)
                ++m_ring.m_missedTotal;
            m_slot->seq.store((m_ring.m_head + m_ring.m_capacity) << kStateBits | Free, std::memory_order_release);
            ++m_ring.m_head;
            m_slot = nullptr;
        }

        Ring &m_ring;
        Slot *m_slot = nullptr;
        std::uint64_t m_seq = 0;
    };

private:
    static Slot *allocate(std::size_t capacity)
    {
        if (capacity == 0 || capacity > std::size_t(-1) / sizeof(Slot))
            throw std::length_error("sigreg::Receiver: capacity out of range");
        Slot *all = static_cast<Slot *>(::operator new(capacity * sizeof(Slot), std::align_val_t(alignof(Slot))));
        for (std::size_t i = 0; i < capacity; ++i)
            ::new (static_cast<void *>(&all[i])) Slot(std::uint64_t(i) << kStateBits | Free);
        return all;
    }
    Slot *typedSlots() const noexcept { return std::launder(reinterpret_cast<Slot *>(m_slots)); }
    Slot &slotAt(std::uint64_t pos) const noexcept { return typedSlots()[indexOf(pos)]; }
};

} // namespace sigreg::detail
