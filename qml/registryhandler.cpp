// SPDX-License-Identifier: MIT
// Sigreg QML — RegistryHandler, and the capture of errors in onNotified.
#include "registryhandler.h"

#include "qmlsupport_p.h"

#include <QtCore/QMetaMethod>
#include <QtQml/QJSEngine>
#include <QtQml/QQmlComponent>
#include <QtQml/QQmlContext>
#include <QtQml/QQmlEngine>
#include <QtQml/QQmlInfo>

namespace sigreg {

namespace qmldetail {

namespace {
thread_local WarningCapture *t_capture = nullptr;
} // namespace

WarningCapture::WarningCapture() noexcept : m_outer(t_capture)
{
    t_capture = this;
}

WarningCapture::~WarningCapture()
{
    t_capture = m_outer;
}

void WarningCapture::collect(const QList<QQmlError> &warnings)
{
    // Outside an onNotified call there is no capture: one thread-local read.
    if (t_capture)
        t_capture->m_errors += warnings;
}

} // namespace qmldetail

RegistryHandler::RegistryHandler(QObject *parent) : QObject(parent) {}

RegistryHandler::~RegistryHandler()
{
    // Waits for a call running on another thread (there is none: calls run
    // in this object's thread), and drops events queued for this handler.
    unregister(false);
}

QObject *RegistryHandler::registry() const
{
    return m_assigned.data();
}

void RegistryHandler::setRegistry(QObject *registry)
{
    if (registry == m_assigned.data())
        return;
    unregister();
    if (m_registryDestroyed)
        disconnect(m_registryDestroyed);
    m_assigned = registry;
    m_registry = qobject_cast<QmlRegistry *>(registry);
    if (registry && !m_registry) {
        qmldetail::ownWarning(this) << "RegistryHandler.registry must be a Registry (import Sigreg), not a "
                                    << registry->metaObject()->className() << "; the handler is not registered";
    }
    if (m_registry) {
        m_registryDestroyed =
            connect(m_registry.data(), &QObject::destroyed, this, &RegistryHandler::registryDestroyed);
    }
    sync();
    Q_EMIT registryChanged();
}

void RegistryHandler::setPriority(int priority)
{
    if (priority == m_priority)
        return;
    m_priority = priority;
    unregister(); // registered anew, at the new place
    sync();
    Q_EMIT priorityChanged();
}

void RegistryHandler::setEnabled(bool enabled)
{
    if (enabled == m_enabled)
        return;
    m_enabled = enabled;
    sync();
    Q_EMIT enabledChanged();
}

void RegistryHandler::setHandler(const QJSValue &handler)
{
    if (!handler.isCallable() && !handler.isUndefined() && !handler.isNull()) {
        qmldetail::ownWarning(this) << "RegistryHandler.handler must be a function, not " << handler.toString()
                                    << "; it is ignored";
        return;
    }
    m_handler = handler;
    Q_EMIT handlerChanged();
}

void RegistryHandler::componentComplete()
{
    m_complete = true;
    if (qmlContext(this)) {
        // The context's destruction (a Loader unloading its item, a
        // component's instance destroyed) comes before this object's deferred
        // deletion: unregister then, as QML stops running the item's signal
        // handlers then.
        // (QQmlComponentAttached is not public API: connected by name.)
        if (QObject *attached = qmlAttachedPropertiesObject<QQmlComponent>(this))
            connect(attached, SIGNAL(destruction()), this, SLOT(contextDestroyed()));
    }
    sync();
}

void RegistryHandler::registrationEnded(quint64 id)
{
    if (m_id != id)
        return; // registered anew meanwhile
    m_id = 0;
    Q_EMIT registeredChanged();
}

void RegistryHandler::contextDestroyed()
{
    m_contextGone = true;
    sync();
}

void RegistryHandler::sync()
{
    // setRegistry() and setPriority() unregister first: registered means
    // registered with m_registry at m_priority.
    const bool wanted = m_complete && m_enabled && m_registry && !m_contextGone;
    if (m_id != 0 && !wanted)
        unregister();
    if (!wanted || m_id != 0)
        return;

    QJSEngine *engine = qjsEngine(this);
    if (!engine) {
        qmldetail::ownWarning(this) << "RegistryHandler needs a QML engine; it is not registered";
        return;
    }
    if (QJSEngine *registryEngine = m_registry->engine(); registryEngine && registryEngine != engine) {
        // JS events are values of one engine: those notified from the
        // registry's engine cannot be passed to this handler's functions.
        qmldetail::ownWarning(this) << "its Registry is used by another QML engine; a Registry serves one "
                                       "engine at a time, so JS events notified there may not reach this handler";
    }
    m_support = qmldetail::EngineSupport::of(engine);
    if (!m_warnedNoHandler && !m_handler.isCallable()
        && !isSignalConnected(QMetaMethod::fromSignal(&RegistryHandler::notified))) {
        m_warnedNoHandler = true;
        qmldetail::ownWarning(this) << "RegistryHandler has no onNotified handler and no handler function: the events it "
                                       "receives go nowhere";
    }
    try {
        // Context `this`: calls run in this object's (the engine's) thread,
        // inline when notify() runs there, and end with this object.
        m_id = m_registry->typed()
                   .add(m_priority, this, [this](const QmlEvent &event) { deliver(event); }, Qt::AutoConnection)
                   .value();
        m_registry->elementRegistered(m_id, this);
        if (!m_registry->typed().contains(HandlerId(m_id))) {
            // A clear() on another thread took it before it was listed.
            m_registry->elementUnregistered(std::exchange(m_id, 0));
            return;
        }
    } catch (const std::exception &e) {
        if (m_id != 0)
            m_registry->typed().remove(HandlerId(std::exchange(m_id, 0)));
        qmldetail::ownWarning(this) << "RegistryHandler could not register: " << e.what();
        return;
    }
    Q_EMIT registeredChanged();
}

void RegistryHandler::unregister(bool announce)
{
    if (m_id == 0)
        return;
    const quint64 id = std::exchange(m_id, 0);
    // The registry may be gone already (it removed every handler then).
    if (m_registry) {
        m_registry->elementUnregistered(id);
        m_registry->typed().remove(HandlerId(id));
    }
    if (announce)
        Q_EMIT registeredChanged();
}

void RegistryHandler::registryDestroyed()
{
    const bool wasRegistered = m_id != 0;
    // A registry going away while this handler still wants its events is
    // worth a warning; the two torn down together (their component, the
    // engine) is not: the handler's context is invalid by then.
    const QQmlContext *context = qmlContext(this);
    if (m_complete && m_enabled && context && context->isValid()) {
        qmldetail::ownWarning(this) << "its Registry was destroyed while the handler was "
                                    << (wasRegistered ? "registered" : "waiting for it")
                                    << "; it is unregistered and gets no events until `registry` is set again";
    }
    m_id = 0;
    m_registry.clear();
    m_assigned.clear();
    if (wasRegistered)
        Q_EMIT registeredChanged();
    Q_EMIT registryChanged();
}

void RegistryHandler::deliver(const QmlEvent &event)
{
    // Called only while registered: m_registry and the engine (m_support's
    // parent, which outlives the objects it created) are alive.
    if (!m_support) // the engine is being destroyed
        return;
    QJSEngine *engine = m_support->engine();
    // One JS value per notify for all JS handlers of a registry (the
    // original for events from JS, one conversion for events from C++).
    const QJSValue value = m_registry->scriptValue(event, engine);
    if (m_handler.isCallable()) {
        const quint64 id = m_id; // the call may unregister this handler (enabled = false)
        // ... or move it to another registry, or destroy it: what follows the
        // call uses neither `this` nor m_registry.
        const QPointer<QmlRegistry> registry = m_registry;
        const QJSValue result = m_support->call(m_handler, value); // throws what the handler threw
        // Every object goes to Promise.resolve(), which decides: a thenable
        // is awaited, a plain object resolves at once, and a `then` getter
        // that throws rejects (reported), which reading `then` here would
        // swallow.
        if (!result.isObject() && !result.isCallable())
            return;
        if (auto *collector = qmldetail::AsyncCollector::current(); collector && collector->covers(&event))
            collector->add(id, result); // joined by this notifyAsync()
        else if (registry)
            registry->watchRejection(id, result, engine); // a plain notify(): not awaited, failures still reported
        return;
    }
    qmldetail::WarningCapture capture;
    Q_EMIT notified(value);
    if (!capture.errors().isEmpty()) {
        const QQmlError &error = capture.errors().constFirst();
        QString location;
        if (error.url().isValid())
            location = error.url().toString() + QLatin1Char(':') + QString::number(error.line());
        throw qmldetail::JsHandlerError(error.description(), location);
    }
}

} // namespace sigreg
