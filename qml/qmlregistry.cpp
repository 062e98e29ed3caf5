// SPDX-License-Identifier: MIT
// Sigreg QML — Registry (QmlRegistry), QmlEvent and the notifyAsync() join.
#include "qmlsupport_p.h"
#include "registryhandler.h"

#include <QtCore/QEvent>
#include <QtCore/QFutureWatcher>
#include <QtCore/QThread>
#include <QtQml/QJSEngine>
#include <QtQml/QQmlEngine>
#include <QtQml/QQmlInfo>

namespace sigreg {

// --- QmlEvent --------------------------------------------------------------------

namespace {
// Serials of events from C++ and of copies: a per-thread counter under a per-thread prefix, so
// that making them shares no cache line between notifying threads.
std::atomic<quint64> g_nextThreadPrefix{1};
thread_local quint64 t_serialPrefix = 0;
thread_local quint64 t_serialCount = 0;

quint64 nextSerial() noexcept
{
    if (t_serialPrefix == 0)
        t_serialPrefix = g_nextThreadPrefix.fetch_add(1, std::memory_order_relaxed) << 40;
    return t_serialPrefix | (++t_serialCount & ((quint64(1) << 40) - 1));
}
} // namespace

QmlEvent::QmlEvent(QVariant value) : m_value(std::move(value)), m_serial(nextSerial()), m_hasValue(true) {}

QmlEvent::QmlEvent(const QmlEvent &other) : m_value(other.value()), m_serial(nextSerial()), m_hasValue(true) {}

QmlEvent &QmlEvent::operator=(const QmlEvent &other)
{
    if (this != &other) {
        m_value = other.value();
        m_hasValue = true;
        m_script = nullptr;
        m_engine = nullptr;
        m_serial = nextSerial();
    }
    return *this;
}

const QVariant &QmlEvent::value() const
{
    if (!m_hasValue) {
        // Only events made by Registry.notify(QJSValue) lack a value, and
        // they are read only on the notifying (the engine's) thread.
        m_value = m_script ? m_script->toVariant() : QVariant();
        m_hasValue = true;
    }
    return m_value;
}

QJSValue QmlEvent::toScriptValue(QJSEngine *engine) const
{
    if (m_script && engine == m_engine)
        return *m_script;
    return engine->toScriptValue(value());
}

// --- QmlRegistry -----------------------------------------------------------------

QmlRegistry::QmlRegistry(QObject *parent) : QObject(parent)
{
    connect(&m_registry, &QtRegistryBase::countChanged, this, &QmlRegistry::countChanged, Qt::DirectConnection);
    // Every failure, JS or C++, inline or marshalled, arrives here on the
    // thread where the handler ran.
    m_registry.setErrorHandler([this](const HandlerFailure &failure) {
        QString message;
        QString location;
        try {
            std::rethrow_exception(failure.exception);
        } catch (const qmldetail::JsHandlerError &e) {
            message = e.message();
            location = e.location();
        } catch (...) {
            const std::string_view what = failure.message();
            message = QString::fromUtf8(what.data(), qsizetype(what.size()));
        }
        Q_EMIT handlerFailed(failure.handler.value(), message, location);
    });
}

QmlRegistry::~QmlRegistry()
{
    // Forwarding handlers may be running on other threads: their removal
    // waits for them, before anything they use goes.
    std::vector<Guard> forwards;
    {
        std::lock_guard lock(m_forwardsMutex);
        forwards.swap(m_forwards);
    }
    forwards.clear();
    m_registry.clear();
}

double QmlRegistry::failureCount() const noexcept
{
    return static_cast<double>(m_registry.failureCount() + m_rejections.load(std::memory_order_relaxed));
}

QJSEngine *QmlRegistry::engine() const
{
    return qjsEngine(this);
}

void QmlRegistry::notify(const QmlEvent &event) const noexcept
{
    if (QThread::currentThread() != thread()) {
        m_registry.notify(event); // JS handlers get queued copies
        return;
    }
    const Running running(this, true); // on its thread: checked above
    Frame frame{&event, nullptr, {}, m_frames};
    m_frames = &frame;
    m_registry.notify(event);
    m_frames = frame.outer;
}

QJSValue QmlRegistry::scriptValue(const QmlEvent &event, QJSEngine *engine)
{
    if (event.m_serial == 0 || QThread::currentThread() != thread())
        return event.toScriptValue(engine); // from JS: the original value
    for (Frame *f = m_frames; f; f = f->outer) {
        if (f->event == &event) {
            if (f->engine != engine) {
                f->value = event.toScriptValue(engine);
                f->engine = engine;
            }
            return f->value;
        }
    }
    for (const Converted &c : m_converted) {
        if (c.serial == event.m_serial && c.engine == engine)
            return c.value;
    }
    Converted &slot = m_converted[m_convertedNext];
    m_convertedNext = (m_convertedNext + 1) % m_converted.size();
    slot = {event.m_serial, engine, event.toScriptValue(engine)};
    return slot.value;
}

void QmlRegistry::notify()
{
    qmldetail::ownWarning(this) << "Registry.notify() needs an event argument, e.g. notify({ kind: \"saved\" }); nothing was "
                                   "notified";
}

void QmlRegistry::notify(const QJSValue &event)
{
    const Running running(this, QThread::currentThread() == thread());
    QJSEngine *js = engine();
    if (!js) { // not reachable from JS without an engine; a C++ caller with a QJSValue
        m_registry.notify(QmlEvent(event.toVariant()));
        return;
    }
    m_registry.notify(QmlEvent(&event, js));
}

QJSValue QmlRegistry::notifyAsync()
{
    qmldetail::ownWarning(this) << "Registry.notifyAsync() needs an event argument, e.g. notifyAsync({ kind: \"saved\" }); "
                                   "nothing was notified";
    QJSEngine *js = engine();
    if (!js)
        return {};
    // Still a promise, so that `await registry.notifyAsync()` does not throw.
    return js->evaluate(QStringLiteral("Promise.resolve()"));
}

QJSValue QmlRegistry::notifyAsync(const QJSValue &event)
{
    QJSEngine *js = engine();
    if (!js) {
        qmldetail::ownWarning(this) << "Registry.notifyAsync() is for QML; this registry has no QML engine";
        return {};
    }
    const Running running(this, QThread::currentThread() == thread());
    const QmlEvent walkEvent(&event, js);
    qmldetail::AsyncCollector collector(&walkEvent);
    const QFuture<void> cppDone = m_registry.notifyAsync(walkEvent);
    if (!m_join || m_join->engine() != js)
        m_join = joinFor(js);
    return m_join->join(collector, cppDone);
}

bool QmlRegistry::event(QEvent *event)
{
    if (event->type() == QEvent::DeferredDelete && m_running > 0) {
        // A handler of this registry spins a nested event loop: deleting now
        // would free the registry under the walk that called it.
        m_deleteWhenIdle = true;
        return true;
    }
    return QObject::event(event);
}

void QmlRegistry::watchRejection(quint64 id, const QJSValue &result, QJSEngine *js)
{
    // The join is a child of this object: made and used in its thread only
    // (a handler in another engine's thread cannot be watched from here).
    if (QThread::currentThread() != thread())
        return;
    if (!m_join || m_join->engine() != js)
        m_join = joinFor(js);
    m_join->watch(id, result);
}

qmldetail::JsJoin *QmlRegistry::joinFor(QJSEngine *js)
{
    // One join per engine: a registry owned by C++ may outlive the engine
    // that first used it (a reload) or serve two. Joins of destroyed engines
    // go, with the watchers they still held (their promises died with their
    // engine).
    qmldetail::JsJoin *found = nullptr;
    const auto joins = findChildren<qmldetail::JsJoin *>(Qt::FindDirectChildrenOnly);
    for (qmldetail::JsJoin *j : joins) {
        QJSEngine *e = j->engine();
        if (!e)
            delete j;
        else if (e == js)
            found = j;
    }
    return found ? found : new qmldetail::JsJoin(this, js);
}

bool QmlRegistry::remove(HandlerId id)
{
    const bool removed = m_registry.remove(id);
    if (removed)
        elementsRemoved({id.value()}, false);
    return removed;
}

bool QmlRegistry::removeNoWait(HandlerId id)
{
    const bool removed = m_registry.removeNoWait(id);
    if (removed)
        elementsRemoved({id.value()}, false);
    return removed;
}

int QmlRegistry::clear()
{
    const int removed = m_registry.clear();
    elementsRemoved({}, true);
    return removed;
}

void QmlRegistry::elementRegistered(quint64 id, RegistryHandler *element)
{
    std::lock_guard lock(m_elementsMutex);
    m_elements.insert(id, element);
}

void QmlRegistry::elementUnregistered(quint64 id)
{
    std::lock_guard lock(m_elementsMutex);
    m_elements.remove(id);
}

void QmlRegistry::elementsRemoved(std::vector<quint64> ids, bool all)
{
    // The elements live in this registry's (the engine's) thread: only that
    // thread may look at them, and no other may post to one it could delete
    // meanwhile. From another thread, the news goes through this object.
    if (QThread::currentThread() != thread()) {
        QMetaObject::invokeMethod(this, [this, ids = std::move(ids), all] { settleElements(ids, all); },
                                  Qt::QueuedConnection);
        return;
    }
    settleElements(ids, all);
}

void QmlRegistry::settleElements(const std::vector<quint64> &ids, bool all)
{
    // Only elements whose handler is really gone: one registered again, or
    // anew, since the removal keeps its state (clear() is not atomic with
    // this look).
    std::vector<std::pair<quint64, QPointer<RegistryHandler>>> told;
    {
        std::lock_guard lock(m_elementsMutex);
        const auto gone = [this](quint64 id) { return !m_registry.contains(HandlerId(id)); };
        if (all) {
            for (auto it = m_elements.begin(); it != m_elements.end();) {
                if (gone(it.key())) {
                    told.emplace_back(it.key(), it.value());
                    it = m_elements.erase(it);
                } else {
                    ++it;
                }
            }
        } else {
            for (quint64 id : ids) {
                if (auto it = m_elements.find(id); it != m_elements.end() && gone(id)) {
                    told.emplace_back(id, it.value());
                    m_elements.erase(it);
                }
            }
        }
    }
    for (auto &[id, element] : told) {
        if (element && element->thread() == QThread::currentThread())
            element->registrationEnded(id);
    }
}

void QmlRegistry::reportRejection(quint64 id, const QJSValue &reason)
{
    const qmldetail::JsHandlerError error = qmldetail::errorFromValue(reason);
    m_rejections.fetch_add(1, std::memory_order_relaxed);
    Q_EMIT handlerFailed(id, error.message(), error.location());
}

namespace qmldetail {

// --- JS errors -------------------------------------------------------------------

JsHandlerError errorFromValue(const QJSValue &thrown)
{
    QString location;
    if (thrown.isError() || thrown.isObject()) {
        const QJSValue file = thrown.property(QStringLiteral("fileName"));
        const QJSValue line = thrown.property(QStringLiteral("lineNumber"));
        if (file.isString() && !file.toString().isEmpty())
            location = file.toString() + QLatin1Char(':') + QString::number(line.toInt());
    }
    QString message = thrown.toString();
    if (message.isEmpty())
        message = QStringLiteral("(empty JS error)");
    return JsHandlerError(message, location);
}

// --- notifyAsync() ---------------------------------------------------------------

namespace {
thread_local AsyncCollector *t_collector = nullptr;

// `box.thrown` is the exception of the last call that threw; the box itself
// is the result of such a call (no handler can return it).
constexpr auto kTrampolineSource = R"JS((function (box) {
    return function (handler, event) {
        try {
            return handler(event);
        } catch (error) {
            box.thrown = error;
            return box;
        }
    };
}))JS";

