// SPDX-License-Identifier: MIT
// sigreg-benchmarks — heap allocation counting, per thread and process-wide (see alloc_counter.h).
//
// How it works
// ------------
// The executable defines malloc, calloc, realloc, ... itself. Symbols of the
// executable take precedence over those of shared libraries, so every
// allocation in the process (libstdc++, Qt, Boost, libsigc++, Google
// Benchmark, the Sigreg core) comes here. glibc explicitly supports replacing
// its allocator this way, and it exports the real implementations as
// __libc_malloc & co., so each replacement only counts and forwards; memory
// stays with glibc's allocator, which is why free() needs no bookkeeping.
//
// Counting happens in exactly one layer, the C allocation functions. The
// global operator new is replaced as well (every form: plain, array, nothrow,
// aligned), but only so that it provably ends up in that layer: libstdc++'s
// own operator new happens to call malloc today, yet nothing guarantees it,
// and an operator new that bypassed malloc would make C++ allocations
// invisible. Our operator new calls the counted path and does not count by
// itself, so nothing is counted twice.
//
// The counter is a plain thread_local integer, constant-initialised and
// defined in the executable: accessing it needs neither a TLS wrapper
// function nor __tls_get_addr (which could itself allocate), only an offset
// from the thread pointer. Each thread thus counts its own allocations, with
// no atomic operation and no shared cache line.
//
// Process-wide count: each thread also owns one slot of a static array (its
// own cache line), claimed on its first allocation with one atomic increment
// and never given back, so that the counts of ended threads stay in the sum.
// Only the owner writes a slot, with a relaxed load and store (no lock
// prefix, no contention); any thread may read all of them. Threads beyond
// the array's size share one overflow slot, updated with fetch_add.
#include "alloc_counter.h"

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || defined(__SANITIZE_MEMORY__)
#define SIGREG_BENCH_COUNT_ALLOCS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define SIGREG_BENCH_COUNT_ALLOCS 0
#endif
#endif
#if !defined(SIGREG_BENCH_COUNT_ALLOCS)
// __libc_malloc & co. are a glibc feature.
#if defined(__GLIBC__)
#define SIGREG_BENCH_COUNT_ALLOCS 1
#else
#define SIGREG_BENCH_COUNT_ALLOCS 0
#endif
#endif

#if SIGREG_BENCH_COUNT_ALLOCS
#include <malloc.h> // memalign, valloc, pvalloc

// glibc's real allocator, exported under these names precisely so that a
// replacement can forward to it.
extern "C" {
void *__libc_malloc(std::size_t size) noexcept;
void *__libc_calloc(std::size_t count, std::size_t size) noexcept;
void *__libc_realloc(void *ptr, std::size_t size) noexcept;
void *__libc_memalign(std::size_t alignment, std::size_t size) noexcept;
void *__libc_valloc(std::size_t size) noexcept;
void *__libc_pvalloc(std::size_t size) noexcept;
void __libc_free(void *ptr) noexcept;
}
#endif

