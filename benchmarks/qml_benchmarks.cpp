// SPDX-License-Identifier: MIT
// sigreg-benchmarks — the QML module (`import Sigreg`) against what QML does
// for the same job with its own signals.
//
// Every row builds one QQmlEngine (outside the timed loop) and loads kSource
// below from a string: a root QtObject with a `Registry`, a QML signal
// `fired(var event)`, and inline Components: `RegistryHandler`s of that
// registry (with onNotified, or with a `handler` function) and a
// `Connections` to `fired`. All do the same JS work (`root.hits += event.n`).
// Only QtQml is imported, so a QCoreApplication is enough (`import QtQml`
// needs QtQml's own module files: on Debian qml6-module-qtqml and
// qml6-module-qtqml-models). Handler objects are created from the Components in C++
// (QQmlComponent::create in the component's creation context, as
// Component.createObject() would) and deleted from C++.
//
// * BM_Qml_NotifyHandlers: N RegistryHandlers (onNotified), one
//   `registry->notify(QVariant)` from C++ per iteration.
// * BM_Qml_SignalHandlers: N Connections (function onFired), one emission of
//   the QML signal from C++ per iteration (QMetaMethod::invoke, the method
//   looked up once, direct connection).
//   Both rows send the same payload, a QVariantMap {"n": 1} built once.
//   Converting it to a JS object is part of what is measured: a Registry
//   converts an event from C++ once per notify for all its JS handlers,
//   while QML converts a signal's arguments for each handler it calls
//   (QQmlBoundSignalExpression::evaluate).
// * BM_Qml_NotifyHandlerFunctions (diagnostic): as BM_Qml_NotifyHandlers, the
//   RegistryHandlers given a `handler` function instead of onNotified, which
//   RegistryHandler calls itself (no notified() signal in between).
//   Counter calls_per_notify: handler calls seen in JS (`hits`) per notify,
//   warm-up included; the row fails unless it is exactly N.
// * BM_Qml_HandlerChurn / BM_Qml_ConnectionsChurn: per iteration, create N
//   handler objects (each registers with the Registry, or connects to
//   `fired`, when its creation completes), then delete them in creation order
//   (each unregisters, or disconnects) — delegates scrolling in and out.
//   Time per iteration is N creations + N deletions; items = objects.
//   An untimed round before and after the loop checks that the objects really
//   receive events while alive and no longer after deletion.
//
// Allocation counters (per thread, as everywhere): allocs_per_notify and
// allocs_per_object. The JS heap of the engine is not malloc'ed, so
// they count the C++ side only (QVariant/QJSValue conversions, QObjects,
// connections, Sigreg's nodes).
#include "bench_common.h"

#include <sigreg/qml/qmlregistry.h>

#include <benchmark/benchmark.h>

#include <QtCore/QByteArray>
#include <QtCore/QCoreApplication>
#include <QtCore/QEvent>
#include <QtCore/QMetaMethod>
#include <QtCore/QObject>
#include <QtCore/QString>
#include <QtCore/QUrl>
#include <QtCore/QVariant>
#include <QtCore/QVariantMap>
#include <QtQml/QQmlComponent>
#include <QtQml/QQmlContext>
#include <QtQml/QQmlEngine>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#ifndef SIGREG_BENCH_QML_IMPORT_PATH
#error "SIGREG_BENCH_QML_IMPORT_PATH must name the folder that holds the Sigreg QML module (<build>/qml)"
#endif

namespace sigreg_bench {
/// The application object, created on first use (main.cpp).
QCoreApplication *ensureApplication();
} // namespace sigreg_bench

namespace sigreg_bench {
namespace {

/// The scene of every QML row. `hits` is a plain QML number property that
/// every handler call increments by event.n (1), so it counts the calls.
constexpr char kSource[] = R"QML(
import QtQml
import Sigreg

QtObject {
    id: root

    property double hits: 0
    readonly property Registry registry: Registry {}
    signal fired(var event)

    readonly property Component registryHandler: Component {
        RegistryHandler {
            registry: root.registry
            onNotified: (event) => { root.hits += event.n }
        }
    }
    readonly property Component registryHandlerFunction: Component {
        RegistryHandler {
            registry: root.registry
            handler: (event) => { root.hits += event.n }
        }
    }
    readonly property Component connections: Component {
        Connections {
            target: root
            function onFired(event) { root.hits += event.n }
        }
    }
}
)QML";

/// One engine, the scene loaded, and the handler objects created from it.
class QmlScene {
public:
    QmlScene()
    {
        m_engine.addImportPath(QStringLiteral(SIGREG_BENCH_QML_IMPORT_PATH));
        QQmlComponent component(&m_engine);
        component.setData(QByteArray(kSource), QUrl(QStringLiteral("qrc:/sigreg_bench/QmlScene.qml")));
        m_root.reset(component.create());
        if (!m_root) {
            m_error = "cannot load the QML scene: " + component.errorString().toStdString();
            return;
        }
        m_registry = qobject_cast<sigreg::QmlRegistry *>(m_root->property("registry").value<QObject *>());
        m_handlerComponent = qobject_cast<QQmlComponent *>(m_root->property("registryHandler").value<QObject *>());
        m_handlerFunctionComponent
            = qobject_cast<QQmlComponent *>(m_root->property("registryHandlerFunction").value<QObject *>());
        m_connectionsComponent = qobject_cast<QQmlComponent *>(m_root->property("connections").value<QObject *>());
        const int fired = m_root->metaObject()->indexOfSignal("fired(QVariant)");
        if (!m_registry || !m_handlerComponent || !m_handlerFunctionComponent || !m_connectionsComponent || fired < 0) {
            m_error = "the QML scene lacks registry, registryHandler, registryHandlerFunction, connections or "
                      "fired(QVariant)";
            return;
        }
        m_fired = m_root->metaObject()->method(fired);
    }