// Each handler's thenable, failures reported and swallowed, joined with the
// C++ handlers' completion; resolves with undefined and never rejects.
constexpr auto kJoinSource = R"JS((function (entries, cppDone, sink) {
    var waits = entries.map(function (entry) {
        return Promise.resolve(entry.promise).then(function () {}, function (reason) {
            try { sink.reject(entry.id, reason); } catch (ignored) {}
        });
    });
    if (cppDone)
        waits.push(cppDone);
    return Promise.all(waits).then(function () {});
}))JS";

constexpr auto kDeferredSource = R"JS((function () {
    var deferred = {};
    deferred.promise = new Promise(function (resolve) { deferred.resolve = resolve; });
    return deferred;
}))JS";
} // namespace

AsyncCollector::AsyncCollector(const void *event) noexcept : m_event(event), m_outer(t_collector)
{
    t_collector = this;
}

AsyncCollector::~AsyncCollector()
{
    t_collector = m_outer;
}

AsyncCollector *AsyncCollector::current() noexcept
{
    return t_collector;
}

EngineSupport *EngineSupport::of(QJSEngine *engine)
{
    if (auto *support = engine->findChild<EngineSupport *>(QString(), Qt::FindDirectChildrenOnly))
        return support;
    return new EngineSupport(engine);
}

