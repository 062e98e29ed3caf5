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
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

// Exactly one, the variant this library was built with (see hazard.h).
#if SIGREG_ASYMMETRIC_FENCES
const char protocolAsymmetricFences = 1;
#else
const char protocolSequentiallyConsistent = 1;
#endif

/// What tl_record (and every module's copy, tl_moduleRecord) names while a
/// thread has no record: level 0 in use, so that the notify path's check for
/// a nested read sends the thread to busyLevel(), which takes a record.
/// Never written, never listed.
constinit ThreadRecord g_placeholderRecord{ThreadRecord::Placeholder{}};

constinit thread_local ThreadRecord *tl_record SIGREG_TLS_INITIAL_EXEC = &g_placeholderRecord;

bool ThreadRecord::isPlaceholder() const noexcept
{
    return this == &g_placeholderRecord;
}

namespace {

std::atomic<ThreadRecord *> g_records{nullptr};

/// Set once the thread's record was handed back at its exit. A read after
/// that (from a pthread-key destructor of another library, or a
/// thread_local destructor that runs later) takes a record again, and the
/// thread's exit may never hand that one back: glibc runs key destructors
/// for a bounded number of rounds, and a read in the last one re-arms a key
/// no round will look at. So no module copy is attached to it: its listing
/// would outlive the thread's storage, and a module's detacher (at exit, at
/// dlclose) would write there. Those reads take the out-of-line path.
constinit thread_local bool tl_recordReleased SIGREG_TLS_INITIAL_EXEC = false;

/// A module copy of a thread's record pointer (tl_moduleRecord) is a plain
/// pointer that its thread reads with an atomic builtin; this is the store.
void storeSlot(ThreadRecord **slot, ThreadRecord *value) noexcept
{
#if defined(__GNUC__) || defined(__clang__)
    __atomic_store_n(slot, value, __ATOMIC_RELAXED);
#else
    *slot = value; // no module copies exist without the builtins
#endif
}

ThreadRecord *loadSlot(ThreadRecord *const *slot) noexcept
{
#if defined(__GNUC__) || defined(__clang__)
    return __atomic_load_n(slot, __ATOMIC_RELAXED);
#else
    return *slot;
#endif
}

/// Guards every record's list of module copies (ThreadRecord::moduleSlots).
std::mutex &moduleSlotMutex() noexcept
{
    static std::mutex m; // constexpr constructor: constant-initialized, never destroyed before use
    return m;
}

/// Hands a thread's record back when the thread exits. The module copies
/// that name it go back to the placeholder first: once `inUse` is false the
/// record may belong to another thread, and a later read on this thread
/// (from a destructor that runs after this one) must take a record anew.
void releaseRecord(void *p) noexcept
{
    auto *rec = static_cast<ThreadRecord *>(p);
    {
        std::lock_guard lock(moduleSlotMutex());
        const std::uint32_t count = rec->moduleSlotCount.load(std::memory_order_relaxed);
        for (std::uint32_t i = 0; i < count; ++i)
            storeSlot(rec->moduleSlots[i].slot, &g_placeholderRecord);
        rec->moduleSlotCount.store(0, std::memory_order_relaxed);
    }
    tl_record = &g_placeholderRecord;
    tl_recordReleased = true;
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
// The writer side on Linux: expedited membarrier where the kernel has it
// (Linux 4.14+), else an mprotect-induced TLB shootdown. Which one is decided
// once, at the first heavy fence (nothing relies on the heavy fence before
// that), and never changes silently afterwards: a plain fence on the writer's
// side alone does not order the readers' compiler-only barriers, so if
// neither mechanism works the process is stopped with a message rather than
// left open to use-after-free.
//
// The environment variable SIGREG_FENCE is a test knob:
//   SIGREG_FENCE=mprotect     forces the mprotect fallback, so that the tests
//                             can exercise it on any kernel;
//   SIGREG_FENCE=unavailable  simulates both mechanisms failing (the process
//                             aborts at its first heavy fence with the
//                             message below), for the regression test
//                             tests/noqt/test_fence_unavailable.cpp.
// Any other value is ignored. Builds with SIGREG_ASYMMETRIC_FENCES=0 (and
// other platforms) never read it.

constexpr std::size_t kFencePageSize = 4096;

enum class ForcedFence : unsigned char { None, Mprotect, Unavailable };

ForcedFence forcedFence() noexcept
{
    const char *forced = std::getenv("SIGREG_FENCE");
    if (!forced)
        return ForcedFence::None;
    const std::string_view value(forced);
    if (value == "mprotect")
        return ForcedFence::Mprotect;
    if (value == "unavailable")
        return ForcedFence::Unavailable;
    return ForcedFence::None;
}

// strerror_r comes in a GNU flavour (returns the text) and an XSI one
// (returns 0 and fills the buffer); neither allocates, unlike strerror().
[[maybe_unused]] const char *errorText(int rc, const char *buf) noexcept
{
    return rc == 0 ? buf : "unknown error";
}
[[maybe_unused]] const char *errorText(const char *text, const char *) noexcept
{
    return text;
}

/// Writes one line to stderr (a single write(2), so that it is not interleaved
/// with other output; no allocation) and aborts.
[[noreturn]] SIGREG_COLD void fenceFailure(const char *cause, const char *step, int err) noexcept
{
    char errBuf[128] = {};
    const char *errText = errorText(strerror_r(err, errBuf, sizeof errBuf), errBuf);
    char msg[1024];
    const int n = std::snprintf(msg, sizeof msg,
        "sigreg: fatal: %s (%s: %s, errno %d). Without a process-wide memory barrier the "
        "asymmetric fences of the hazard protocol do not hold (a removed handler could still "
        "run or be freed while running). Remedy: allow membarrier(2) or mprotect(2) for this "
        "process, or build Sigreg, and every file that includes its headers, with "
        "-DSIGREG_ASYMMETRIC_FENCES=0 (sequentially consistent reader operations). Aborting.\n",
        cause, step, errText, err);
    if (n > 0) {
        std::size_t left = std::min(static_cast<std::size_t>(n), sizeof msg - 1);
        const char *p = msg;
        while (left > 0) {
            const ssize_t w = ::write(STDERR_FILENO, p, left);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            p += w;
            left -= static_cast<std::size_t>(w);
        }
    }
    std::abort();
}

/// Maps the fallback's page and runs its steps once: make it writable, touch
/// it, revoke write access. Returns the page, or null with `step` and `err`
/// naming what failed.
void *probeFencePage(ForcedFence forced, const char *&step, int &err) noexcept
{
    if (forced == ForcedFence::Unavailable) {
        step = "mmap (failure simulated by SIGREG_FENCE=unavailable)";
        err = ENOSYS;
        return nullptr;
    }
    void *page = mmap(nullptr, kFencePageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
        step = "mmap";
        err = errno;
        return nullptr;
    }
    if (mprotect(page, kFencePageSize, PROT_READ | PROT_WRITE) != 0) {
        step = "mprotect(PROT_READ | PROT_WRITE)";
        err = errno;
        munmap(page, kFencePageSize);
        return nullptr;
    }
    std::atomic_ref<int>(*static_cast<int *>(page)).fetch_add(1, std::memory_order_seq_cst);
    if (mprotect(page, kFencePageSize, PROT_READ) != 0) {
        step = "mprotect(PROT_READ)";
        err = errno;
        munmap(page, kFencePageSize);
        return nullptr;
    }
    return page;
}

/// The fallback's page, probed on first use; aborts with a message if the
/// fallback does not work. `membarrierCall` failed with `membarrierErr`,
/// which is why expedited membarrier is not used (unless SIGREG_FENCE
/// forced it off).
void *fencePageOrAbort(ForcedFence forced, const char *membarrierCall, int membarrierErr) noexcept
{
    const char *step = "";
    int err = 0;
    if (void *page = probeFencePage(forced, step, err))
        return page;
    char cause[512];
    if (forced == ForcedFence::Unavailable)
        std::snprintf(cause, sizeof cause,
            "no heavy fence is available: membarrier(%s) failed (simulated by "
            "SIGREG_FENCE=unavailable) and the mprotect fallback failed",
            membarrierCall);
    else if (forced == ForcedFence::Mprotect)
        std::snprintf(cause, sizeof cause,
            "no heavy fence is available: membarrier was not tried (SIGREG_FENCE=mprotect) "
            "and the mprotect fallback failed");
    else {
        char errBuf[128] = {};
        std::snprintf(cause, sizeof cause,
            "no heavy fence is available: membarrier(%s) failed (%s, errno %d) and the "
            "mprotect fallback failed",
            membarrierCall, errorText(strerror_r(membarrierErr, errBuf, sizeof errBuf), errBuf), membarrierErr);
    }
    fenceFailure(cause, step, err);
}

/// The heavy fence chosen for this process.
struct FenceChoice {
    bool membarrier;
    void *page; // the fallback's page, probed; null while membarrier works
};

FenceChoice chooseFence() noexcept
{
    const ForcedFence forced = forcedFence();
    int membarrierErr = 0;
    if (forced == ForcedFence::None) {
        if (syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0)
            return { true, nullptr };
        membarrierErr = errno;
    }
    return { false, fencePageOrAbort(forced, "MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED", membarrierErr) };
}

/// Fallback for kernels without expedited membarrier (before 4.14): revoking
/// write access to a page this process has written makes the kernel
/// shoot down that mapping on every CPU that ran one of our threads, which
/// serialises those CPUs. Valid on x86, where the shootdown is an interrupt.
/// `page` is the probed page, or null if membarrier was chosen but has just
/// failed (it is then probed here, once).
SIGREG_NOINLINE void mprotectFence(void *page, int membarrierErr) noexcept
{
    static std::mutex mutex;
    if (!page) {
        static void *const lazyPage
            = fencePageOrAbort(ForcedFence::None, "MEMBARRIER_CMD_PRIVATE_EXPEDITED", membarrierErr);
        page = lazyPage;
    }
    std::lock_guard lock(mutex);
    // The page worked when probed: a failure now cannot be recovered from
    // safely (the readers rely on this very fence), so it stops the process.
    if (mprotect(page, kFencePageSize, PROT_READ | PROT_WRITE) != 0)
        fenceFailure("the mprotect heavy fence failed on a page that had worked before",
            "mprotect(PROT_READ | PROT_WRITE)", errno);
    // Touch the page so it is mapped, then revoke access to force the IPIs.
    std::atomic_ref<int>(*static_cast<int *>(page)).fetch_add(1, std::memory_order_seq_cst);
    if (mprotect(page, kFencePageSize, PROT_READ) != 0)
        fenceFailure("the mprotect heavy fence failed on a page that had worked before", "mprotect(PROT_READ)", errno);
}
#endif

} // namespace

void heavyFence() noexcept
{
    protocolFence();
#if SIGREG_ASYMMETRIC_FENCES && defined(__linux__)
    // Chosen at the first call; aborts with a message if no heavy fence works.
    static const FenceChoice fence = chooseFence();
    if (SIGREG_LIKELY(fence.membarrier)) {
        if (SIGREG_UNLIKELY(syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0))
            mprotectFence(nullptr, errno);
    } else {
        mprotectFence(fence.page, 0);
    }
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

HazardLevel *ThreadRecord::busyLevel()
{
    if (isPlaceholder()) {
        // A thread's first read (no read can be running on a thread without
        // a record, so level 0 of the record it takes is free).
        return &acquire()->levels[0];
    }
    for (std::uint32_t i = 1; i < kInlineLevels; ++i) {
        if (!levels[i].inUse())
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
            if (!l.inUse())
                return &l;
        }
        link = &chunk->next;
    }
}

void attachModuleSlot(ThreadRecord **slot, const void *module,
                      const std::atomic<bool> *detached) noexcept
{
    ThreadRecord *rec = tl_record;
    if (rec->isPlaceholder())
        return; // no record yet: the next read takes one, and attaches then
    if (tl_recordReleased)
        return; // the thread is exiting (see tl_recordReleased)
    // A full list stays full until a module detaches: then every read of a
    // module beyond it would take the mutex. Only this thread adds to its
    // list, so a full count read here without the mutex cannot be stale
    // in the direction that matters (it can only shrink meanwhile, and the
    // next read retries).
    if (rec->moduleSlotCount.load(std::memory_order_relaxed) == ThreadRecord::kModuleSlots)
        return;
    std::lock_guard lock(moduleSlotMutex());
    // Under the mutex: the module's detacher sets the flag before it takes
    // the mutex, so a copy is never listed after its module was detached.
    if (detached->load(std::memory_order_relaxed) || loadSlot(slot) == rec)
        return;
    const std::uint32_t count = rec->moduleSlotCount.load(std::memory_order_relaxed);
    if (count == ThreadRecord::kModuleSlots)
        return; // this module's reads keep taking the out-of-line path (lock-free: see above)
    rec->moduleSlots[count] = {slot, module};
    rec->moduleSlotCount.store(count + 1, std::memory_order_relaxed);
    storeSlot(slot, rec);
}

void detachModule(const void *module) noexcept
{
    std::lock_guard lock(moduleSlotMutex());
    for (ThreadRecord *r = ThreadRecord::first(); r; r = r->next.load(std::memory_order_acquire)) {
        std::uint32_t kept = 0;
        const std::uint32_t count = r->moduleSlotCount.load(std::memory_order_relaxed);
        for (std::uint32_t i = 0; i < count; ++i) {
            if (r->moduleSlots[i].module == module)
                storeSlot(r->moduleSlots[i].slot, &g_placeholderRecord);
            else
                r->moduleSlots[kept++] = r->moduleSlots[i];
        }
        r->moduleSlotCount.store(kept, std::memory_order_relaxed);
    }
}

void withdrawAnnouncement(const Node *node) noexcept
{
    ThreadRecord *rec = tl_record;
    if (rec->isPlaceholder())
        return;
    // A withdrawn level keeps its `object` (the snapshot stays protected);
    // only the per-handler announcement goes, with the same ordering as
    // HazardScope::announce().
    rec->forEachLevel([&](const HazardLevel &level) {
        auto &l = const_cast<HazardLevel &>(level);
        if (l.inUse() && l.current.load(std::memory_order_relaxed) == node)
            l.current.store(nullptr, kHazardStore);
    });
    lightFence();
}

} // namespace sigreg::detail
