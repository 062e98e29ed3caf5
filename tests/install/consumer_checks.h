// SPDX-License-Identifier: MIT
// Checks shared by the QML install consumers: a pass/fail tally printed at
// the end, and the check that the module is reachable only through the
// installed prefix (QML_IMPORT_PATH, set by the test).
#pragma once

#include <QtCore/QDir>
#include <QtCore/QFileInfo>
#include <QtCore/QString>

#include <cstdio>

namespace consumer {

inline int g_passed = 0;
inline int g_failed = 0;

inline void check(bool ok, const char *what, const QString &detail = {})
{
    if (ok) {
        ++g_passed;
        return;
    }
    ++g_failed;
    if (detail.isEmpty())
        std::printf("FAIL: %s\n", what);
    else
        std::printf("FAIL: %s (%s)\n", what, qPrintable(detail));
}

/// Checks QML_IMPORT_PATH names a folder with Sigreg/qmldir; returns the
/// module folder (canonical), or empty.
inline QString checkInstalledModule()
{
    const QString importPath = QString::fromLocal8Bit(qgetenv("QML_IMPORT_PATH"));
    check(!importPath.isEmpty(), "QML_IMPORT_PATH is set (by the test)");
    const QString moduleDir = QFileInfo(importPath + QStringLiteral("/Sigreg")).canonicalFilePath();
    check(!moduleDir.isEmpty() && QFileInfo::exists(moduleDir + QStringLiteral("/qmldir")),
          "<QML_IMPORT_PATH>/Sigreg/qmldir exists", importPath);
    return moduleDir;
}

/// Prints the tally; the process exit code.
inline int summary()
{
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

} // namespace consumer
