// SPDX-License-Identifier: MIT
// Runs the Qt Quick Test suites (tst_*.qml) against the in-tree module.
#include <QtQml/QQmlEngine>
#include <QtQuickTest/quicktest.h>

class Setup : public QObject
{
    Q_OBJECT
public Q_SLOTS:
    void qmlEngineAvailable(QQmlEngine *engine)
    {
        // The module as built: <build>/qml/Sigreg.
        engine->addImportPath(QStringLiteral(SIGREG_QML_IMPORT_PATH));
    }
};

QUICK_TEST_MAIN_WITH_SETUP(sigreg_qml, Setup)

#include "tst_qml.moc"
