// SPDX-License-Identifier: MIT
// A QML-only consumer of an *installed* Sigreg: links Qt6::Qml alone, never
// Sigreg::Qml, so `import Sigreg` must load the installed plugin
// (<SIGREG_QML_IMPORT_PATH>/Sigreg/libsigreg_qmlplugin.so), which must find
// the installed backing library through its RUNPATH, as in an application
// that only ships QML. QML_IMPORT_PATH (the test's environment) is the only
// way to the module.
#include <QtCore/QByteArray>
#include <QtCore/QCoreApplication>
#include <QtCore/QDir>
#include <QtCore/QFile>
#include <QtCore/QFileInfo>
#include <QtCore/QString>
#include <QtCore/QUrl>
#include <QtQml/QQmlComponent>
#include <QtQml/QQmlEngine>

#include "consumer_checks.h"

#include <memory>

namespace {

using consumer::check;

constexpr char kQml[] = R"QML(
import QtQml
import Sigreg

QtObject {
    id: root
    property string log: ""
    property Registry reg: Registry {}
    property list<QtObject> handlers: [
        RegistryHandler {
            registry: root.reg
            priority: -1
            handler: (event) => { root.log += "last:" + event + ";" }
        },
        RegistryHandler {
            registry: root.reg
            priority: 3
            onNotified: (event) => { root.log += "first:" + event + ";" }
        }
    ]
    Component.onCompleted: reg.notify("x")
}
)QML";

/// The file a loaded shared object named `name` was mapped from, or empty.
QString loadedFrom(const QString &name)
{
    QFile maps(QStringLiteral("/proc/self/maps"));
    if (!maps.open(QIODevice::ReadOnly | QIODevice::Text))
        return {};
    const QList<QByteArray> lines = maps.readAll().split('\n');
    for (const QByteArray &line : lines) {
        const qsizetype slash = line.indexOf('/');
        if (slash < 0)
            continue;
        const QString path = QString::fromLocal8Bit(line.mid(slash));
        if (QFileInfo(path).fileName().startsWith(name))
            return path;
    }
    return {};
}

} // namespace

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);

    const QString moduleDir = consumer::checkInstalledModule();

    {
        QQmlEngine engine;
        QQmlComponent component(&engine);
        component.setData(QByteArray(kQml), QUrl::fromLocalFile(QDir::current().absoluteFilePath(
                                                 QStringLiteral("plugin_consumer.qml"))));
        std::unique_ptr<QObject> root(component.create());
        QString errors;
        for (const QQmlError &error : component.errors())
            errors += error.toString() + QLatin1Char(' ');
        check(root != nullptr, "`import Sigreg` loads through the installed plugin", errors);
        if (root) {
            const QString log = root->property("log").toString();
            check(log == QStringLiteral("first:x;last:x;"), "the handlers run in priority order",
                  QStringLiteral("got '%1'").arg(log));
        }

#ifdef __linux__
        // Where the module came from: the plugin from <import path>/Sigreg,
        // and the backing library from the prefix, next to it (<prefix>/lib).
        const QString plugin = QFileInfo(loadedFrom(QStringLiteral("libsigreg_qmlplugin"))).canonicalFilePath();
        check(!plugin.isEmpty() && QFileInfo(plugin).absolutePath() == moduleDir,
              "the plugin was loaded from <QML_IMPORT_PATH>/Sigreg",
              QStringLiteral("loaded '%1', expected it in '%2'").arg(plugin, moduleDir));
        const QString backing = QFileInfo(loadedFrom(QStringLiteral("libsigreg_qml.so"))).canonicalFilePath();
        check(!backing.isEmpty(), "the backing library libsigreg_qml was loaded");
#ifdef SIGREG_INSTALLED_LIBDIR
        const QString libDir = QFileInfo(QStringLiteral(SIGREG_INSTALLED_LIBDIR)).canonicalFilePath();
        check(QFileInfo(backing).absolutePath() == libDir,
              "the backing library was loaded from the installed prefix",
              QStringLiteral("loaded '%1', expected it in '%2'").arg(backing, libDir));
#endif
#endif
    }

    return consumer::summary();
}
