// SPDX-License-Identifier: MIT
// Sigreg QML — internals shared by Registry and RegistryHandler (not installed).
#pragma once

#include <sigreg/qml/qmlregistry.h>

#include <QtCore/QFuture>
#include <QtCore/QList>
#include <QtCore/QObject>
#include <QtCore/QPointer>
#include <QtCore/QString>
#include <QtQml/QJSValue>
#include <QtQml/QQmlError>
#include <QtQml/QQmlInfo>

#include <stdexcept>
#include <utility>

QT_BEGIN_NAMESPACE
class QQmlEngine;
QT_END_NAMESPACE

namespace sigreg {

/// Marks a handler call of `registry` running on the calling thread, when
/// that is the registry's thread: its destruction by a deferred deletion
/// (delivered in a nested event loop that a handler spins) waits for the
/// outermost one to end, instead of freeing the registry under the walk.
class QmlRegistry::Running
{
public:
    /// `onItsThread`: the caller runs on the registry's thread (else this
    /// marks nothing).
    Running(const QmlRegistry *registry, bool onItsThread) noexcept
        : m_registry(onItsThread ? registry : nullptr)
    {
        if (m_registry && m_registry->m_running++ == 0) {
            // The parent's destruction deletes its children outright (an
            // Item holding the Registry, deleted later): it emits destroyed()
            // first, when the registry can still leave it and follow later.
            // Connected once per parent, not per walk (a connection
            // allocates): the slot acts only while a walk runs.
            auto *self = const_cast<QmlRegistry *>(m_registry);
            QObject *parent = self->parent();
            if (parent && parent != self->m_watchedParent) {
                QObject::disconnect(self->m_parentWatch);
                self->m_parentWatch = QObject::connect(
                    parent, &QObject::destroyed, self,
                    [self, parent] {
                        if (self->m_running > 0 && self->parent() == parent) {
                            self->setParent(nullptr);
                            self->m_deleteWhenIdle = true;
                        }
                    },
                    Qt::DirectConnection);
                self->m_watchedParent = parent;
            }
        }
    }
    ~Running()
    {
        if (!m_registry || --m_registry->m_running != 0)
            return;
        auto *registry = const_cast<QmlRegistry *>(m_registry);
        if (registry->m_deleteWhenIdle) {
            registry->m_deleteWhenIdle = false;
            registry->deleteLater();
        }
    }
    Running(const Running &) = delete;
    Running &operator=(const Running &) = delete;

private:
    const QmlRegistry *m_registry;
};

} // namespace sigreg

namespace sigreg::qmldetail {

/// A JS handler's failure, thrown through the Qt facade's failure path so
/// that JS and C++ failures are reported alike (with the handler's id).
class JsHandlerError : public std::runtime_error
{
public:
    JsHandlerError(const QString &message, QString location)
        : std::runtime_error(message.toStdString()), m_message(message), m_location(std::move(location))
    {
    }
    const QString &message() const noexcept { return m_message; }
    const QString &location() const noexcept { return m_location; }

private:
    QString m_message;
    QString m_location;
};

/// What a thrown (or rejected-with) JS value says: "Error: text" and
/// "url:line" for an Error object, its string form for anything else.
JsHandlerError errorFromValue(const QJSValue &thrown);

/// What Sigreg keeps per JS engine, as a child of the engine (so it lives
/// and dies in the engine's thread, with the engine): the JS helpers below,
/// and for a QML engine the one connection that feeds WarningCapture.
class EngineSupport : public QObject
{
    Q_OBJECT
public:
    /// The engine's support object, made on first use (in its thread).
    static EngineSupport *of(QJSEngine *engine);

    /// Calls `function(argument)`; throws JsHandlerError when it throws.
    /// (QJSValue::call() returns a thrown value as if it were the result, so
    /// the call goes through a JS trampoline that catches and stores it.)
    QJSValue call(const QJSValue &function, const QJSValue &argument);

