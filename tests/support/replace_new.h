// SPDX-License-Identifier: MIT
// Replaces every form of the global operator new/delete for a test executable.
//
// Include in exactly one source file of the executable, after defining
//
//     bool sigreg_test::beforeAllocation() noexcept;
//
// which runs before each allocation: it may count it, and returns false to make
// that allocation fail (std::bad_alloc, or null for the nothrow forms).
// Memory comes from malloc/posix_memalign and goes back to free.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace sigreg_test {

bool beforeAllocation() noexcept;

inline void *allocate(std::size_t size, std::size_t align) noexcept
{
    if (!beforeAllocation())
        return nullptr;
    if (size == 0)
        size = 1;
    if (align <= alignof(std::max_align_t))
        return std::malloc(size);
    void *p = nullptr;
    return posix_memalign(&p, std::max(align, sizeof(void *)), size) == 0 ? p : nullptr;
}

inline void *allocateOrThrow(std::size_t size, std::size_t align)
{
    if (void *p = allocate(size, align))
        return p;
    throw std::bad_alloc();
}

} // namespace sigreg_test

void *operator new(std::size_t n) { return sigreg_test::allocateOrThrow(n, 0); }
void *operator new[](std::size_t n) { return sigreg_test::allocateOrThrow(n, 0); }
void *operator new(std::size_t n, std::align_val_t a) { return sigreg_test::allocateOrThrow(n, std::size_t(a)); }
void *operator new[](std::size_t n, std::align_val_t a) { return sigreg_test::allocateOrThrow(n, std::size_t(a)); }
void *operator new(std::size_t n, const std::nothrow_t &) noexcept { return sigreg_test::allocate(n, 0); }
void *operator new[](std::size_t n, const std::nothrow_t &) noexcept { return sigreg_test::allocate(n, 0); }
void *operator new(std::size_t n, std::align_val_t a, const std::nothrow_t &) noexcept
{
    return sigreg_test::allocate(n, std::size_t(a));
}
void *operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t &) noexcept
{
    return sigreg_test::allocate(n, std::size_t(a));
}
void operator delete(void *p) noexcept { std::free(p); }
void operator delete[](void *p) noexcept { std::free(p); }
void operator delete(void *p, std::size_t) noexcept { std::free(p); }
void operator delete[](void *p, std::size_t) noexcept { std::free(p); }
void operator delete(void *p, const std::nothrow_t &) noexcept { std::free(p); }
void operator delete[](void *p, const std::nothrow_t &) noexcept { std::free(p); }
void operator delete(void *p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void *p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void *p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void *p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept { std::free(p); }
void operator delete[](void *p, std::align_val_t, const std::nothrow_t &) noexcept { std::free(p); }
