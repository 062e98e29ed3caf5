// SPDX-License-Identifier: MIT
// Compiled with Qt's keywords on (`emit`, `signals`, `slots` are macros), and
// Qt included first: Sigreg's headers must still compile, and publish() is the
// spelling of emit() that such code can call.
#undef QT_NO_KEYWORDS
#include <QtCore/QObject>

#include <sigreg/bus.h>
#include <sigreg/qt/qtbus.h>
#include <sigreg/qt/qtregistry.h>
#include <sigreg/registry.h>

#ifndef emit
#error "this file must see Qt's emit macro"
#endif

int qtKeywordsPublish(int value)
{
    sigreg::Bus bus;
    int seen = 0;
    bus.on([&](const int &v) { seen = v; });
    bus.publish(value);
    return seen;
}
