// SPDX-License-Identifier: MIT
// sigreg-benchmarks — the Qt peer: a QObject with one signal carrying the
// same payload as the other peers. Processed by AUTOMOC; the target defines
// QT_NO_KEYWORDS, hence Q_SIGNALS / Q_EMIT.
#pragma once

#include <QtCore/QObject>

namespace sigreg_bench {

class QtEmitter final : public QObject {
    Q_OBJECT
public:
    using QObject::QObject;

Q_SIGNALS:
    void fired(const int &value);
};

} // namespace sigreg_bench
