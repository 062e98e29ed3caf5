// SPDX-License-Identifier: MIT
// Sigreg Qt — QtBusReceiverBase and the application attachment of a bus.
#include <sigreg/qt/qtbus.h>

#include "dispatch_p.h"

#include <QtCore/QCoreApplication>
#include <QtCore/QEvent>
#include <QtCore/QMetaMethod>
#include <QtCore/QThread>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <stdexcept>

namespace sigreg {

namespace {

/// The posted event that makes a receiver drain its ring.
QEvent::Type wakeEventType()
{
    static const auto type = static_cast<QEvent::Type>(QEvent::registerEventType());
    return type;
}

/// Drains at most this many events per turn of the event loop.
constexpr int kBurst = 256;

/// Set on the application's thread while aboutToQuit() delivers what its
/// receivers have pending: a drain then takes a whole ring's worth in one
/// turn (the next turn would come after exec() returned, i.e. never).
constinit thread_local bool t_deliverAllNow = false;
/// Drains run on this thread so far (for that delivery's loop).
constinit thread_local std::uint64_t t_drains = 0;

/// A bus attached to the application: a child of the QCoreApplication.
class BusAttachment final : public QObject {
public:
    BusAttachment(std::shared_ptr<detail::BusLink> l, QObject *parent) : QObject(parent), link(std::move(l)) {}
    std::shared_ptr<detail::BusLink> link;
};

} // namespace

/// The wake-up event. A lost one (see qtdetail::WakeupEvent) arms the hook
/// again, which the producer that posted it disarmed: the next event (or the
/// closure) posts a new wake-up, and the drain it starts takes what the ring
/// held already. Otherwise the receiver would get nothing more.
class QtBusReceiverBase::WakeEvent final : public qtdetail::WakeupEvent {
public:
    explicit WakeEvent(QtBusReceiverBase *o) : WakeupEvent(wakeEventType()), owner(o) {}
    ~WakeEvent() override
    {
        if (lost())
            owner->wakeLost();
    }
    QtBusReceiverBase *owner;
};

QtBusReceiverBase::QtBusReceiverBase(QObject *parent) : QObject(parent) {}

// The subclass has stopped the hook and unsubscribed already.
QtBusReceiverBase::~QtBusReceiverBase()
{
    // A wake-up still posted goes now, while this object is whole (~QObject
    // would delete it after, where its wakeLost() must not run).
    QCoreApplication::removePostedEvents(this, wakeEventType());
    if (auto *e = static_cast<WakeEvent *>(m_wake.exchange(nullptr, std::memory_order_acquire))) {
        e->settle(); // never posted
        delete e;
    }
}

void QtBusReceiverBase::wakeLost() noexcept
{
    // Any thread (Qt may be deleting the event under its own lock: no Qt
    // call here). The ring is alive until stop(), which the subclass calls
    // before it unsubscribes and the ring goes.
    if (!m_stopped.load(std::memory_order_acquire))
        m_ring->armHookForNextEvent();
}

bool QtBusReceiverBase::isSubscribed() const noexcept
{
    return m_ring && !m_ring->isClosed();
}

int QtBusReceiverBase::capacity() const noexcept
{
    return m_ring ? static_cast<int>(std::min<std::size_t>(m_ring->capacity(), INT_MAX)) : 0;
}

void QtBusReceiverBase::unsubscribe()
{
    // Closing the ring fires the hook: what is buffered is delivered, then closed().
    unsubscribeReceiver();
}

void QtBusReceiverBase::start(detail::RingBase &ring)
{
    m_ring = &ring;
    prepareWake();
    ring.setHook(&QtBusReceiverBase::wake, this);
    // Events arrived already: wake ourselves, or (out of memory) let the
    // next event do it.
    if (!ring.armHook() && !postWake())
        ring.armHookForNextEvent();
}

void QtBusReceiverBase::prepareWake()
{
    if (!m_wake.load(std::memory_order_relaxed))
        m_wake.store(new WakeEvent(this), std::memory_order_release);
}

void QtBusReceiverBase::stop() noexcept
{
    // Under the ring's mutex: once this returns, no producer posts to us.
    m_stopped.store(true, std::memory_order_release);
    if (m_ring)
        m_ring->clearHook();
}

bool QtBusReceiverBase::wake(void *self) noexcept
{
    // Any thread. The receiver exists: its destructor clears the hook first,
    // waiting for a call in progress. The event was made by the receiver's
    // thread before it armed the hook (prepareWake()). Out of memory: the
    // hook is armed again, and the next event retries.
    return static_cast<QtBusReceiverBase *>(self)->postWake();
}

bool QtBusReceiverBase::event(QEvent *e)
{
    if (e->type() == wakeEventType()) {
        static_cast<WakeEvent *>(e)->settle();
        drain();
        return true;
    }
    if (e->type() == QEvent::ThreadChange)
        m_moved.store(true, std::memory_order_relaxed);
    return QObject::event(e);
}

bool QtBusReceiverBase::variantWanted() const
{
    static const QMetaMethod signal = QMetaMethod::fromSignal(&QtBusReceiverBase::eventReceived);
    return isSignalConnected(signal);
}

void QtBusReceiverBase::drain()
{
    const QPointer<QtBusReceiverBase> self(this);
    // The wake-up that brought us here was the prepared one: prepare the
    // next now, for a re-post below (it allocates nothing then). Out of
    // memory: prepared later, or allocated when needed.
    try {
        prepareWake();
    } catch (...) {
    }
    ++t_drains;
    m_moved.store(false, std::memory_order_relaxed);
    // While aboutToQuit delivers, a turn takes all the ring can hold (and a
    // little more): what is pending, but not a flood that never ends.
    int budget = t_deliverAllNow
        ? static_cast<int>(std::min<std::size_t>(m_ring->capacity(), INT_MAX - kBurst)) + kBurst
        : kBurst;
    for (;;) {
        Step step;
        try {
            step = deliverNext();
        } catch (...) {
            // A callback, a slot, E's move or the QVariant threw: the
            // exception goes on to the event loop, as from any event handler
            // (Qt supports that only with a QCoreApplication::notify() that
            // catches), and this receiver keeps delivering what follows.
            // If Qt cannot queue that wake-up (out of memory, see
            // SECURITY.md), the buffered events wait for the next event: it
            // fires the hook, armed again for it (it is disarmed while a
            // drain is scheduled, and none is).
            if (self && !postWake())
                m_ring->armHookForNextEvent();
            throw;
        }
        if (!self)
            return; // deleted by a callback or slot
        if (SIGREG_UNLIKELY(m_moved.load(std::memory_order_relaxed))) {
            // Moved to another thread by a callback or slot: the rest is
            // delivered there (the wake-up follows the object), or, out of
            // memory, from the next event on. The hook stays disarmed.
            if (!postWake())
                m_ring->armHookForNextEvent();
            return;
        }
        switch (step) {
        case Step::Delivered:
        case Step::Lagged:
            if (--budget == 0) {
                // Let the loop breathe; the hook stays disarmed: we are scheduled.
                if (postWake())
                    return;
                budget = kBurst; // out of memory: drain on rather than stop
            }
            continue;
        case Step::Empty:
            try {
                prepareWake();
            } catch (...) {
                // Out of memory: armed anyway; wake() allocates its event,
                // and if it cannot, the hook stays armed for the next event.
            }
            if (m_ring->armHook())
                return;
            continue; // something arrived while arming
        case Step::Closed:
            if (!m_closedEmitted) {
                m_closedEmitted = true;
                Q_EMIT closed();
            }
            return;
        }
    }
}

bool QtBusReceiverBase::postWake() noexcept
{
    auto *e = static_cast<WakeEvent *>(m_wake.exchange(nullptr, std::memory_order_acq_rel));
    try {
        if (!e)
            e = new WakeEvent(this); // not prepared (out of memory then): try now
        if (qtdetail::injectedWakeupFailure()) {
            e->settle(); // the caller arms the hook for the next event
            delete e; // as postEvent() does when it throws
            return false;
        }
        e->markPosted();
        QCoreApplication::postEvent(this, e); // deletes `e` if it throws (lost: arms the hook, as the caller does)
    } catch (...) {
        return false;
    }
    return true;
}

bool attachToApplication(Bus &bus)
{
    QCoreApplication *app = QCoreApplication::instance();
    if (!app)
        throw std::logic_error("sigreg::attachToApplication: no QCoreApplication exists yet");
    if (QThread::currentThread() != app->thread())
        throw std::logic_error("sigreg::attachToApplication: call it in the application's thread");
    std::shared_ptr<detail::BusLink> link = bus.link();
    const QObjectList children = app->children();
    for (QObject *child : children) {
        auto *attachment = dynamic_cast<BusAttachment *>(child);
        if (!attachment)
            continue;
        if (attachment->link == link)
            return false;
        if (!attachment->link->alive())
            delete attachment; // its bus is gone
    }
    auto *attachment = new BusAttachment(std::move(link), app);
    QObject::connect(app, &QCoreApplication::aboutToQuit, attachment, [attachment] {
        if (attachment->link->with([](Bus &b) { b.initiateShutdown(); })) {
            // Receivers of this thread would otherwise get their wake-up after
            // exec() returned, i.e. never. Each drains all it has; a pass
            // whose callbacks wake receivers of this thread (posted events
            // wait for the next pass) is followed by another, up to a bound.
            struct DeliverAll {
                DeliverAll() noexcept { t_deliverAllNow = true; }
                ~DeliverAll() { t_deliverAllNow = false; }
            } deliverAll;
            for (int pass = 0; pass < 64; ++pass) {
                const std::uint64_t before = t_drains;
                QCoreApplication::sendPostedEvents(nullptr, wakeEventType());
                if (t_drains == before)
                    break;
            }
        }
    });
    return true;
}

} // namespace sigreg
