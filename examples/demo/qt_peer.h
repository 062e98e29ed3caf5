// SPDX-License-Identifier: MIT
// A QObject with one signal: the Qt side of the demo's live timing.
#pragma once

#include <QObject>

class Ticker : public QObject {
    Q_OBJECT
public:
    using QObject::QObject;
Q_SIGNALS:
    void ticked(const int &value);
};