    ~QmlScene()
    {
        m_objects.clear();
        m_root.reset();
        // Whatever the engine left for the (never running) main event loop.
        QCoreApplication::sendPostedEvents(nullptr, QEvent::DeferredDelete);
    }

    QmlScene(const QmlScene &) = delete;
    QmlScene &operator=(const QmlScene &) = delete;

    /// Empty when the scene loaded; else why not.
    const std::string &error() const noexcept { return m_error; }
    sigreg::QmlRegistry *registry() const noexcept { return m_registry; }
    QQmlComponent *handlerComponent() const noexcept { return m_handlerComponent; }
    QQmlComponent *handlerFunctionComponent() const noexcept { return m_handlerFunctionComponent; }
    QQmlComponent *connectionsComponent() const noexcept { return m_connectionsComponent; }

    double hits() const { return m_root->property("hits").toDouble(); }
    void resetHits() { m_root->setProperty("hits", 0.0); }

    /// Emits the QML signal fired(event), as C++ code holding a QML object would.
    void emitFired(const QVariant &event) const
    {
        m_fired.invoke(m_root.get(), Qt::DirectConnection, Q_ARG(QVariant, event));
    }

    /// One object of `component`, in the scene's context; nullptr on error.
    QObject *create(QQmlComponent *component) const { return component->create(component->creationContext()); }

