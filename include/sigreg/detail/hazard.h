// SPDX-License-Identifier: MIT
// Sigreg — per-thread hazard records and asymmetric fences (internal).
//
// Not part of the public API: names here may change in any release.
// The design is described at the top of <sigreg/registry.h> and in
// docs/ARCHITECTURE.md.
#pragma once

#include <sigreg/sigreg_export.h>

#include <atomic>
#include <cstdint>

#if defined(__SANITIZE_THREAD__)
#define SIGREG_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SIGREG_TSAN 1
#endif
#endif

// AddressSanitizer (and with it LeakSanitizer): the library tells it about
// memory it keeps on purpose (spare snapshot blocks, parcels kept alive).
#if defined(__SANITIZE_ADDRESS__)
#define SIGREG_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIGREG_ASAN 1
#endif
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SIGREG_LIKELY(x) __builtin_expect(!!(x), 1)
#define SIGREG_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SIGREG_NOINLINE __attribute__((noinline))
#define SIGREG_COLD __attribute__((cold, noinline))
#define SIGREG_TLS_INITIAL_EXEC __attribute__((tls_model("initial-exec")))
#define SIGREG_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define SIGREG_ALWAYS_INLINE inline
#define SIGREG_LIKELY(x) (x)
#define SIGREG_UNLIKELY(x) (x)
#define SIGREG_NOINLINE
#define SIGREG_COLD
#define SIGREG_TLS_INITIAL_EXEC
#endif

// Asymmetric fences: the reader side is a compiler-only barrier and the writer
// side forces a full barrier on every CPU running one of our threads
// (membarrier / FlushProcessWriteBuffers). Where no such system call is known,
// or under ThreadSanitizer (which does not model it), both sides use
// sequentially consistent operations instead. SIGREG_ASYMMETRIC_FENCES may be
// predefined to 0 to force the portable variant. On Linux the writer side is
// chosen once, at the first heavy fence: expedited membarrier, else an
// mprotect-induced TLB shootdown; if neither works the process aborts with a
// message (never a silent downgrade). The test knob SIGREG_FENCE=mprotect
// forces the second, SIGREG_FENCE=unavailable simulates both failing (see
// src/core/hazard.cpp).
#ifndef SIGREG_ASYMMETRIC_FENCES
#if defined(SIGREG_TSAN)
#define SIGREG_ASYMMETRIC_FENCES 0
#elif defined(__linux__) && (defined(__x86_64__) || defined(__i386__))
#define SIGREG_ASYMMETRIC_FENCES 1
#elif defined(_WIN32)
#define SIGREG_ASYMMETRIC_FENCES 1
#else
#define SIGREG_ASYMMETRIC_FENCES 0
#endif
#endif

// Module copies of the thread's record pointer (see tl_moduleRecord below):
// on ELF platforms with GCC or Clang, where a hidden thread_local in the
// executable is reached with one fs-relative load. SIGREG_MODULE_RECORDS may
// be predefined to 0 to read the library's own pointer everywhere.
#ifndef SIGREG_MODULE_RECORDS
#if defined(__ELF__) && (defined(__GNUC__) || defined(__clang__))
#define SIGREG_MODULE_RECORDS 1
#else
#define SIGREG_MODULE_RECORDS 0
#endif
#endif

