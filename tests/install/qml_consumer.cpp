// SPDX-License-Identifier: MIT
// A QML consumer of an *installed* Sigreg: links Sigreg::Qml and Qt6::Qml and
// finds `import Sigreg` only through the installed prefix (QML_IMPORT_PATH in
// the test's environment; no import path is added in code).
//
// (a) An inline QML document with a Registry and RegistryHandlers of several
//     priorities (and a C++ handler among them): notified from QML and from
//     C++, the handlers run in priority order.
// (b) The C++ bridge: sigreg::exposeToQml() over a typed QtRegistry; an event
//     notified from a std::thread reaches a QML RegistryHandler in the
//     engine's thread, through its event loop.
#include <sigreg/qml/qmlregistry.h>
#include <sigreg/qt/qtregistry.h>

#include <QtCore/QByteArray>
#include <QtCore/QCoreApplication>
#include <QtCore/QDeadlineTimer>
#include <QtCore/QDir>
#include <QtCore/QObject>
#include <QtCore/QString>
#include <QtCore/QThread>
#include <QtCore/QUrl>
#include <QtCore/QVariant>
#include <QtQml/QQmlComponent>
#include <QtQml/QQmlEngine>

#include "consumer_checks.h"

#include <atomic>
#include <functional>
#include <memory>
#include <thread>

namespace {

using consumer::check;

/// Pumps the event loop until `done` holds or `timeoutMs` passed (QTRY-like).
bool waitFor(const std::function<bool()> &done, int timeoutMs = 10000)
{
    const QDeadlineTimer deadline(timeoutMs);
    while (!done()) {
        if (deadline.hasExpired())
            return false;
        QCoreApplication::processEvents(QEventLoop::AllEvents, 10);
    }
    return true;
}

QString errorsOf(const QQmlComponent &component)
{
    QString text;
    for (const QQmlError &error : component.errors())
        text += error.toString() + QLatin1Char(' ');
    return text;
}

/// Records on which thread the QML handler of part (b) ran.
class Probe : public QObject
{
    Q_OBJECT
public:
    Q_INVOKABLE void record(const QString &entry)
    {
        log += entry;
        if (QThread::currentThread() != thread())
            wrongThread = true;
        ++calls;
    }
    QString log;
    bool wrongThread = false;
    std::atomic<int> calls{0};
};

// (a) handlers with priorities, from QML and from C++.
constexpr char kPriorityQml[] = R"QML(
import QtQml
import Sigreg

QtObject {
    id: root
    property string log: ""
    property Registry reg: Registry {}
    property list<QtObject> handlers: [
        RegistryHandler {
            registry: root.reg
            priority: 1
            handler: function (event) { root.log += "low:" + event.kind + ";" }
        },
        RegistryHandler {
            registry: root.reg
            priority: 10
            handler: (event) => { root.log += "high:" + event.kind + ";" }
        },
        RegistryHandler {
            registry: root.reg
            priority: 5
            onNotified: (event) => { root.log += "mid:" + event.kind + ";" }
        }
    ]
    function fire(kind) { reg.notify({ kind: kind }) }
}
)QML";

// (b) the bridge: a Registry handed in from C++.
constexpr char kBridgeQml[] = R"QML(
import QtQml
import Sigreg

QtObject {
    id: root
    property Registry readings
    property QtObject probe
    property list<QtObject> handlers: [
        RegistryHandler {
            registry: root.readings
            handler: (event) => root.probe.record(event.sensor + "=" + event.value + ";")
        }
    ]
}
)QML";

struct Reading
{
    QString sensor;
    int value = 0;
};

QVariant toQml(const Reading &reading)
{
    return QVariantMap{{QStringLiteral("sensor"), reading.sensor}, {QStringLiteral("value"), reading.value}};
}

QUrl documentUrl(const char *name)
{
    return QUrl::fromLocalFile(QDir::current().absoluteFilePath(QString::fromLatin1(name)));
}

