// SPDX-License-Identifier: MIT
// Sigreg — per-thread hazard records and the writer side of the asymmetric fence.
#include <sigreg/detail/hazard.h>

#include <atomic>
#include <cstdint>
#include <mutex>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define SIGREG_HAVE_PTHREAD_KEY 1
#endif
#include <cstdlib>
#include <string_view>

#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#elif defined(_WIN32)
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#endif

namespace sigreg::detail {

constinit thread_local ThreadRecord *tl_record SIGREG_TLS_INITIAL_EXEC = nullptr;

namespace {

std::atomic<ThreadRecord *> g_records{nullptr};

/// Hands a thread's record back when the thread exits.
void releaseRecord(void *p) noexcept
{
    auto *rec = static_cast<ThreadRecord *>(p);
    tl_record = nullptr;
    rec->inUse.store(false, std::memory_order_release);
}

#if defined(SIGREG_HAVE_PTHREAD_KEY)
// A pthread key rather than a thread_local object with a destructor: glibc's
// registration of thread_local destructors allocates on every new thread,
// while pthread_setspecific on one of the first keys does not. Key
// destructors also run after the thread's C++ thread_local destructors, so
// those may still notify.
pthread_key_t recordKey() noexcept
{
    static const pthread_key_t key = [] {
        pthread_key_t k;
        if (pthread_key_create(&k, releaseRecord) != 0)
            std::abort();
        return k;
    }();
    return key;
}
void releaseAtThreadExit(ThreadRecord *rec) noexcept
{
    pthread_setspecific(recordKey(), rec);
}
#else
struct RecordReleaser {
    ThreadRecord *rec = nullptr;
    ~RecordReleaser()
    {
        if (rec)
            releaseRecord(rec);
    }
};
thread_local RecordReleaser tl_releaser;
void releaseAtThreadExit(ThreadRecord *rec) noexcept
{
    tl_releaser.rec = rec;
}
#endif

#if SIGREG_ASYMMETRIC_FENCES && defined(__linux__)
/// Expedited membarrier where the kernel has it (Linux 4.14+). The
/// environment variable SIGREG_FENCE=mprotect forces the fallback below, so
/// that the tests can exercise it on any kernel.
bool registerMembarrier() noexcept
{
    const char *forced = std::getenv("SIGREG_FENCE");
    if (forced && std::string_view(forced) == "mprotect")
        return false;
    return syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/// Fallback for kernels without expedited membarrier (before 4.14): revoking
/// write access to a page this process has written makes the kernel
/// shoot down that mapping on every CPU that ran one of our threads, which
/// serialises those CPUs. Valid on x86, where the shootdown is an interrupt.
void mprotectFence() noexcept
{
    static std::mutex mutex;
    static void *page = [] {
        void *p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? nullptr : p;
    }();
    std::lock_guard lock(mutex);
    if (!page || mprotect(page, 4096, PROT_READ | PROT_WRITE) != 0) {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        return;
    }
    // Touch the page so it is mapped, then revoke access to force the IPIs.
    std::atomic_ref<int>(*static_cast<int *>(page)).fetch_add(1, std::memory_order_seq_cst);
    mprotect(page, 4096, PROT_READ);
}
#endif

} // namespace

void heavyFence() noexcept
{
    protocolFence();
#if SIGREG_ASYMMETRIC_FENCES && defined(__linux__)
    static const bool membarrier = registerMembarrier();
    if (!membarrier || syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
        mprotectFence();
#elif SIGREG_ASYMMETRIC_FENCES && defined(_WIN32)
    FlushProcessWriteBuffers();
#endif
    protocolFence();
}

ThreadRecord *ThreadRecord::first() noexcept
{
    return g_records.load(std::memory_order_acquire);
}

ThreadRecord *ThreadRecord::acquire()
{
    ThreadRecord *rec = nullptr;
    for (ThreadRecord *r = first(); r; r = r->next.load(std::memory_order_acquire)) {
        bool expected = false;
        if (!r->inUse.load(std::memory_order_relaxed)
            && r->inUse.compare_exchange_strong(expected, true, std::memory_order_seq_cst)) {
            rec = r;
            break;
        }
    }
    if (!rec) {
        // Records live as long as the process: writers may be scanning them.
        rec = new ThreadRecord;
        rec->inUse.store(true, std::memory_order_seq_cst);
        ThreadRecord *head = g_records.load(std::memory_order_relaxed);
        do {
            rec->next.store(head, std::memory_order_relaxed);
        } while (!g_records.compare_exchange_weak(head, rec, std::memory_order_release,
                                                  std::memory_order_relaxed));
    }
    // Pairs with the fence in the writers' fenceAgainstReaders(): a writer that
    // does not see this record in use skips the heavy fence, so this thread's
    // first read must see what that writer published.
    protocolFence();
    tl_record = rec;
    releaseAtThreadExit(rec);
    return rec;
}

HazardLevel *ThreadRecord::nestedLevel()
{
    for (std::uint32_t i = 1; i < kInlineLevels; ++i) {
        if (!levels[i].object.load(std::memory_order_relaxed))
            return &levels[i];
    }
    std::atomic<LevelChunk *> *link = &chunks;
    for (;;) {
        LevelChunk *chunk = link->load(std::memory_order_relaxed);
        if (!chunk) {
            chunk = new LevelChunk;
            link->store(chunk, std::memory_order_release);
        }
        for (HazardLevel &l : chunk->levels) {
            if (!l.object.load(std::memory_order_relaxed))
                return &l;
        }
        link = &chunk->next;
    }
}

void withdrawAnnouncement(const Node *node) noexcept
{
    ThreadRecord *rec = tl_record;
    if (!rec)
        return;
    // A withdrawn level keeps its `object` (the snapshot stays protected);
    // only the per-handler announcement goes, with the same ordering as
    // HazardScope::announce().
    rec->forEachLevel([&](const HazardLevel &level) {
        auto &l = const_cast<HazardLevel &>(level);
        if (l.object.load(std::memory_order_relaxed) && l.current.load(std::memory_order_relaxed) == node)
            l.current.store(nullptr, kHazardStore);
    });
    lightFence();
}

} // namespace sigreg::detail