namespace sigreg_bench {

namespace {

// Trivially initialised (no dynamic initialisation, no destructor): safe to
// touch from inside malloc at any point of a thread's life.
constinit thread_local std::uint64_t tl_allocations = 0;

// Process-wide counting (see the top of this file). All of it is constant-
// initialised static or thread-local storage: nothing here allocates.
struct alignas(64) Slot {
    std::atomic<std::uint64_t> count{0};
};
// Google Benchmark starts fresh threads for every run of a multi-threaded
// benchmark (trial runs included), so a full run goes through hundreds of
// threads; 4096 slots (256 KiB) leave room for that, and more only share.
constexpr std::uint32_t kSlotCount = 4096;
constinit Slot g_slots[kSlotCount];
constinit Slot g_overflowSlot;
constinit std::atomic<std::uint32_t> g_slotsClaimed{0};

#if SIGREG_BENCH_COUNT_ALLOCS
constinit thread_local Slot *tl_slot = nullptr;

[[gnu::noinline]] Slot *claimSlot() noexcept
{
    const std::uint32_t index = g_slotsClaimed.fetch_add(1, std::memory_order_relaxed);
    tl_slot = index < kSlotCount ? &g_slots[index] : &g_overflowSlot;
    return tl_slot;
}

/// Counts one allocation of the calling thread, in both counts.
[[gnu::always_inline]] inline void countAllocation() noexcept
{
    ++tl_allocations;
    Slot *slot = tl_slot;
    if (slot == nullptr) [[unlikely]]
        slot = claimSlot();
    if (slot != &g_overflowSlot) [[likely]]
        slot->count.store(slot->count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    else
        slot->count.fetch_add(1, std::memory_order_relaxed);
}
#endif

} // namespace

bool allocationCountingEnabled() noexcept
{
    return SIGREG_BENCH_COUNT_ALLOCS != 0;
}

std::uint64_t allocationCount() noexcept
{
    return tl_allocations;
}

std::uint64_t processAllocationCount() noexcept
{
    // A thread whose allocations happen-before this call claimed its slot
    // before them, so the load below sees at least that claim (coherence).
    std::uint32_t claimed = g_slotsClaimed.load(std::memory_order_relaxed);
    if (claimed > kSlotCount)
        claimed = kSlotCount;
    std::uint64_t total = g_overflowSlot.count.load(std::memory_order_relaxed);
    for (std::uint32_t i = 0; i < claimed; ++i)
        total += g_slots[i].count.load(std::memory_order_relaxed);
    return total;
}

#if SIGREG_BENCH_COUNT_ALLOCS
namespace {

// The single counting layer: every replacement below goes through one of
// these two functions.
inline void *countedMalloc(std::size_t size) noexcept
{
    countAllocation();
    return __libc_malloc(size);
}

inline void *countedMemalign(std::size_t alignment, std::size_t size) noexcept
{
    countAllocation();
    return __libc_memalign(alignment, size);
}

// operator new: loop on the new-handler as the standard requires, then throw.
void *newOrThrow(std::size_t size)
{
    if (size == 0)
        size = 1; // new must return a unique pointer even for zero bytes
    for (;;) {
        if (void *p = countedMalloc(size))
            return p;
        std::new_handler handler = std::get_new_handler();
        if (!handler)
            throw std::bad_alloc();
        handler();
    }
}

void *newAlignedOrThrow(std::size_t size, std::align_val_t alignment)
{
    if (size == 0)
        size = 1;
    // align_val_t is a power of two by contract; memalign wants at least the
    // natural pointer alignment.
    std::size_t align = static_cast<std::size_t>(alignment);
    if (align < sizeof(void *))
        align = sizeof(void *);
    for (;;) {
        if (void *p = countedMemalign(align, size))
            return p;
        std::new_handler handler = std::get_new_handler();
        if (!handler)
            throw std::bad_alloc();
        handler();
    }
}

} // namespace
#endif

} // namespace sigreg_bench

#if SIGREG_BENCH_COUNT_ALLOCS

using sigreg_bench::countedMalloc;
using sigreg_bench::countedMemalign;
using sigreg_bench::newAlignedOrThrow;
using sigreg_bench::newOrThrow;

// ---------------------------------------------------------------------------
// C allocation functions
// ---------------------------------------------------------------------------
extern "C" {

void *malloc(std::size_t size) noexcept
{
    return countedMalloc(size);
}

void *calloc(std::size_t count, std::size_t size) noexcept
{
    sigreg_bench::countAllocation();
    return __libc_calloc(count, size);
}

void *realloc(void *ptr, std::size_t size) noexcept
{
    // realloc(p, 0) frees p in glibc: that is a deallocation, not counted.
    if (ptr == nullptr || size != 0)
        sigreg_bench::countAllocation();
    return __libc_realloc(ptr, size);
}

// glibc's own reallocarray calls its internal realloc directly, so it has to
// be replaced too or its allocations would go unseen.
void *reallocarray(void *ptr, std::size_t count, std::size_t size) noexcept
{
    std::size_t bytes = 0;
    if (__builtin_mul_overflow(count, size, &bytes)) {
        errno = ENOMEM;
        return nullptr;
    }
    return realloc(ptr, bytes);
}

void free(void *ptr) noexcept
{
    __libc_free(ptr);
}

void *memalign(std::size_t alignment, std::size_t size) noexcept
{
    return countedMemalign(alignment, size);
}

void *aligned_alloc(std::size_t alignment, std::size_t size) noexcept
{
    return countedMemalign(alignment, size);
}

int posix_memalign(void **out, std::size_t alignment, std::size_t size) noexcept
{
    // Same validation as glibc: a power of two multiple of sizeof(void*).
    const std::size_t words = alignment / sizeof(void *);
    if (alignment % sizeof(void *) != 0 || words == 0 || (words & (words - 1)) != 0)
        return EINVAL;
    // posix_memalign reports failure by its result and leaves errno alone.
    const int savedErrno = errno;
    void *p = countedMemalign(alignment, size);
    errno = savedErrno;
    if (p == nullptr)
        return ENOMEM;
    *out = p;
    return 0;
}

void *valloc(std::size_t size) noexcept
{
    sigreg_bench::countAllocation();
    return __libc_valloc(size);
}

void *pvalloc(std::size_t size) noexcept
{
    sigreg_bench::countAllocation();
    return __libc_pvalloc(size);
}

} // extern "C"

// ---------------------------------------------------------------------------
// Global operator new / delete, every replaceable form
// ---------------------------------------------------------------------------
void *operator new(std::size_t size)
{
    return newOrThrow(size);
}

void *operator new[](std::size_t size)
{
    return newOrThrow(size);
}

void *operator new(std::size_t size, const std::nothrow_t &) noexcept
{
    try {
        return newOrThrow(size);
    } catch (...) {
        return nullptr;
    }
}

void *operator new[](std::size_t size, const std::nothrow_t &) noexcept
{
    try {
        return newOrThrow(size);
    } catch (...) {
        return nullptr;
    }
}

void *operator new(std::size_t size, std::align_val_t alignment)
{
    return newAlignedOrThrow(size, alignment);
}

void *operator new[](std::size_t size, std::align_val_t alignment)
{
    return newAlignedOrThrow(size, alignment);
}

void *operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t &) noexcept
{
    try {
        return newAlignedOrThrow(size, alignment);
    } catch (...) {
        return nullptr;
    }
}