EngineSupport::EngineSupport(QJSEngine *engine) : QObject(engine), m_engine(engine), m_box(engine->newObject())
{
    m_trampoline = engine->evaluate(QString::fromUtf8(kTrampolineSource)).call({m_box});
    m_join = engine->evaluate(QString::fromUtf8(kJoinSource));
    m_deferred = engine->evaluate(QString::fromUtf8(kDeferredSource));
    // A throw in an onNotified handler is caught by QML and reported
    // through warnings(), synchronously: one connection per engine.
    if (auto *qml = qobject_cast<QQmlEngine *>(engine))
        connect(qml, &QQmlEngine::warnings, this, &WarningCapture::collect, Qt::DirectConnection);
}

QJSValue EngineSupport::call(const QJSValue &function, const QJSValue &argument)
{
    QJSValue result = m_trampoline.call({function, argument});
    if (result.strictlyEquals(m_box)) {
        const QJSValue thrown = m_box.property(QStringLiteral("thrown"));
        m_box.deleteProperty(QStringLiteral("thrown"));
        throw errorFromValue(thrown);
    }
    return result;
}

JsJoin::JsJoin(QmlRegistry *registry, QJSEngine *engine)
    : QObject(registry), m_registry(registry), m_support(EngineSupport::of(engine))
{
    QJSEngine::setObjectOwnership(this, QJSEngine::CppOwnership);
    m_self = engine->newQObject(this);
}

