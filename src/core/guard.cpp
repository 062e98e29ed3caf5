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
    if (this != &other) {
        dispose(true);
        m_anchor = std::move(other.m_anchor);
        m_id = std::exchange(other.m_id, HandlerId());
    }
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