void *operator new[](std::size_t size, std::align_val_t alignment, const std::nothrow_t &) noexcept
{
    try {
        return newAlignedOrThrow(size, alignment);
    } catch (...) {
        return nullptr;
    }
}

// All memory comes from glibc's allocator, aligned or not, so one free fits all.
void operator delete(void *ptr) noexcept
{
    __libc_free(ptr);
}
void operator delete[](void *ptr) noexcept
{
    __libc_free(ptr);
}
void operator delete(void *ptr, std::size_t) noexcept
{
    __libc_free(ptr);
}
void operator delete[](void *ptr, std::size_t) noexcept
{
    __libc_free(ptr);
}
void operator delete(void *ptr, const std::nothrow_t &) noexcept
{
    __libc_free(ptr);
}
void operator delete[](void *ptr, const std::nothrow_t &) noexcept
{
    __libc_free(ptr);
}
void operator delete(void *ptr, std::align_val_t) noexcept
{
    __libc_free(ptr);
}
void operator delete[](void *ptr, std::align_val_t) noexcept
{
    __libc_free(ptr);
}
void operator delete(void *ptr, std::size_t, std::align_val_t) noexcept
{
    __libc_free(ptr);
}
void operator delete[](void *ptr, std::size_t, std::align_val_t) noexcept
{
    __libc_free(ptr);
}
void operator delete(void *ptr, std::align_val_t, const std::nothrow_t &) noexcept
{
    __libc_free(ptr);
}
void operator delete[](void *ptr, std::align_val_t, const std::nothrow_t &) noexcept
{
    __libc_free(ptr);
}

#endif // SIGREG_BENCH_COUNT_ALLOCS
