// SPDX-License-Identifier: MIT
// The C++ <-> QML bridge: typed C++ registries feeding QML handlers (also from
// other threads), and a QML Registry used from C++.
#include <sigreg/qml/qmlregistry.h>
#include <sigreg/qt/qtregistry.h>

#include <QtCore/QPromise>
#include <QtCore/QThread>
#include <QtQml/QQmlComponent>
#include <QtQml/QQmlContext>
#include <QtQml/QQmlEngine>
#include <QtTest/QtTest>

#include <atomic>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

struct Reading {
    QString sensor;
    double value = 0;
    int producer = 0;
    int seq = 0;
};

QVariantMap toMap(const Reading &r)
{
    return {{QStringLiteral("sensor"), r.sensor}, {QStringLiteral("value"), r.value},
            {QStringLiteral("producer"), r.producer}, {QStringLiteral("seq"), r.seq}};
}

struct Point {
    Q_GADGET
    Q_PROPERTY(int x MEMBER x)
    Q_PROPERTY(int y MEMBER y)
public:
    int x = 0;
    int y = 0;
};

// Called from JS handlers: records on which thread they run, and what.
class Probe : public QObject
{
    Q_OBJECT
public:
    Q_INVOKABLE void record(int producer, int seq)
    {
        if (QThread::currentThread() != thread())
            ++wrongThread;
        seen.emplace_back(producer, seq);
    }
    std::vector<std::pair<int, int>> seen;
    int wrongThread = 0;
};

} // namespace

/// A QML engine that finds the in-tree `Sigreg` module.
struct SigregEngine : QQmlEngine {
    SigregEngine() { addImportPath(QStringLiteral(SIGREG_QML_IMPORT_PATH)); }
};

class tst_QmlBridge : public QObject
{
    Q_OBJECT

    std::unique_ptr<QObject> load(QQmlEngine &engine, const QByteArray &qml, const QVariantMap &properties)
    {
        QQmlComponent component(&engine);
        component.setData(qml, QUrl(QStringLiteral("file:///bridge.qml")));
        std::unique_ptr<QObject> root(component.createWithInitialProperties(properties));
        if (!root)
            qWarning() << component.errors();
        return root;
    }

private Q_SLOTS:
    void initTestCase() { qRegisterMetaType<Point>(); }