    QJSEngine *engine() const noexcept { return m_engine; }
    /// function(entries, cppDone, sink): see Registry.notifyAsync().
    const QJSValue &joinFunction() const noexcept { return m_join; }
    /// function(): {promise, resolve}.
    const QJSValue &deferredFunction() const noexcept { return m_deferred; }

private:
    explicit EngineSupport(QJSEngine *engine);
    QJSEngine *m_engine;
    QJSValue m_box;
    QJSValue m_trampoline;
    QJSValue m_join;
    QJSValue m_deferred;
};

/// Errors the QML engine reports while an `onNotified` handler runs (a throw
/// in a signal handler is caught by QML and reported through
/// QQmlEngine::warnings(), synchronously). One per thread, nested.
class WarningCapture
{
public:
    WarningCapture() noexcept;
    ~WarningCapture();
    WarningCapture(const WarningCapture &) = delete;
    WarningCapture &operator=(const WarningCapture &) = delete;

    const QList<QQmlError> &errors() const noexcept { return m_errors; }
    /// Adds QML's warnings to the innermost capture of this thread, if any.
    static void collect(const QList<QQmlError> &warnings);

private:
    QList<QQmlError> m_errors;
    WarningCapture *m_outer;
};

/// qmlWarning(object) for Sigreg's own warnings, about the call that raised
/// them (Registry.notify() without an argument, a RegistryHandler given a
/// wrong property, ...): written as `ownWarning(this) << ...`, it is issued
/// past any capture, so it is never taken for a failure of an onNotified
/// handler that made that call.
class OwnWarning
{
public:
    explicit OwnWarning(const QObject *object) : m_info(qmlWarning(object)) {}
    template <class T>
    OwnWarning &operator<<(const T &value)
    {
        m_info << value;
        return *this;
    }

private:
    WarningCapture m_notTheHandlers; // declared first: outlives m_info, which issues the warning when destroyed
    QQmlInfo m_info;
};
inline OwnWarning ownWarning(const QObject *object)
{
    return OwnWarning(object);
}

/// The thenables returned by `handler` functions during one notifyAsync():
/// only those of calls with that notifyAsync()'s own event object (not of a
/// notify() another registry's handler makes meanwhile, nor of queued calls
/// a nested event loop delivers).
class AsyncCollector
{
public:
    explicit AsyncCollector(const void *event) noexcept;
    ~AsyncCollector();
    AsyncCollector(const AsyncCollector &) = delete;
    AsyncCollector &operator=(const AsyncCollector &) = delete;

    static AsyncCollector *current() noexcept;
    /// Whether a call with `event` belongs to this collector's walk.
    bool covers(const void *event) const noexcept { return event == m_event; }
    void add(quint64 id, const QJSValue &thenable) { m_entries.append({id, thenable}); }
    const QList<std::pair<quint64, QJSValue>> &entries() const noexcept { return m_entries; }

private:
    QList<std::pair<quint64, QJSValue>> m_entries;
    const void *m_event;
    AsyncCollector *m_outer;
};

/// The JS side of Registry.notifyAsync(): joins the collected thenables and
/// the C++ handlers' future into one promise, reporting rejections. Lives
/// in the registry's (the engine's) thread, a child of the registry.
class JsJoin : public QObject
{
    Q_OBJECT
public:
    JsJoin(QmlRegistry *registry, QJSEngine *engine);
    QJSValue join(const AsyncCollector &collected, const QFuture<void> &cppDone);
    /// Reports a rejection of `result` (a handler's return value that no
    /// join awaits), as join() does, without waiting for it.
    void watch(quint64 id, const QJSValue &result);
    /// The engine this join works in; null once it is destroyed.
    QJSEngine *engine() const noexcept { return m_support ? m_support->engine() : nullptr; }

    Q_INVOKABLE void reject(double id, const QJSValue &reason);

private:
    QmlRegistry *m_registry;
    QPointer<EngineSupport> m_support; // a child of the engine
    QJSValue m_self;
};

} // namespace sigreg::qmldetail