    /// `count` objects of `component`, kept until clearObjects(). False (and
    /// error() set) when one could not be created.
    bool createObjects(QQmlComponent *component, std::int64_t count)
    {
        for (std::int64_t i = 0; i < count; ++i) {
            std::unique_ptr<QObject> object(create(component));
            if (!object) {
                m_error = "cannot create a handler object: " + component->errorString().toStdString();
                return false;
            }
            m_objects.push_back(std::move(object));
        }
        return true;
    }
    void clearObjects() { m_objects.clear(); }

private:
    QCoreApplication *m_app = ensureApplication(); // before the engine
    QQmlEngine m_engine; // destroyed after everything below
    std::unique_ptr<QObject> m_root;
    sigreg::QmlRegistry *m_registry = nullptr; // owned by m_root
    QQmlComponent *m_handlerComponent = nullptr;
    QQmlComponent *m_handlerFunctionComponent = nullptr;
    QQmlComponent *m_connectionsComponent = nullptr;
    QMetaMethod m_fired;
    std::vector<std::unique_ptr<QObject>> m_objects; // deleted before m_root
    std::string m_error;
};

/// The payload of both notify rows; the handlers add its "n" to `hits`.
QVariant makeEvent()
{
    return QVariant(QVariantMap{{QStringLiteral("n"), 1}});
}

// ---------------------------------------------------------------------------
// Notify: N handlers, one notification per iteration
// ---------------------------------------------------------------------------

/// The driver of both notify rows: `component` instantiated N times, then
/// `notify(event)` once per iteration.
template <class Notify>
void qmlNotifyBenchmark(benchmark::State &state, QmlScene &scene, QQmlComponent *component, Notify notify)
{
    const std::int64_t handlers = state.range(0);
    if (!scene.error().empty() || !scene.createObjects(component, handlers)) {
        state.SkipWithError(scene.error().c_str());
        return;
    }
    const QVariant event = makeEvent();
    scene.resetHits();
    notify(event); // warm-up: the first call of each handler function (and its conversion) is not timed

    const std::uint64_t allocsBefore = allocationCount();
    for (auto _ : state)
        notify(event);
    const std::uint64_t allocs = allocationCount() - allocsBefore;

    // Proof of delivery: every handler ran exactly once per notify.
    const double notifies = static_cast<double>(state.iterations()) + 1.0;
    const double callsPerNotify = scene.hits() / notifies;
    state.counters["calls_per_notify"] = callsPerNotify;
    if (callsPerNotify != static_cast<double>(handlers)) {
        state.SkipWithError("handler calls per notify do not match the number of handlers");
        return;
    }
    if (scene.registry()->failureCount() != 0) {
        state.SkipWithError("a RegistryHandler failed (see handlerFailed)");
        return;
    }
    reportAllocations(state, "allocs_per_notify", allocs);
}

void BM_Qml_NotifyHandlers(benchmark::State &state)
{
    QmlScene scene;
    sigreg::QmlRegistry *registry = scene.registry();
    qmlNotifyBenchmark(
        state, scene, scene.handlerComponent(), [registry](const QVariant &event) { registry->notify(event); });
}

void BM_Qml_SignalHandlers(benchmark::State &state)
{
    QmlScene scene;
    qmlNotifyBenchmark(
        state, scene, scene.connectionsComponent(), [&scene](const QVariant &event) { scene.emitFired(event); });
}

/// Diagnostic: as BM_Qml_NotifyHandlers, with the `handler` function instead
/// of onNotified, so RegistryHandler calls the JS function directly instead
/// of emitting its notified() signal for QML to dispatch.
void BM_Qml_NotifyHandlerFunctions(benchmark::State &state)
{
    QmlScene scene;
    sigreg::QmlRegistry *registry = scene.registry();
    qmlNotifyBenchmark(
        state, scene, scene.handlerFunctionComponent(), [registry](const QVariant &event) { registry->notify(event); });
}

BENCHMARK(BM_Qml_NotifyHandlers)->Arg(1)->Arg(16);
BENCHMARK(BM_Qml_SignalHandlers)->Arg(1)->Arg(16);
BENCHMARK(BM_Qml_NotifyHandlerFunctions)->Arg(1)->Arg(16);

// ---------------------------------------------------------------------------
// Churn: create and delete N handler objects
// ---------------------------------------------------------------------------

/// One untimed round that checks the objects work: N created, one `notify`
/// reaches each of them once, and none after they were deleted.
/// `registered()` is the number of handlers registered with the Registry
/// (-1 for Connections, which have nothing to ask).
template <class Notify, class Count>
bool checkChurnRound(
    QmlScene &scene, QQmlComponent *component, std::int64_t count, Notify notify, Count registered, std::string &why)
{
    if (!scene.createObjects(component, count)) {
        why = scene.error();
        return false;
    }
    const QVariant event = makeEvent();
    scene.resetHits();
    const int alive = registered();
    notify(event);
    const double hitsAlive = scene.hits();
    scene.clearObjects();
    const int afterwards = registered();
    notify(event);
    const double hitsAfter = scene.hits();
    if (hitsAlive != static_cast<double>(count) || hitsAfter != hitsAlive) {
        why = "the churned objects did not receive one event each while alive, or received one after deletion";
        return false;
    }
    if (alive >= 0 && (alive != count || afterwards != 0)) {
        why = "the Registry's count does not follow the RegistryHandlers' creation and deletion";
        return false;
    }
    return true;
}

template <class Notify, class Count>
void qmlChurnBenchmark(
    benchmark::State &state, QmlScene &scene, QQmlComponent *component, Notify notify, Count registered)
{
    const std::int64_t count = state.range(0);
    std::string why = scene.error();
    // Before: also the warm-up (the Component's first instances).
    if (!why.empty() || !checkChurnRound(scene, component, count, notify, registered, why)) {
        state.SkipWithError(why.c_str());
        return;
    }

    std::vector<std::unique_ptr<QObject>> objects;
    objects.reserve(static_cast<std::size_t>(count));
    QQmlContext *context = component->creationContext();
    bool created = true;
    const std::uint64_t allocsBefore = allocationCount();
    for (auto _ : state) {
        for (std::int64_t i = 0; i < count; ++i) {
            QObject *object = component->create(context);
            created = created && object != nullptr;
            objects.emplace_back(object);
        }
        objects.clear(); // in creation order
    }
    const std::uint64_t allocs = allocationCount() - allocsBefore;

    if (!created) {
        state.SkipWithError("a handler object could not be created in the timed loop");
        return;
    }
    if (!checkChurnRound(scene, component, count, notify, registered, why)) {
        state.SkipWithError(why.c_str());
        return;
    }
    state.SetItemsProcessed(state.iterations() * count);
    reportAllocations(state, "allocs_per_object", allocs, static_cast<double>(count));
}

void BM_Qml_HandlerChurn(benchmark::State &state)
{
    QmlScene scene;
    sigreg::QmlRegistry *registry = scene.registry();
    qmlChurnBenchmark(
        state, scene, scene.handlerComponent(), [registry](const QVariant &event) { registry->notify(event); },
        [registry] { return registry->count(); });
}

void BM_Qml_ConnectionsChurn(benchmark::State &state)
{
    QmlScene scene;
    qmlChurnBenchmark(
        state, scene, scene.connectionsComponent(), [&scene](const QVariant &event) { scene.emitFired(event); },
        [] { return -1; });
}

BENCHMARK(BM_Qml_HandlerChurn)->Arg(100)->Arg(1000);
BENCHMARK(BM_Qml_ConnectionsChurn)->Arg(100)->Arg(1000);

} // namespace
} // namespace sigreg_bench
