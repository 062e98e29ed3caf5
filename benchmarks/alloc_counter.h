// SPDX-License-Identifier: MIT
// sigreg-benchmarks — per-thread and process-wide heap allocation counting.
//
// alloc_counter.cpp replaces malloc and its relatives (and every form of the
// global operator new) for the whole process. Each replacement forwards to
// glibc's own allocator and bumps a counter that belongs to the calling
// thread, so a benchmark thread can measure exactly the allocations it made
// itself, whatever the other threads of the process (Google Benchmark's
// runner, Qt, ...) do meanwhile.
#pragma once

#include <cstdint>

namespace sigreg_bench {

/// True when the replacements are compiled in. They are left out under
/// sanitizers (which bring their own malloc) and on non-glibc systems; the
/// allocation counters are then not reported at all, rather than reported
/// wrongly as zero.
bool allocationCountingEnabled() noexcept;

/// Number of heap allocations the calling thread has made so far: calls of
/// malloc, calloc, realloc, reallocarray, memalign, aligned_alloc,
/// posix_memalign, valloc and pvalloc, plus every operator new. Each
/// allocation is counted once: operator new is implemented on top of the
/// counted malloc path, not counted separately.
/// Only differences between two calls on the same thread are meaningful.
std::uint64_t allocationCount() noexcept;

/// Number of heap allocations made so far by every thread of the process,
/// threads that have ended included (same functions as allocationCount()).
/// Callable from any thread. A thread's allocations are included once they
/// happen-before this call (e.g. the thread made them before a release store
/// that this thread has read with acquire); an allocation racing with the
/// call may or may not be included.
std::uint64_t processAllocationCount() noexcept;

} // namespace sigreg_bench
