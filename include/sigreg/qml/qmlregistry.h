// SPDX-License-Identifier: MIT
// Sigreg QML — the `Registry` element of `import Sigreg`, and the bridge that
// feeds a typed C++ registry to QML.
//
// Model
// -----
// A QML `Registry` is a sigreg::QtRegistry of QML values (sigreg::QmlEvent, a
// QVariant that keeps the original JS value while it is being delivered in
// the engine's thread). Handlers are added from QML with `RegistryHandler`
// objects, or from C++ with the add() overloads below, which take handlers
// callable as f(const QVariant&) (or f(const sigreg::QmlEvent&)).
//
// * JS handlers always run in the QML engine's thread: a notify() from
//   another thread queues their calls there (one wake-up per drain, per-thread
//   order kept), exactly as the Qt facade does for any context object.
// * All JS handlers of one notify share one JS value: for notify() from JS
//   the very value it was given (no conversion), for an event from C++ one
//   conversion in the engine's thread, made per notify (a QmlEvent notified
//   twice gives two values), however deeply notifies nest. For calls queued
//   from another thread the value is found again by the event copy's
//   serial among the last four conversions: handlers of one notify whose
//   calls are separated by more than three other notifies' calls get a
//   conversion each.
//   C++ handlers and handlers in other threads see an event from JS
//   converted once to a QVariant (objects become QVariantMap, arrays
//   QVariantList).
// * A handler that throws (a JS error or a C++ exception) never stops its
//   siblings: handlerFailed(id, message, location) reports it, location being
//   "url:line" of a JS error.
//   A promise a `handler` function returns is a failure when it rejects,
//   also under notify() (from JS or C++), which does not wait for it.
//
// Asynchrony in QML
// -----------------
// notifyAsync(event) calls the handlers exactly as notify() does and returns
// a JS Promise. A `RegistryHandler` whose `handler` function returns a
// thenable (a Promise, an async function's result) is awaited; handlers run
// concurrently in the sense of JS: each starts in priority order, and their
// promises settle in whatever order their work ends. C++ handlers returning
// QFuture are awaited too. The promise resolves (with undefined) once all of
// them settled; it never rejects: a rejection is reported by handlerFailed()
// like a throw. `onNotified` signal handlers are synchronous (QML drops a
// signal handler's return value).
#pragma once

/// @file
/// The `Registry` element of `import Sigreg` (sigreg::QmlRegistry), its
/// events (sigreg::QmlEvent) and the bridge from typed C++ registries to QML
/// (sigreg::exposeToQml()). Part of Sigreg::Qml.
///
/// The comment at the top of this header (see its source) describes the
/// model (which thread JS handlers run in, how events are converted, how
/// failures are reported) and asynchrony in QML (notifyAsync() and
/// promises).

#include <sigreg/guard.h>
#include <sigreg/handler_id.h>
#include <sigreg/qt/qtregistry.h>
#include <sigreg/sigreg_qml_export.h>

#include <QtCore/QHash>
#include <QtCore/QObject>
#include <QtCore/QPointer>
#include <QtCore/QVariant>
#include <QtQml/QJSValue>
#include <QtQml/qqmlregistration.h>

#include <array>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

QT_BEGIN_NAMESPACE
class QJSEngine;
QT_END_NAMESPACE

namespace sigreg {

class QmlRegistry;
class RegistryHandler;

/// An event of a QML Registry: a QVariant, or (only while notify() from JS
/// delivers it in the engine's thread) the JS value it came from.
///
/// Handlers may take it as `const QVariant&`: it converts implicitly. A copy
/// always owns a QVariant (the JS value is converted once, on the notifying
/// thread), so copies may cross threads.
class SIGREG_QML_EXPORT QmlEvent
{
public:
    /// An event holding an invalid QVariant.
    QmlEvent() = default;
    /// An event holding `value` (what a notify from C++ sends).
    explicit QmlEvent(QVariant value);
    /// @{
    /// A copy owning the other event's value as a QVariant (an event from JS
    /// is converted for it, on the calling thread).
    QmlEvent(const QmlEvent &other);
    QmlEvent &operator=(const QmlEvent &other);
    /// @}
    ~QmlEvent() = default;

    /// The event as a QVariant. For an event from JS, converted on first use.
    /// Safety: an event from JS is only readable on the notifying thread
    /// (that is where handlers that see the original run).
    const QVariant &value() const;
    /// As value(): lets handlers take the event as `const QVariant&`.
    operator const QVariant &() const { return value(); } // NOLINT(google-explicit-constructor)

    /// The event as a JS value of `engine`: the original value when the event
    /// came from that engine's JS, else value() converted.
    QJSValue toScriptValue(QJSEngine *engine) const;

private:
    friend class QmlRegistry;
    QmlEvent(const QJSValue *script, QJSEngine *engine) : m_script(script), m_engine(engine) {}

