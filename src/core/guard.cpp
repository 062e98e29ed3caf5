// SPDX-License-Identifier: MIT
#include <sigreg/detail/registry_core.h>
#include <sigreg/guard.h>

#include <utility>

namespace sigreg {

Guard::Guard(std::shared_ptr<detail::Anchor> anchor, HandlerId id) noexcept
    : m_anchor(std::move(anchor)), m_id(id)
{
}

Guard::Guard(Guard &&other) noexcept
    : m_anchor(std::move(other.m_anchor)), m_id(std::exchange(other.m_id, HandlerId()))
{
}

Guard &Guard::operator=(Guard &&other) noexcept
{
    // Take `other` before removing the old handler, as std::unique_ptr does:
    // that removal may destroy the old handler, and with it `other` when the
    // handler owns it. `taken` removes it on the way out (after the swap it
    // holds the old handler; nothing for a self-move).
    Guard taken(std::move(other));
    std::swap(m_anchor, taken.m_anchor);
    std::swap(m_id, taken.m_id);
    return *this;
}

Guard::~Guard()
{
    dispose(true);
}

HandlerId Guard::release() noexcept
{
    m_anchor.reset();
    return std::exchange(m_id, HandlerId());
}

bool Guard::reset() noexcept
{
    return dispose(true);
}

bool Guard::resetNoWait() noexcept
{
    return dispose(false);
}

bool Guard::dispose(bool wait) noexcept
{
    const HandlerId id = std::exchange(m_id, HandlerId());
    std::shared_ptr<detail::Anchor> anchor = std::move(m_anchor);
    return id.isValid() && anchor && anchor->remove(id, wait);
}

} // namespace sigreg
