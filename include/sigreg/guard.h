// SPDX-License-Identifier: MIT
// Sigreg — RAII ownership of one registered handler.
#pragma once

/// @file
/// sigreg::Guard: RAII ownership of one registered handler. Part of
/// Sigreg::Core (no Qt).

#include <sigreg/handler_id.h>
#include <sigreg/sigreg_export.h>

#include <memory>

namespace sigreg {

namespace detail {
class Anchor;
}

/// Owns one registered handler and removes it when destroyed.
///
/// Obtained from `Registry<E>::addGuarded()` or `Registry<E>::guard()`.
/// Move-only. A guard may outlive its registry: it then does nothing.
/// Destroying a guard has the effect of `Registry<E>::remove()` (it waits
/// until the handler is not running on another thread); `resetNoWait()` has
/// the effect of `removeNoWait()`.
///
/// Safety: a guard object is not itself synchronised (like any value type),
/// but guards of one registry may be used from different threads at once,
/// and concurrently with the registry's destruction. The registry's
/// destructor waits for a guard's removal on another thread only while that
/// removal uses the registry, not while it destroys the handler it removed:
/// that destructor may run while (or after) the registry is destroyed, and
/// may reach the registry through guards only.
///
/// Memory: a removal builds the registry's next snapshot, which can need an
/// allocation. If that allocation fails inside the destructor, the move
/// assignment, `reset()` or `resetNoWait()` (all noexcept), the process ends
/// with std::terminate: these cannot report the failure, and leaving the
/// handler registered would break the guard's one promise. Call
/// `Registry<E>::remove(id)`, which throws std::bad_alloc instead, where that
/// matters (see tests/core/tst_allocationfailure.cpp).
class [[nodiscard]] Guard {
public:
    /// An empty guard that owns nothing.
    Guard() noexcept = default;
    /// Owns handler `id` of the registry behind `anchor`. Used by the
    /// registries (`Registry<E>::guard()`, `addGuarded()`); not needed in user code.
    SIGREG_CORE_EXPORT Guard(std::shared_ptr<detail::Anchor> anchor, HandlerId id) noexcept;
    /// Takes `other`'s handler; `other` is left empty.
    SIGREG_CORE_EXPORT Guard(Guard &&other) noexcept;
    /// Takes `other`'s handler, then removes the one it owned before
    /// (waiting). In that order, as std::unique_ptr does: the old handler may
    /// own `other`.
    SIGREG_CORE_EXPORT Guard &operator=(Guard &&other) noexcept;
    Guard(const Guard &) = delete;
    Guard &operator=(const Guard &) = delete;
    /// Removes the owned handler, waiting as `reset()` does.
    SIGREG_CORE_EXPORT ~Guard();

    /// The owned handler's id; invalid for an empty guard.
    [[nodiscard]] HandlerId id() const noexcept { return m_id; }
    /// True while the guard owns a handler (whether or not its registry still exists).
    [[nodiscard]] bool isActive() const noexcept { return m_id.isValid(); }
    /// As isActive().
    explicit operator bool() const noexcept { return isActive(); }

    /// Effect: gives up ownership; the handler stays registered.
    /// Returns its id (for a later `Registry<E>::remove()`).
    SIGREG_CORE_EXPORT HandlerId release() noexcept;

    /// Effect: removes the handler now, waiting until it is not running on
    /// another thread (see `Registry<E>::remove()`, also when it was removed
    /// already by id), and empties the guard. Returns true if this call
    /// removed it (false if it was already removed by id, the registry is
    /// gone, or the guard was empty).
    SIGREG_CORE_EXPORT bool reset() noexcept;

    /// Effect: as `reset()` but does not wait for calls in flight on other
    /// threads (see `Registry<E>::removeNoWait()`).
    SIGREG_CORE_EXPORT bool resetNoWait() noexcept;

private:
    bool dispose(bool wait) noexcept;

    std::shared_ptr<detail::Anchor> m_anchor;
    HandlerId m_id;
};

} // namespace sigreg