    mutable QVariant m_value;
    const QJSValue *m_script = nullptr;
    QJSEngine *m_engine = nullptr;
    // Events made from a QVariant (and copies): unique, the key of
    // QmlRegistry's conversion cache. 0 for an event from JS.
    quint64 m_serial = 0;
    mutable bool m_hasValue = false;
};

namespace qmldetail {
class JsJoin;
}

/// `Registry { }` in QML: a registry of QML values. See the top of this file.
///
/// One QML engine at a time: JS events are values of the engine that made
/// them, so a Registry shared by two live engines cannot hand one engine's
/// events to the other's JS handlers (a RegistryHandler of a second engine
/// warns). A registry owned by C++ may serve a new engine once the old one
/// is gone (a reload).
///
/// Safety: as sigreg::QtRegistry: notify(), add() and remove() may be called
/// from any thread; the JS-facing invokables run in the engine's thread.
class SIGREG_QML_EXPORT QmlRegistry : public QObject
{
    Q_OBJECT
    QML_NAMED_ELEMENT(Registry)
    /// The number of registered handlers (JS and C++).
    Q_PROPERTY(int count READ count NOTIFY countChanged)
    /// Failures reported so far (throws, rejections, C++ exceptions).
    Q_PROPERTY(double failureCount READ failureCount NOTIFY handlerFailed)

public:
    /// An empty registry, a QObject child of `parent` (QML creates it with `Registry {}`).
    explicit QmlRegistry(QObject *parent = nullptr);
    ~QmlRegistry() override;

    /// The number of registered handlers, JS and C++ (the `count` property).
    int count() const noexcept { return m_registry.count(); }
    /// Failures reported so far (the `failureCount` property): handler
    /// throws, rejected promises, C++ exceptions. A double because QML
    /// numbers are.
    double failureCount() const noexcept;

    /// QML: calls every handler in priority order with `event` (see the top
    /// of this file). Without an argument: a warning, and nothing is called.
    /// @{
    Q_INVOKABLE void notify();
    Q_INVOKABLE void notify(const QJSValue &event);
    /// @}
    /// QML: as notify(event), returning a Promise that resolves once every
    /// handler's returned promise (and C++ future) settled. Never rejects.
    /// @{
    Q_INVOKABLE QJSValue notifyAsync();
    Q_INVOKABLE QJSValue notifyAsync(const QJSValue &event);
    /// @}
    /// Removes a handler by id (RegistryHandler.handlerId); waits as
    /// QtRegistry::remove() does. Returns whether it was registered. A
    /// RegistryHandler removed so reads `registered` false (and `handlerId`
    /// 0) until its `enabled`, `priority` or `registry` changes.
    Q_INVOKABLE bool remove(quint64 handlerId) { return remove(HandlerId(handlerId)); }
    /// QML: true if `handlerId` is registered here.
    Q_INVOKABLE bool contains(quint64 handlerId) const { return m_registry.contains(HandlerId(handlerId)); }
    /// Removes every handler; returns how many there were. RegistryHandlers
    /// read `registered` false then, as after remove().
    Q_INVOKABLE int clear();

    /// C++: notifies from any thread. JS handlers run in the engine's thread
    /// (queued when this is another thread).
    /// @{
    void notify(const QVariant &event) const noexcept { notify(QmlEvent(event)); }
    void notify(const QmlEvent &event) const noexcept;
    /// @}

    /// C++: the add() overloads of QtRegistry<QmlEvent> (handlers callable
    /// as f(const QVariant&) or f(const QmlEvent&), optional priority and
    /// context object, Qt::ConnectionType), with its exceptions.
    template <class... Args>
    HandlerId add(Args &&...args)
    {
        return m_registry.add(std::forward<Args>(args)...);
    }
    /// C++: as add(), returning a guard that removes the handler when destroyed.
    template <class... Args>
    [[nodiscard]] Guard addGuarded(Args &&...args)
    {
        return m_registry.addGuarded(std::forward<Args>(args)...);
    }
    /// C++: as QtRegistry::remove(): waits for calls running on other threads.
    bool remove(HandlerId id);
    /// C++: as QtRegistry::removeNoWait().
    bool removeNoWait(HandlerId id);
    /// C++: true if `id` is registered here.
    [[nodiscard]] bool contains(HandlerId id) const { return m_registry.contains(id); }

