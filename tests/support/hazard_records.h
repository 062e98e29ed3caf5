// SPDX-License-Identifier: MIT
// White-box views of the per-thread hazard records (detail/hazard.h), for the
// tests of the records' life cycle. Records are never freed, so walking their
// list is safe at any time.
#pragma once

#include <sigreg/detail/hazard.h>

#include <atomic>
#include <cstdint>

namespace sigreg_test {

/// Hazard records in use right now.
inline int recordsInUse()
{
    int n = 0;
    for (auto *r = sigreg::detail::ThreadRecord::first(); r; r = r->next.load(std::memory_order_acquire))
        n += r->inUse.load(std::memory_order_acquire) ? 1 : 0;
    return n;
}

/// True if `rec` lists the module copy at `slot` (see tl_moduleRecord). Read
/// it only while no thread attaches to or releases `rec`.
inline bool listsModuleCopy(const sigreg::detail::ThreadRecord *rec, const void *slot)
{
    for (std::uint32_t i = 0; i < rec->moduleSlotCount.load(std::memory_order_relaxed); ++i) {
        if (rec->moduleSlots[i].slot == slot)
            return true;
    }
    return false;
}

} // namespace sigreg_test
