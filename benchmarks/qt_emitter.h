// SPDX-License-Identifier: MIT
// sigreg-benchmarks — the Qt peers: a QObject with one signal carrying the
// same payload as the other peers, and a receiver with a slot doing the
// handlers' work. Processed by AUTOMOC; the target defines QT_NO_KEYWORDS,
// hence Q_SIGNALS / Q_EMIT / Q_SLOTS.
#pragma once

#include "bench_common.h"

#include <QtCore/QObject>

namespace sigreg_bench {

class QtEmitter final : public QObject {
    Q_OBJECT
public:
    using QObject::QObject;

Q_SIGNALS:
    void fired(const int &value);
};

/// A receiver as Qt applications write them: a QObject whose member slot
/// does kHandler's work (BM_Notify_QtDirectSlot).
class QtReceiver final : public QObject {
    Q_OBJECT
public:
    using QObject::QObject;

public Q_SLOTS:
    void onFired(const int &value) { handlerWork(value); }
};

} // namespace sigreg_bench