    /// C++: forwards every event of `source` to this registry, converted by
    /// `convert` (callable as convert(const E&), returning a QVariant, a
    /// QVariantMap, a Q_GADGET or a QObject pointer) on the thread that
    /// notifies `source`, with priority `priority` among `source`'s handlers.
    /// The forwarding ends when this registry is destroyed (safe in either
    /// order). Throws what QtRegistry::add() throws.
    template <class E, class Convert>
    void forwardFrom(QtRegistry<E> &source, Convert convert, int priority = 0)
    {
        static_assert(std::is_invocable_v<Convert &, const E &>,
                      "sigreg::QmlRegistry::forwardFrom: convert must be callable as convert(const E&)");
        Guard guard = source.addGuarded(priority, [this, convert = std::move(convert)](const E &e) mutable {
            using R = std::decay_t<std::invoke_result_t<Convert &, const E &>>;
            if constexpr (std::is_same_v<R, QVariant>)
                notify(convert(e));
            else
                notify(QVariant::fromValue(convert(e)));
        });
        std::lock_guard lock(m_forwardsMutex);
        m_forwards.push_back(std::move(guard));
    }

protected:
    /// A deferred deletion (deleteLater(), QML's destroy()) that arrives
    /// while handlers run on this object's thread (a handler spinning a
    /// nested event loop) waits until they returned.
    bool event(QEvent *event) override;

Q_SIGNALS:
    /// The number of handlers changed. Emitted on the thread that changed it.
    void countChanged();
    /// A handler failed: a JS error thrown (or a promise rejected), or a C++
    /// exception. `location` is "url:line" for a JS error, else empty.
    /// Emitted on the thread where the handler ran.
    void handlerFailed(quint64 handlerId, const QString &message, const QString &location);

private:
    friend class RegistryHandler;
    friend class qmldetail::JsJoin;
    QtRegistry<QmlEvent> &typed() noexcept { return m_registry; }
    void reportRejection(quint64 id, const QJSValue &reason);
    // A thenable a JS handler returned outside a notifyAsync() of its event
    // (notify() from JS or C++, queued calls): not awaited, but its
    // rejection is reported as notifyAsync() reports it.
    void watchRejection(quint64 id, const QJSValue &result, QJSEngine *engine);
    QJSEngine *engine() const;
    QJSValue scriptValue(const QmlEvent &event, QJSEngine *engine);

    // The RegistryHandler elements registered here, by id: told when this
    // registry's remove() or clear() takes their handler.
    void elementRegistered(quint64 id, RegistryHandler *element);
    void elementUnregistered(quint64 id);
    void elementsRemoved(std::vector<quint64> ids, bool all);
    void settleElements(const std::vector<quint64> &ids, bool all);

    QtRegistry<QmlEvent> m_registry;
    std::mutex m_elementsMutex;
    QHash<quint64, QPointer<RegistryHandler>> m_elements;
    std::atomic<quint64> m_rejections{0};
    std::mutex m_forwardsMutex;
    std::vector<Guard> m_forwards;
    qmldetail::JsJoin *m_join = nullptr; // the last used (joinFor())
    qmldetail::JsJoin *joinFor(QJSEngine *js);
    // The C++ notifies running inline on this object's thread, innermost
    // first, each with the JS value its JS handlers share (converted on first
    // use): however deeply notifies nest, and however often one QmlEvent is
    // notified, each notify's JS handlers see one value of their own.
    struct Frame {
        const QmlEvent *event;
        QJSEngine *engine = nullptr;
        QJSValue value;
        Frame *outer;
    };
    mutable Frame *m_frames = nullptr;
    // The last conversions of events delivered by queued calls (a copy of
    // the event per notify, with its own serial), by serial: the JS handlers
    // of one notify share one JS value also when their calls interleave with
    // a few other notifies' calls. This object's thread only.
    struct Converted {
        quint64 serial = 0;
        QJSEngine *engine = nullptr;
        QJSValue value;
    };
    std::array<Converted, 4> m_converted;
    std::size_t m_convertedNext = 0;
    // Walks of this registry (notify(), notifyAsync()) running on this
    // object's thread: a DeferredDelete that comes meanwhile (a handler
    // spinning a nested event loop) is postponed until the outermost one
    // returned (see event()), and so is the destruction of the QObject
    // parent (the registry leaves it, then follows it).
    class Running;
    mutable int m_running = 0;
    mutable bool m_deleteWhenIdle = false;
    QMetaObject::Connection m_parentWatch;
    QPointer<QObject> m_watchedParent; // the parent m_parentWatch watches (null once it is gone)
};

/// C++ → QML bridge: a new QML Registry (owned by `parent`) fed with the
/// events of `source`, each converted by `convert` (see forwardFrom()).
/// Hand it to QML as a context or initial property, or a singleton.
template <class E, class Convert>
QmlRegistry *exposeToQml(QtRegistry<E> &source, Convert convert, QObject *parent = nullptr)
{
    auto registry = std::make_unique<QmlRegistry>(parent);
    registry->forwardFrom(source, std::move(convert));
    return registry.release();
}

} // namespace sigreg