void testPriorities(QQmlEngine &engine)
{
    QQmlComponent component(&engine);
    component.setData(QByteArray(kPriorityQml), documentUrl("priorities.qml"));
    std::unique_ptr<QObject> root(component.create());
    check(root != nullptr, "(a) the inline document with `import Sigreg` loads", errorsOf(component));
    if (!root)
        return;

    auto *registry = qobject_cast<sigreg::QmlRegistry *>(root->property("reg").value<QObject *>());
    check(registry != nullptr, "(a) `Registry {}` is a sigreg::QmlRegistry");
    if (!registry)
        return;
    check(registry->count() == 3, "(a) the three RegistryHandlers registered",
          QStringLiteral("count %1").arg(registry->count()));

    // A C++ handler between them: it appends to the same log.
    const sigreg::Guard cppHandler = registry->addGuarded(7, [&root](const QVariant &event) {
        const QString kind = event.toMap().value(QStringLiteral("kind")).toString();
        root->setProperty("log", root->property("log").toString() + QStringLiteral("cpp:") + kind
                                     + QLatin1Char(';'));
    });

    QMetaObject::invokeMethod(root.get(), "fire", Q_ARG(QVariant, QVariant(QStringLiteral("qml"))));
    const QString expectedQml = QStringLiteral("high:qml;cpp:qml;mid:qml;low:qml;");
    check(root->property("log").toString() == expectedQml, "(a) notify() from QML calls the handlers in priority order",
          QStringLiteral("got '%1', expected '%2'").arg(root->property("log").toString(), expectedQml));

    root->setProperty("log", QString());
    registry->notify(QVariant(QVariantMap{{QStringLiteral("kind"), QStringLiteral("cxx")}}));
    const QString expectedCxx = QStringLiteral("high:cxx;cpp:cxx;mid:cxx;low:cxx;");
    check(root->property("log").toString() == expectedCxx, "(a) notify() from C++ calls the handlers in priority order",
          QStringLiteral("got '%1', expected '%2'").arg(root->property("log").toString(), expectedCxx));
    check(registry->failureCount() == 0, "(a) no handler failed",
          QStringLiteral("failureCount %1").arg(registry->failureCount()));
}

void testBridge(QQmlEngine &engine)
{
    sigreg::QtRegistry<Reading> readings;
    Probe probe;
    QObject owner;
    sigreg::QmlRegistry *qmlReadings = sigreg::exposeToQml(readings, &toQml, &owner);
    check(qmlReadings != nullptr, "(b) exposeToQml() returns a Registry");
    if (!qmlReadings)
        return;

    QQmlComponent component(&engine);
    component.setData(QByteArray(kBridgeQml), documentUrl("bridge.qml"));
    std::unique_ptr<QObject> root(component.createWithInitialProperties(
        {{QStringLiteral("readings"), QVariant::fromValue<QObject *>(qmlReadings)},
         {QStringLiteral("probe"), QVariant::fromValue<QObject *>(&probe)}}));
    check(root != nullptr, "(b) the bridge document loads", errorsOf(component));
    if (!root)
        return;
    check(qmlReadings->count() == 1, "(b) the RegistryHandler registered with the exposed registry",
          QStringLiteral("count %1").arg(qmlReadings->count()));

    std::thread worker([&readings] {
        readings.notify(Reading{QStringLiteral("t1"), 21});
        readings.notify(Reading{QStringLiteral("t1"), 22});
    });
    worker.join();
    // Marshalled: nothing ran on the worker; the events wait for this thread's loop.
    check(probe.calls.load() == 0, "(b) the QML handler did not run on the notifying thread");

    const QString expected = QStringLiteral("t1=21;t1=22;");
    const bool arrived = waitFor([&probe] { return probe.calls.load() >= 2; });
    check(arrived, "(b) events notified from a std::thread reach the QML handler",
          QStringLiteral("%1 calls").arg(probe.calls.load()));
    check(probe.log == expected, "(b) the events arrive in order, converted",
          QStringLiteral("got '%1', expected '%2'").arg(probe.log, expected));
    check(!probe.wrongThread, "(b) the QML handler ran in the engine's thread");
    check(qmlReadings->failureCount() == 0, "(b) no handler failed");
}

} // namespace

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);

    // The module must come from the environment (the installed prefix), not
    // from the code: QML_IMPORT_PATH is the only way in.
    consumer::checkInstalledModule();

    {
        QQmlEngine engine;
        testPriorities(engine);
        testBridge(engine);
    }

    return consumer::summary();
}

#include "qml_consumer.moc"