    void typedEventsReachQmlHandlersInPriorityOrder()
    {
        sigreg::QtRegistry<Reading> readings;
        SigregEngine engine;
        std::unique_ptr<sigreg::QmlRegistry> bridge(sigreg::exposeToQml(readings, &toMap));
        QCOMPARE(readings.size(), std::size_t(1));
        auto root = load(engine, R"(
            import QtQml
            import Sigreg
            QtObject {
                required property var events
                property var log: []
                property list<QtObject> handlers: [
                    RegistryHandler { registry: events; priority: 1; onNotified: (e) => log.push("low " + e.sensor + "=" + e.value) },
                    RegistryHandler { registry: events; priority: 9; handler: (e) => { log.push("high " + e.sensor) } }
                ]
            })",
                         {{QStringLiteral("events"), QVariant::fromValue(bridge.get())}});
        QVERIFY(root);
        QCOMPARE(bridge->count(), 2);
        readings.notify(Reading{QStringLiteral("t1"), 21.5});
        // Same thread: inline, before notify() returns.
        QCOMPARE(root->property("log").toStringList(), QStringList({QStringLiteral("high t1"), QStringLiteral("low t1=21.5")}));
    }

    void notifyAsyncFromASecondEngineAfterTheFirstIsGone()
    {
        // A registry owned by C++ serves one engine, then (a reload) the next:
        // notifyAsync() in the second must not use what the first engine
        // owned (a heap-use-after-free under ASan before), and must resolve.
        sigreg::QtRegistry<Reading> readings;
        std::unique_ptr<sigreg::QmlRegistry> bridge(sigreg::exposeToQml(readings, &toMap));
        for (int round = 0; round < 2; ++round) {
            SigregEngine engine;
            auto root = load(engine, R"(
                import QtQml
                import Sigreg
                QtObject {
                    required property var events
                    property int seen: 0
                    property bool done: false
                    property RegistryHandler h: RegistryHandler {
                        registry: events
                        handler: (e) => { seen++; return Promise.resolve() }
                    }
                    function go() { events.notifyAsync({ sensor: "s" }).then(() => done = true) }
                })",
                             {{QStringLiteral("events"), QVariant::fromValue(bridge.get())}});
            QVERIFY(root);
            QVERIFY(QMetaObject::invokeMethod(root.get(), "go"));
            QCOMPARE(root->property("seen").toInt(), 1);
            QTRY_VERIFY(root->property("done").toBool());
        }
    }

    void crossThreadEventsRunInTheEngineThreadExactlyOnceInOrder()
    {
        sigreg::QtRegistry<Reading> readings;
        SigregEngine engine;
        Probe probe;
        std::unique_ptr<sigreg::QmlRegistry> bridge(sigreg::exposeToQml(readings, &toMap));
        auto root = load(engine, R"(
            import QtQml
            import Sigreg
            QtObject {
                required property var events
                required property var probe
                property RegistryHandler handler: RegistryHandler {
                    registry: events
                    onNotified: (e) => probe.record(e.producer, e.seq)
                }
            })",
                         {{QStringLiteral("events"), QVariant::fromValue(bridge.get())},
                          {QStringLiteral("probe"), QVariant::fromValue(&probe)}});
        QVERIFY(root);

        constexpr int kProducers = 3;
        constexpr int kEach = 2000;
        std::vector<std::thread> producers;
        for (int p = 0; p < kProducers; ++p) {
            producers.emplace_back([&readings, p] {
                for (int i = 0; i < kEach; ++i)
                    readings.notify(Reading{QStringLiteral("s"), double(i), p, i});
            });
        }
        for (auto &t : producers)
            t.join();
        QTRY_COMPARE_WITH_TIMEOUT(probe.seen.size(), std::size_t(kProducers * kEach), 20000);
        QCOMPARE(probe.wrongThread, 0);
        std::vector<int> next(kProducers, 0);
        for (const auto &[producer, seq] : probe.seen) {
            QCOMPARE(seq, next[std::size_t(producer)]); // each producer's order, nothing twice or lost
            ++next[std::size_t(producer)];
        }
        QCoreApplication::processEvents();
        QCOMPARE(probe.seen.size(), std::size_t(kProducers * kEach));
    }

    // All JS handlers of one notify share one JS value, inline or queued.
    void handlersOfOneNotifyShareOneJsValue()
    {
        sigreg::QtRegistry<Reading> readings;
        SigregEngine engine;
        std::unique_ptr<sigreg::QmlRegistry> bridge(sigreg::exposeToQml(readings, &toMap));
        auto root = load(engine, R"(
            import QtQml
            import Sigreg
            QtObject {
                required property var events
                property var first: null
                property int same: 0
                property int calls: 0
                property list<QtObject> handlers: [
                    RegistryHandler { registry: events; priority: 2; onNotified: (e) => { first = e; e.mark = true; ++calls } },
                    RegistryHandler { registry: events; priority: 1; onNotified: (e) => { if (e === first && e.mark) ++same; ++calls } },
                    RegistryHandler { registry: events; priority: 0; handler: (e) => { if (e === first) ++same; ++calls } }
                ]
            })",
                         {{QStringLiteral("events"), QVariant::fromValue(bridge.get())}});
        QVERIFY(root);
        readings.notify(Reading{QStringLiteral("inline"), 1});
        QCOMPARE(root->property("calls").toInt(), 3);
        QCOMPARE(root->property("same").toInt(), 2);

        std::thread producer([&] {
            for (int i = 0; i < 10; ++i)
                readings.notify(Reading{QStringLiteral("queued"), double(i)});
        });
        producer.join();
        QTRY_COMPARE(root->property("calls").toInt(), 33);
        QCOMPARE(root->property("same").toInt(), 22);
    }

    void gadgetEvents()
    {
        sigreg::QtRegistry<Point> points;
        SigregEngine engine;
        std::unique_ptr<sigreg::QmlRegistry> bridge(sigreg::exposeToQml(points, [](const Point &p) { return p; }));
        auto root = load(engine, R"(
            import QtQml
            import Sigreg
            QtObject {
                required property var events
                property int sum: 0
                property RegistryHandler handler: RegistryHandler { registry: events; onNotified: (p) => sum = p.x + p.y }
            })",
                         {{QStringLiteral("events"), QVariant::fromValue(bridge.get())}});
        QVERIFY(root);
        points.notify(Point{3, 4});
        QCOMPARE(root->property("sum").toInt(), 7);
    }

    void qmlRegistryUsedFromCpp()
    {
        SigregEngine engine;
        auto root = load(engine, R"(
            import QtQml
            import Sigreg
            QtObject {
                property Registry events: Registry {}
                property var log: []
                property RegistryHandler handler: RegistryHandler { registry: events; onNotified: (e) => log.push(e.text) }
                function send(text) { events.notify({ text: text, list: [1, 2] }) }
            })",
                         {});
        QVERIFY(root);
        auto *events = qvariant_cast<sigreg::QmlRegistry *>(root->property("events"));
        QVERIFY(events);

        // A C++ handler inline, taking the event as a QVariant.
        QVariant inlineSeen;
        events->add(5, [&](const QVariant &v) { inlineSeen = v; });
        // A C++ handler in a worker thread: it gets a copy, converted once.
        QThread worker;
        worker.start();
        QObject context;
        context.moveToThread(&worker);
        std::mutex m;
        QVariant workerSeen;
        QThread *ranOn = nullptr;
        events->add(&context, [&](const QVariant &v) {
            std::lock_guard lock(m);
            workerSeen = v;
            ranOn = QThread::currentThread();
        });
        QCOMPARE(events->count(), 3);

        QVERIFY(QMetaObject::invokeMethod(root.get(), "send", Q_ARG(QVariant, QStringLiteral("from js"))));
        const QVariantMap expected{{QStringLiteral("text"), QStringLiteral("from js")},
                                   {QStringLiteral("list"), QVariantList{1, 2}}};
        QCOMPARE(inlineSeen.toMap(), expected);
        QTRY_VERIFY([&] { std::lock_guard lock(m); return ranOn != nullptr; }());
        {
            std::lock_guard lock(m);
            QCOMPARE(ranOn, &worker);
            QCOMPARE(workerSeen.toMap(), expected);
        }

        // From C++ to the JS handler.
        events->notify(QVariant(QVariantMap{{QStringLiteral("text"), QStringLiteral("from c++")}}));
        QCOMPARE(root->property("log").toStringList(), QStringList({QStringLiteral("from js"), QStringLiteral("from c++")}));
        worker.quit();
        worker.wait();
    }

    // Events from C++ come through notify() only: a JS handler's rejected
    // promise is reported (inline and queued), not lost.
    void rejectionOfAJsHandlerOfACppEventIsReported()
    {
        sigreg::QtRegistry<Reading> readings;
        SigregEngine engine;
        std::unique_ptr<sigreg::QmlRegistry> bridge(sigreg::exposeToQml(readings, &toMap));
        QSignalSpy spy(bridge.get(), &sigreg::QmlRegistry::handlerFailed);
        auto root = load(engine, R"(
            import QtQml
            import Sigreg
            QtObject {
                required property var events
                property RegistryHandler handler: RegistryHandler {
                    registry: events
                    handler: (e) => Promise.reject(new Error("rejected " + e.seq))
                }
            })",
                         {{QStringLiteral("events"), QVariant::fromValue(bridge.get())}});
        QVERIFY(root);
        readings.notify(Reading{QStringLiteral("s"), 1.0, 0, 1}); // inline: this is the engine's thread
        std::thread([&readings] { readings.notify(Reading{QStringLiteral("s"), 2.0, 1, 2}); }).join();
        QTRY_COMPARE(spy.count(), 2);
        QCOMPARE(spy.at(0).at(1).toString(), QStringLiteral("Error: rejected 1"));
        QCOMPARE(spy.at(1).at(1).toString(), QStringLiteral("Error: rejected 2"));
        QVERIFY(spy.at(0).at(2).toString().startsWith(QStringLiteral("file:///bridge.qml:")));
        QCOMPARE(bridge->failureCount(), 2.0);
    }

    void cppFailureReachesTheQmlSignal()
    {
        sigreg::QmlRegistry events;
        QSignalSpy spy(&events, &sigreg::QmlRegistry::handlerFailed);
        const sigreg::HandlerId bad = events.add([](const QVariant &) { throw std::runtime_error("c++ says no"); });
        bool sibling = false;
        events.add(-1, [&](const QVariant &) { sibling = true; });
        events.notify(QVariant(1));
        QVERIFY(sibling);
        QCOMPARE(spy.count(), 1);
        QCOMPARE(spy.at(0).at(0).toULongLong(), bad.value());
        QCOMPARE(spy.at(0).at(1).toString(), QStringLiteral("c++ says no"));
        QCOMPARE(spy.at(0).at(2).toString(), QString());
        QCOMPARE(events.failureCount(), 1.0);
    }

    // The bridge ends safely in either order, also while a producer runs.
    void bridgeDestroyedWhileProducing()
    {
        sigreg::QtRegistry<Reading> readings;
        std::atomic<int> delivered{0};
        auto *bridge = sigreg::exposeToQml(readings, &toMap);
        bridge->add([&](const QVariant &) { delivered.fetch_add(1, std::memory_order_relaxed); });
        std::atomic<bool> stop{false};
        std::thread producer([&] {
            int i = 0;
            while (!stop.load(std::memory_order_relaxed))
                readings.notify(Reading{QStringLiteral("s"), double(i++)});
        });
        QTRY_VERIFY(delivered.load() > 100);
        delete bridge; // waits for a forwarding call in flight
        QCOMPARE(readings.size(), std::size_t(0));
        const int after = delivered.load();
        stop = true;
        producer.join();
        QCOMPARE(delivered.load(), after);
    }

    // notifyAsync() with a C++ async handler still running when its Registry
    // is destroyed (a Loader unloads it): the returned promise still settles
    // once the handler's future finishes.
    void notifyAsyncSettlesAfterItsRegistryIsDestroyed()
    {
        SigregEngine engine;
        auto root = load(engine, R"(
            import QtQml
            import Sigreg
            QtObject {
                property Registry events: Registry {}
                property int settled: 0
                function go() { events.notifyAsync({ n: 1 }).then(() => ++settled, () => settled += 100) }
            })", {});
        QVERIFY(root);
        auto *events = qvariant_cast<sigreg::QmlRegistry *>(root->property("events"));
        QVERIFY(events);
        auto promise = std::make_shared<QPromise<void>>();
        events->add([promise](const QVariant &) {
            promise->start();
            return promise->future();
        });
        QVERIFY(QMetaObject::invokeMethod(root.get(), "go"));
        QTest::qWait(0);
        QCOMPARE(root->property("settled").toInt(), 0); // still waiting for the C++ handler
        delete events;
        promise->finish();
        QTRY_COMPARE(root->property("settled").toInt(), 1);
    }

    // The JS handlers of one C++ notify share one JS value, however many
    // notifies a handler between them makes (a cache of the last few
    // conversions lost it beyond four).
    void oneJsValuePerNotifyAcrossNestedNotifies()
    {
        SigregEngine engine;
        auto root = load(engine, R"(
            import QtQml
            import Sigreg
            QtObject {
                id: top
                property Registry events: Registry {}
                property var first: null
                property int compared: 0
                property bool same: false
                property RegistryHandler a: RegistryHandler { registry: events; priority: 10
                    handler: (e) => { if (e.outer) top.first = e } }
                property RegistryHandler b: RegistryHandler { registry: events; priority: 0
                    handler: (e) => { if (e.outer) { top.same = (e === top.first); ++top.compared } } }
            })", {});
        QVERIFY(root);
        auto *events = qvariant_cast<sigreg::QmlRegistry *>(root->property("events"));
        QVERIFY(events);
        int innerNotifies = 0;
        events->add(5, [&](const QVariant &v) {
            if (!v.toMap().value(QStringLiteral("outer")).toBool())
                return;
            for (int i = 0; i < 8; ++i, ++innerNotifies)
                events->notify(QVariant(QVariantMap{{QStringLiteral("inner"), i}}));
        });
        events->notify(QVariant(QVariantMap{{QStringLiteral("outer"), true}}));
        QCOMPARE(innerNotifies, 8);
        QCOMPARE(root->property("compared").toInt(), 1);
        QVERIFY2(root->property("same").toBool(), "the two JS handlers of one notify saw different JS values");
    }

    // Each notify of one QmlEvent gives its JS handlers a fresh JS value:
    // what a handler changed on the last one is not seen by the next notify.
    void sameQmlEventNotifiedTwiceGetsFreshJsValues()
    {
        SigregEngine engine;
        auto root = load(engine, R"(
            import QtQml
            import Sigreg
            QtObject {
                property Registry events: Registry {}
                property var log: []
                property RegistryHandler h: RegistryHandler { registry: events
                    handler: (e) => { log.push(e.n + (e.marked ? " marked" : " fresh")); e.marked = true } }
            })", {});
        QVERIFY(root);
        auto *events = qvariant_cast<sigreg::QmlRegistry *>(root->property("events"));
        QVERIFY(events);
        const sigreg::QmlEvent event(QVariant(QVariantMap{{QStringLiteral("n"), 1}}));
        events->notify(event);
        events->notify(event);
        QCOMPARE(root->property("log").toStringList(), QStringList({QStringLiteral("1 fresh"), QStringLiteral("1 fresh")}));
    }

    void sourceDestroyedFirst()
    {
        auto readings = std::make_unique<sigreg::QtRegistry<Reading>>();
        std::unique_ptr<sigreg::QmlRegistry> bridge(sigreg::exposeToQml(*readings, &toMap));
        int seen = 0;
        bridge->add([&](const QVariant &) { ++seen; });
        readings->notify(Reading{QStringLiteral("s"), 1});
        QCOMPARE(seen, 1);
        readings.reset();
        // The bridge stays usable on its own; its forwarding guard outlived
        // its registry and is destroyed harmlessly with the bridge (ASan).
        bridge->notify(QVariant(2));
        QCOMPARE(seen, 2);
        bridge.reset();
    }
};

QTEST_GUILESS_MAIN(tst_QmlBridge)
#include "tst_qmlbridge.moc"
