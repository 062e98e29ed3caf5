// SPDX-License-Identifier: MIT
// Sigreg QML — RegistryHandler, and the capture of errors in onNotified.
#include "registryhandler.h"

#include "qmlsupport_p.h"

#include <QtCore/QMetaMethod>
#include <QtQml/QJSEngine>
#include <QtQml/QQmlContext>
#include <QtQml/QQmlEngine>
#include <QtQml/QQmlInfo>

namespace sigreg {

namespace qmldetail {

namespace {
thread_local WarningCapture *t_capture = nullptr;
constexpr char kHookedProperty[] = "_sigreg_warnings_hooked";
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
    if (t_capture)
        t_capture->m_errors += warnings;
}

void WarningCapture::hook(QQmlEngine *engine)
{
    if (engine->property(kHookedProperty).toBool())
        return;
    engine->setProperty(kHookedProperty, true);
    // One connection per engine, not per handler: warnings outside an
    // onNotified call find no capture and cost a thread-local read.
    QObject::connect(engine, &QQmlEngine::warnings, engine, &WarningCapture::collect, Qt::DirectConnection);
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
        qmlWarning(this) << "RegistryHandler.registry must be a Registry (import Sigreg), not a "
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
        qmlWarning(this) << "RegistryHandler.handler must be a function, not " << handler.toString()
                         << "; it is ignored";
        return;
    }
    m_handler = handler;
    Q_EMIT handlerChanged();
}

void RegistryHandler::componentComplete()
{
    m_complete = true;
    sync();
}

void RegistryHandler::sync()
{
    const bool wanted = m_complete && m_enabled && m_registry;
    if (m_id != 0 && (!wanted || m_registeredWith != m_registry.data() || m_registeredPriority != m_priority))
        unregister();
    if (!wanted || m_id != 0)
        return;

    if (auto *engine = qmlEngine(this))
        qmldetail::WarningCapture::hook(engine);
    if (!m_warnedNoHandler && !m_handler.isCallable()
        && !isSignalConnected(QMetaMethod::fromSignal(&RegistryHandler::notified))) {
        m_warnedNoHandler = true;
        qmlWarning(this) << "RegistryHandler has no onNotified handler and no handler function: the events it "
                            "receives go nowhere";
    }
    try {
        // Context `this`: calls run in this object's (the engine's) thread,
        // inline when notify() runs there, and end with this object.
        m_id = m_registry->typed()
                   .add(m_priority, this, [this](const QmlEvent &event) { deliver(event); }, Qt::AutoConnection)
                   .value();
    } catch (const std::exception &e) {
        qmlWarning(this) << "RegistryHandler could not register: " << e.what();
        return;
    }
    m_registeredWith = m_registry.data();
    m_registeredPriority = m_priority;
    Q_EMIT registeredChanged();
}

void RegistryHandler::unregister(bool announce)
{
    if (m_id == 0)
        return;
    const quint64 id = std::exchange(m_id, 0);
    // The registry may be gone already (it removed every handler then).
    if (m_registry && m_registry.data() == m_registeredWith)
        m_registry->typed().remove(HandlerId(id));
    m_registeredWith = nullptr;
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
        qmlWarning(this) << "its Registry was destroyed while the handler was "
                         << (wasRegistered ? "registered" : "waiting for it")
                         << "; it is unregistered and gets no events until `registry` is set again";
    }
    m_id = 0;
    m_registeredWith = nullptr;
    m_registry.clear();
    m_assigned.clear();
    if (wasRegistered)
        Q_EMIT registeredChanged();
    Q_EMIT registryChanged();
}

void RegistryHandler::deliver(const QmlEvent &event)
{
    QJSEngine *engine = qjsEngine(this);
    if (!engine)
        return;
    // One JS value per notify for all JS handlers of a registry (the
    // original for events from JS, one conversion for events from C++).
    const QJSValue value = m_registeredWith ? m_registeredWith->scriptValue(event, engine) : event.toScriptValue(engine);
    if (m_handler.isCallable()) {
        qmldetail::JsCaller *caller = m_registeredWith ? m_registeredWith->caller(engine) : nullptr;
        QJSValue result;
        if (caller) {
            result = caller->call(m_handler, value); // throws what the handler threw
        } else {
            qmldetail::JsCaller own(engine);
            result = own.call(m_handler, value);
        }
        if (auto *collector = qmldetail::AsyncCollector::current()) {
            if (result.isObject() && result.property(QStringLiteral("then")).isCallable())
                collector->add(m_id, result);
        }
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
