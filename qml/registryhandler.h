// SPDX-License-Identifier: MIT
// Sigreg QML — `RegistryHandler`, the guard object of `import Sigreg`.
#pragma once

/// @file
/// The `RegistryHandler` element of `import Sigreg` (sigreg::RegistryHandler):
/// one handler of a QML `Registry`, registered while the object exists and is
/// enabled. Part of Sigreg::Qml; QML code uses the element, C++ code rarely
/// needs this header.

#include <sigreg/sigreg_qml_export.h>

#include <QtCore/QObject>
#include <QtCore/QPointer>
#include <QtQml/QJSValue>
#include <QtQml/QQmlParserStatus>
#include <QtQml/qqmlregistration.h>

namespace sigreg {

class QmlRegistry;
class QmlEvent;
namespace qmldetail {
class EngineSupport;
}

/// A handler of a QML `Registry`, alive as long as this object is:
///
///     RegistryHandler {
///         registry: events
///         priority: 10
///         onNotified: (event) => console.log(event.kind)
///     }
///
/// It registers once the object is complete, and unregisters when it is
/// destroyed, when `enabled` goes false or when `registry` changes (then it
/// registers with the new one); a priority change registers it anew. It is
/// called in the QML engine's thread, also for events notified from another
/// thread. Registering and unregistering cost a few microseconds, so
/// delegates of a Repeater or ListView may carry one each.
///
/// The handler is `onNotified`, or a `handler` function; the function is
/// preferred when both are given, and only its return value is seen: a
/// returned Promise is awaited by Registry.notifyAsync(), and its rejection
/// reported like a throw (under notify() too, without waiting). Either may
/// throw: the registry reports it with handlerFailed() and the other
/// handlers run.
class SIGREG_QML_EXPORT RegistryHandler : public QObject, public QQmlParserStatus
{
    Q_OBJECT
    Q_INTERFACES(QQmlParserStatus)
    QML_ELEMENT
    /// The Registry to handle events of (another type: a warning, and no registration).
    Q_PROPERTY(QObject *registry READ registry WRITE setRegistry NOTIFY registryChanged)
    /// Higher runs first; equal priorities run in registration order. A
    /// handler registers when it is complete, and QML completes the objects
    /// of one component last-declared first: equal-priority handlers declared
    /// together run in reverse declaration order. Give distinct priorities
    /// where their order matters.
    Q_PROPERTY(int priority READ priority WRITE setPriority NOTIFY priorityChanged)
    /// false: not registered.
    Q_PROPERTY(bool enabled READ isEnabled WRITE setEnabled NOTIFY enabledChanged)
    /// Optional function(event) called instead of emitting notified(); its
    /// result may be a Promise (see Registry.notifyAsync()).
    Q_PROPERTY(QJSValue handler READ handler WRITE setHandler NOTIFY handlerChanged)
    /// Whether the handler is registered now.
    Q_PROPERTY(bool registered READ isRegistered NOTIFY registeredChanged)
    /// The registry's id of this handler while registered (0 when not); the
    /// `handlerId` of Registry.handlerFailed().
    Q_PROPERTY(double handlerId READ handlerId NOTIFY registeredChanged)

public:
    /// An unregistered handler; QML creates it with `RegistryHandler {}`.
    explicit RegistryHandler(QObject *parent = nullptr);
    /// Unregisters the handler; events still queued for it are dropped.
    ~RegistryHandler() override;

    /// @{
    /// The `registry` property.
    QObject *registry() const;
    void setRegistry(QObject *registry);
    /// @}
    /// @{
    /// The `priority` property.
    int priority() const noexcept { return m_priority; }
    void setPriority(int priority);
    /// @}
    /// @{
    /// The `enabled` property.
    bool isEnabled() const noexcept { return m_enabled; }
    void setEnabled(bool enabled);
    /// @}
    /// @{
    /// The `handler` property.
    QJSValue handler() const { return m_handler; }
    void setHandler(const QJSValue &handler);
    /// @}
    /// The `registered` property.
    bool isRegistered() const noexcept { return m_id != 0; }
    /// The `handlerId` property (a double because QML numbers are).
    double handlerId() const noexcept { return static_cast<double>(m_id); }

    /// QQmlParserStatus: nothing to do before the properties are set.
    void classBegin() override {}
    /// QQmlParserStatus: registers the handler, now that its properties are set.
    void componentComplete() override;

Q_SIGNALS:
    /// The event, in the engine's thread.
    void notified(const QJSValue &event);
    /// The `registry` property changed.
    void registryChanged();
    /// The `priority` property changed.
    void priorityChanged();
    /// The `enabled` property changed.
    void enabledChanged();
    /// The `handler` property changed.
    void handlerChanged();
    /// The handler was registered or unregistered (`registered` and `handlerId` changed).
    void registeredChanged();

private Q_SLOTS:
    /// The QML context it was created in is being destroyed.
    void contextDestroyed();

private:
    friend class QmlRegistry;
    /// The registry's remove() or clear() took handler `id`.
    void registrationEnded(quint64 id);

private:
    void sync();
    void unregister(bool announce = true);
    void deliver(const QmlEvent &event);
    void registryDestroyed();

    QPointer<QObject> m_assigned;     // what `registry` was set to
    QPointer<QmlRegistry> m_registry; // the same, when it is a Registry
    QMetaObject::Connection m_registryDestroyed;
    QJSValue m_handler;
    QPointer<qmldetail::EngineSupport> m_support; // of this object's engine, set when registering
    quint64 m_id = 0;
    int m_priority = 0;
    bool m_enabled = true;
    bool m_complete = false;
    bool m_contextGone = false; // its QML context was destroyed (see componentComplete())
    bool m_warnedNoHandler = false;
};

} // namespace sigreg