QJSValue JsJoin::join(const AsyncCollector &collected, const QFuture<void> &cppDone)
{
    const auto &entries = collected.entries();
    QJSEngine *engine = m_support->engine();
    QJSValue list = engine->newArray(uint(entries.size()));
    for (qsizetype i = 0; i < entries.size(); ++i) {
        QJSValue entry = engine->newObject();
        entry.setProperty(QStringLiteral("id"), double(entries[i].first));
        entry.setProperty(QStringLiteral("promise"), entries[i].second);
        list.setProperty(quint32(i), entry);
    }
    QJSValue cpp(QJSValue::NullValue);
    if (!cppDone.isFinished()) {
        // C++ async handlers are still running: a promise resolved by a
        // watcher in this thread (QFuture::then(context) races in Qt 6.4
        // when another thread finishes the future).
        const QJSValue deferred = m_support->deferredFunction().call();
        cpp = deferred.property(QStringLiteral("promise"));
        // The watcher belongs to the engine's support object, not to this
        // join (a child of the Registry): the promise must settle even if the
        // Registry is destroyed meanwhile (a Loader unloading it).
        auto *watcher = new QFutureWatcher<void>(m_support.data());
        connect(watcher, &QFutureWatcherBase::finished, watcher,
                [watcher, resolve = deferred.property(QStringLiteral("resolve"))]() mutable {
                    resolve.call();
                    watcher->deleteLater();
                });
        watcher->setFuture(cppDone);
    }
    return m_support->joinFunction().call({list, cpp, m_self});
}

void JsJoin::watch(quint64 id, const QJSValue &result)
{
    QJSEngine *engine = m_support->engine();
    QJSValue entry = engine->newObject();
    entry.setProperty(QStringLiteral("id"), double(id));
    entry.setProperty(QStringLiteral("promise"), result);
    QJSValue list = engine->newArray(1);
    list.setProperty(0, entry);
    // The joined promise itself is dropped: nobody waits for it.
    m_support->joinFunction().call({list, QJSValue(QJSValue::NullValue), m_self});
}

void JsJoin::reject(double id, const QJSValue &reason)
{
    m_registry->reportRejection(quint64(id), reason);
}

} // namespace qmldetail
} // namespace sigreg
