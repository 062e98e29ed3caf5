// SPDX-License-Identifier: MIT
// Sigreg Qt — the non-template part of QtRegistry<E>.
#include "dispatch_p.h"

#include <sigreg/qt/qtregistry.h>

namespace sigreg {

const char *HandlerCanceled::what() const noexcept
{
    return "sigreg: the handler's future was canceled";
}

namespace qtdetail {

bool Reporter::reserve(Reservation &r) noexcept
{
    std::lock_guard lock(mutex);
    if (!registry)
        return false;
    r.target = registry;
    r.callback = callback;
    active.fetch_add(1, std::memory_order_relaxed);
    return true;
}

void Reporter::deliver(HandlerId id, const std::exception_ptr &error) noexcept
{
    Reservation r;
    if (reserve(r))
        deliverReserved(r, id, error);
}

void Reporter::reportReserved(Reservation &r, HandlerId id, const std::exception_ptr &error) noexcept
{
    failures.fetch_add(1, std::memory_order_relaxed);
    if (r.target)
        deliverReserved(r, id, error);
}

void Reporter::deliverReserved(Reservation &r, HandlerId id, const std::exception_ptr &error) noexcept
{
    const char *what = nullptr;
    try {
        std::rethrow_exception(error);
    } catch (const std::exception &e) {
        what = e.what(); // stays valid: `error` keeps the exception alive
    } catch (...) {
    }
    const HandlerFailure failure{id, error, what};
    // No lock is held while user code (slots, the error handler) runs: it
    // may remove handlers, which waits for other threads that may be
    // reporting failures themselves. `active` keeps the registry alive.
    // A slot or an error handler that throws is contained, like the core's,
    // and a slot that throws does not keep the error handler from its call.
    try {
        const std::string_view message = failure.message();
        Q_EMIT r.target->handlerFailed(id.value(), QString::fromUtf8(message.data(), qsizetype(message.size())));
    } catch (...) {
    }
    try {
        if (r.callback && *r.callback)
            (*r.callback)(failure);
    } catch (...) {
    }
    r.callback.reset();
    r.target = nullptr;
    if (active.fetch_sub(1, std::memory_order_release) == 1)
        active.notify_all();
}

void Reporter::detach() noexcept
{
    {
        std::lock_guard lock(mutex);
        registry = nullptr;
        callback.reset();
    }
    // Deliveries in progress on other threads end before the registry goes.
    // (One running on this thread, a slot destroying its own registry, is
    // not supported, as for any handler.)
    for (int n = active.load(std::memory_order_acquire); n != 0; n = active.load(std::memory_order_acquire))
        active.wait(n, std::memory_order_acquire);
}

} // namespace qtdetail

QtRegistryBase::QtRegistryBase(QObject *parent)
    : QObject(parent), m_reporter(std::make_shared<qtdetail::Reporter>())
{
    m_reporter->registry = this;
    // Inline failures come from the core's loop; the sink forwards them.
    auto forward = [rep = m_reporter](const HandlerFailure &f) { rep->deliver(f.handler, f.exception); };
    m_core.setErrorSink(new detail::ErrorSinkFor<decltype(forward)>(std::move(forward)));
    m_core.setObserver(&QtRegistryBase::observe, this);
}

QtRegistryBase::~QtRegistryBase()
{
    m_core.setObserver(nullptr, nullptr);
    // Removes every handler: queued events are dropped from now on, and
    // marshalled calls running elsewhere are waited for.
    m_core.clear(true);
    m_reporter->detach();
}

void QtRegistryBase::observe(void *self) noexcept
{
    Q_EMIT static_cast<QtRegistryBase *>(self)->countChanged();
}

quint64 QtRegistryBase::failureCount() const noexcept
{
    return m_core.failureCount() + m_reporter->failures.load(std::memory_order_relaxed);
}

bool QtRegistryBase::remove(quint64 id)
{
    return m_core.remove(HandlerId(id), true);
}

bool QtRegistryBase::removeNoWait(quint64 id)
{
    return m_core.remove(HandlerId(id), false);
}

int QtRegistryBase::clear()
{
    return static_cast<int>(m_core.clear(true));
}

bool QtRegistryBase::contains(quint64 id) const
{
    return m_core.contains(HandlerId(id));
}

void QtRegistryBase::setErrorHandler(std::function<void(const HandlerFailure &)> f)
{
    auto cb = f ? std::make_shared<const std::function<void(const HandlerFailure &)>>(std::move(f)) : nullptr;
    std::lock_guard lock(m_reporter->mutex);
    m_reporter->callback = std::move(cb);
}

void QtRegistryBase::unbind(qtdetail::HandlerState *state) noexcept
{
    if (state->contextDestroyed)
        QObject::disconnect(state->contextDestroyed);
}

void QtRegistryBase::bind(qtdetail::HandlerState *state, QObject *context, Qt::ConnectionType type)
{
    state->reporter = m_reporter;
    qtdetail::bindContext(state, context, type, m_core.anchor());
}

} // namespace sigreg