namespace sigreg::detail {

struct Node;

/// Reader side of the asymmetric fence: orders a hazard store before the
/// following loads. In the symmetric protocol every hazard operation is
/// sequentially consistent, which orders them without any fence (and keeps
/// the protocol visible to ThreadSanitizer, which does not model fences).
inline void lightFence() noexcept
{
#if SIGREG_ASYMMETRIC_FENCES
    std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

/// A full fence in the asymmetric protocol, where it pairs with another full
/// fence; nothing in the symmetric one (see lightFence()).
inline void protocolFence() noexcept
{
#if SIGREG_ASYMMETRIC_FENCES
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

/// Writer side: after it returns, every hazard store that any thread made
/// before its following light fence is visible to the caller, or that
/// thread's loads after the light fence see everything the caller wrote
/// before this call.
SIGREG_CORE_EXPORT void heavyFence() noexcept;

// The two variants of the protocol must not meet in one process: readers
// built for asymmetric fences rely on writers that issue the heavy fence,
// which a library built for sequentially consistent operations never does
// (and the other way round, readers without their seq_cst operations). Each
// library build defines exactly one of these symbols; every registry built in
// a module references the one that module's headers chose (see
// requireMatchingProtocol()), so a module compiled with the other variant
// (say, with -fsanitize=thread against a library built without it, or with a
// different SIGREG_ASYMMETRIC_FENCES) fails to link, with an undefined
// reference naming the variant the library lacks.
#if SIGREG_ASYMMETRIC_FENCES
SIGREG_CORE_EXPORT extern const char protocolAsymmetricFences;
#else
SIGREG_CORE_EXPORT extern const char protocolSequentiallyConsistent;
#endif

/// References this module's protocol variant (see above). Costs nothing at
/// run time; called by the registries' constructors.
inline void requireMatchingProtocol() noexcept
{
#if SIGREG_ASYMMETRIC_FENCES
    const char *variant = &protocolAsymmetricFences;
#else
    const char *variant = &protocolSequentiallyConsistent;
#endif
#if defined(__GNUC__) || defined(__clang__)
    asm volatile("" : : "r"(variant)); // keeps the reference, emits nothing
#else
    static_cast<void>(*static_cast<const volatile char *>(variant));
#endif
}

/// Memory orders of the hazard protocol. With asymmetric fences the plain
/// release/acquire pairs are enough; otherwise the Dekker-style handshake
/// needs sequential consistency (and ThreadSanitizer can follow it).
#if SIGREG_ASYMMETRIC_FENCES
inline constexpr std::memory_order kHazardStore = std::memory_order_release;
inline constexpr std::memory_order kHazardLoad = std::memory_order_acquire;
#else
inline constexpr std::memory_order kHazardStore = std::memory_order_seq_cst;
inline constexpr std::memory_order kHazardLoad = std::memory_order_seq_cst;
#endif

/// One nesting level of one thread's reads: the handler being called and the
/// snapshot (or other shared object) being read.
///
/// The level is in use while `object` is non-null. `current` is meaningful
/// only then: it is not cleared when a read ends (one store less per notify),
/// and a new read overwrites it before it calls any handler (so every scope
/// that runs user code announces first). Field order matters for speed, not
/// correctness: with `current` first, level 0's announcement is at the
/// record's own address, so the inline notify path holds one pointer across
/// its handler calls for both of its stores (the announcement, at offset 0,
/// and the final clear of `object`, at offset 8). With `object` first GCC 12
/// kept a second pointer and spilled two registers per notify.
struct HazardLevel {
    std::atomic<const Node *> current{nullptr};
    std::atomic<const void *> object{nullptr};

    constexpr HazardLevel() noexcept = default;
    constexpr explicit HazardLevel(const void *busy) noexcept : object(busy) {}

    /// True while a read holds this level (read by its owning thread only).
    bool inUse() const noexcept { return object.load(std::memory_order_relaxed) != nullptr; }
};

/// A chunk of extra levels for threads that nest notifications deeper than
/// the inline levels of their record. Chunks are never freed while the
/// process runs; they stay with the record and are reused by its next owner.
/// Aligned like a record, so that two threads' chunks share no cache line
/// (nor an adjacent-line prefetch pair).
struct alignas(128) LevelChunk {
    static constexpr std::uint32_t kLevels = 32;
    HazardLevel levels[kLevels];
    std::atomic<LevelChunk *> next{nullptr};
};

/// Per-thread hazard record. Written only by its owning thread (the notify
/// path), read by writers. Records are never freed: when a thread exits its
/// record is marked free and handed to the next thread that needs one, so a
/// writer scanning the list can never touch freed memory.
///
/// A level is in use exactly while its `object` slot is non-null, so there is
/// no depth counter: the outermost notify checks that level 0 is free (a load
/// that only feeds a well-predicted branch), nested ones look for the next
/// free level. A counter would put a store-to-load dependency on every notify.
///
/// 128-byte alignment: Intel's spatial prefetcher moves cache lines in pairs,
/// so two threads' records in neighbouring 64-byte lines could still contend.
struct alignas(128) ThreadRecord {
    static constexpr std::uint32_t kInlineLevels = 8;

    constexpr ThreadRecord() noexcept = default;
    /// The placeholder's constructor: level 0 permanently in use (see
    /// tl_record).
    struct Placeholder {};
    constexpr explicit ThreadRecord(Placeholder) noexcept : levels{HazardLevel(this)} {}

    // Hot, owner-written part.
    HazardLevel levels[kInlineLevels];

    // Cold part.
    std::atomic<LevelChunk *> chunks{nullptr};
    std::atomic<ThreadRecord *> next{nullptr};
    std::atomic<bool> inUse{false};

    /// The module copies of the thread's record pointer that name this
    /// record (see tl_moduleRecord), so that they are reset to the
    /// placeholder before the record is handed back at thread exit. Guarded
    /// by a process-wide mutex (attach, detach and release are rare).
    static constexpr std::uint32_t kModuleSlots = 8;
    struct ModuleSlot {
        ThreadRecord **slot = nullptr;
        const void *module = nullptr;
    };
    ModuleSlot moduleSlots[kModuleSlots] = {};
    /// Written under that mutex; atomic so that attachModuleSlot() can see a
    /// full list without taking the mutex (a notify takes no lock).
    std::atomic<std::uint32_t> moduleSlotCount{0};

    /// The level for a read that found level 0 of this record in use: on the
    /// placeholder, level 0 of the calling thread's own record (taken now);
    /// otherwise a free level other than level 0, for a nested read
    /// (allocating a chunk the first time a record nests deeper than its
    /// inline levels).
    SIGREG_CORE_EXPORT HazardLevel *busyLevel();

    /// Calls `f(level)` for every level of this record.
    template <class F>
    void forEachLevel(F &&f) const
    {
        for (const HazardLevel &l : levels)
            f(l);
        for (LevelChunk *c = chunks.load(std::memory_order_acquire); c;
             c = c->next.load(std::memory_order_acquire)) {
            for (const HazardLevel &l : c->levels)
                f(l);
        }
    }

    /// The calling thread's record, creating or reusing one on first use.
    SIGREG_CORE_EXPORT static ThreadRecord *acquire();
    /// True for the placeholder that tl_record names before a thread's first
    /// read (never in the list of records).
    SIGREG_CORE_EXPORT bool isPlaceholder() const noexcept;
    /// Head of the process-wide list of records.
    SIGREG_CORE_EXPORT static ThreadRecord *first() noexcept;
};

/// The calling thread's record; before its first read (and again after its
/// record was handed back at thread exit) a shared placeholder whose level 0
/// is permanently in use. So the notify path never tests for null: the check
/// for a nested read, which it makes anyway, also catches a thread without a
/// record, and both go to the out-of-line busyLevel(). Nothing ever writes
/// to the placeholder. Defined once, in the compiled core library, so that
/// every module of a process agrees on what "this thread" is.
extern SIGREG_CORE_EXPORT constinit thread_local ThreadRecord *tl_record SIGREG_TLS_INITIAL_EXEC;

/// The placeholder record that tl_record names while a thread has none.
extern SIGREG_CORE_EXPORT constinit ThreadRecord g_placeholderRecord;

#if SIGREG_MODULE_RECORDS
// One definition per module (shared object or executable), whatever the
// module's default visibility.
#define SIGREG_MODULE_LOCAL __attribute__((visibility("hidden")))

/// This module's copy of tl_record, read by the inline notify paths.
///
/// tl_record lives in the core library, so code in another module (the
/// application, a plugin) reaches it through the GOT: two dependent loads
/// on every notify. A hidden thread_local defined in each module is one
/// fs-relative load from the executable (the linker relaxes the access to a
/// constant offset). The copy is either the placeholder or the thread's
/// current record, never anything else:
/// - it starts as the placeholder, so a module's first read on a thread
///   takes the out-of-line path, which then attaches the copy
///   (attachThisModule());
/// - attaching lists the copy in the record, and the record is handed back
///   at thread exit only after every listed copy was reset to the
///   placeholder (under a process-wide mutex, like attaching);
/// - a module being unloaded (or the executable's statics being destroyed)
///   resets and unlists its copies on every thread, so that no thread's exit
///   writes to a module's thread-local storage that may be reused.
/// A record lists at most ThreadRecord::kModuleSlots copies; a further
/// module's copy stays the placeholder, and its reads keep taking the
/// out-of-line path (correct, slower).
///
/// A plain pointer accessed with the compiler's atomic builtins (another
/// thread resets it when a module is unloaded), not a std::atomic: with
/// -fsanitize=null GCC checks the address of a std::atomic thread_local
/// for null using the flags of an add that the linker may relax to a lea,
/// which reports a null address that is not null.
SIGREG_MODULE_LOCAL inline constinit thread_local ThreadRecord *tl_moduleRecord SIGREG_TLS_INITIAL_EXEC =
    &g_placeholderRecord;

/// Set when this module's statics are being destroyed: no copy is attached
/// afterwards.
SIGREG_MODULE_LOCAL inline constinit std::atomic<bool> g_moduleDetached{false};

/// Lists `slot` (the calling thread's copy in the module `module`) in the
/// calling thread's record and points it there, if the thread has a record,
/// the list has room and `detached` (the module's g_moduleDetached, read
/// under the same mutex as detachModule() takes) is still false. Returns at
/// once otherwise.
SIGREG_CORE_EXPORT void attachModuleSlot(ThreadRecord **slot, const void *module,
                                         const std::atomic<bool> *detached) noexcept;
/// Resets and unlists every thread's copy of module `module`.
SIGREG_CORE_EXPORT void detachModule(const void *module) noexcept;

/// Unlists this module's copies when the module is unloaded or the program
/// ends (one per module: a function-local static of a hidden function).
struct ModuleDetacher {
    ~ModuleDetacher()
    {
        g_moduleDetached.store(true, std::memory_order_relaxed);
        detachModule(this);
    }
};

/// After a read that found this module's copy unusable: attaches the copy if
/// it is the placeholder and the thread now has a record. Cheap when the
/// copy is already attached (a nested read).
SIGREG_MODULE_LOCAL SIGREG_COLD inline void attachThisModule() noexcept
{
    if (__atomic_load_n(&tl_moduleRecord, __ATOMIC_RELAXED) != &g_placeholderRecord
        || g_moduleDetached.load(std::memory_order_relaxed))
        return;
    static ModuleDetacher detacher;
    attachModuleSlot(&tl_moduleRecord, &detacher, &g_moduleDetached);
}
#endif

/// The calling thread's record (or the placeholder), as the inline notify
/// paths read it: this module's copy where there is one.
SIGREG_ALWAYS_INLINE ThreadRecord *moduleRecord() noexcept
{
#if SIGREG_MODULE_RECORDS
    return __atomic_load_n(&tl_moduleRecord, __ATOMIC_RELAXED);
#else
    return tl_record;
#endif
}

/// After a read that took the out-of-line path: see attachThisModule().
SIGREG_ALWAYS_INLINE void afterBusyRead() noexcept
{
#if SIGREG_MODULE_RECORDS
    attachThisModule();
#endif
}

/// Withdraws the calling thread's announcement of `node` (a handler it is
/// running right now): removers stop waiting for this call. Only for a
/// handler that hands its work to another thread and merely waits for it
/// (the work is then tracked there), and that does not touch `node` again.
SIGREG_CORE_EXPORT void withdrawAnnouncement(const Node *node) noexcept;

/// Takes a hazard level for the calling thread; pair with `HazardScope`'s
/// destructor. Inline because it sits on the notify path.
class HazardScope {
public:
    SIGREG_ALWAYS_INLINE HazardScope() noexcept
    {
        ThreadRecord *rec = tl_record;
        m_level = &rec->levels[0];
        if (SIGREG_UNLIKELY(m_level->inUse()))
            m_level = rec->busyLevel();
    }
    /// Takes `level`, which the caller found free on its own record.
    SIGREG_ALWAYS_INLINE explicit HazardScope(HazardLevel *level) noexcept : m_level(level) {}
    SIGREG_ALWAYS_INLINE ~HazardScope()
    {
        HazardLevel *level = m_level;
#if defined(__GNUC__) || defined(__clang__)
        // Keeps the compiler from holding &level->object in a register of its
        // own across the handler loop (next to `level`, which the loop's
        // announcements use): with the caller's loop state that is one
        // register too many and costs spills on every notify.
        asm("" : "+r"(level));
#endif
        level->object.store(nullptr, std::memory_order_release);
    }
    HazardScope(const HazardScope &) = delete;
    HazardScope &operator=(const HazardScope &) = delete;

    /// Loads `src` and publishes it as this level's protected object; on
    /// return the object cannot be reclaimed until the scope ends or another
    /// object is protected. A scope must protect a non-null object before it
    /// runs anything that may nest (a null slot marks the level free).
    template <class T>
    SIGREG_ALWAYS_INLINE T *protect(const std::atomic<T *> &src) noexcept
    {
        T *p = src.load(std::memory_order_relaxed);
        m_level->object.store(p, kHazardStore);
        lightFence();
        T *q = src.load(kHazardLoad);
        if (SIGREG_LIKELY(q == p))
            return p;
        return protectRetry(m_level, src, q);
    }

    /// Publishes the object whose address `src` held as `word` (read by the
    /// caller) as this level's protected object. True if `src` still holds
    /// `word` afterwards: the object is then protected as by protect().
    /// False if it changed meanwhile: the caller must not touch the object
    /// (the scope still marks the level in use until it ends). For a source
    /// that keeps flags in the low bits of an object's address (see
    /// RegistryCore::setMirror()); the caller checks the flags first.
    SIGREG_ALWAYS_INLINE bool protectIfUnchanged(const std::atomic<std::uintptr_t> &src, std::uintptr_t word) noexcept
    {
        m_level->object.store(reinterpret_cast<const void *>(word), kHazardStore);
        lightFence();
        return src.load(kHazardLoad) == word;
    }

    /// Announces that `node` is about to be called. Every scope must announce
    /// (a node, or null) before it runs user code, and a scope that calls no
    /// handler at all announces null: `current` is not cleared between reads,
    /// and a stale one would make a remover wait for a call that is over. A
    /// remover that saw the announcement waits for the call to end.
    SIGREG_ALWAYS_INLINE void announce(const Node *node) noexcept
    {
        m_level->current.store(node, kHazardStore);
        lightFence();
    }

private:
    /// protect() after a writer published between its two loads: retries
    /// with what the writer published. Out of line, so that the inline path
    /// computes nothing for it (in one loop with the first try, GCC kept the
    /// slot's address in a register of its own).
    template <class T>
    SIGREG_COLD static T *protectRetry(HazardLevel *level, const std::atomic<T *> &src, T *q) noexcept
    {
        T *p;
        do {
            p = q;
            level->object.store(p, kHazardStore);
            lightFence();
            q = src.load(kHazardLoad);
        } while (q != p);
        return p;
    }

    HazardLevel *m_level;
};

} // namespace sigreg::detail
