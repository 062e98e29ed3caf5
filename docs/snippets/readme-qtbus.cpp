// README.md, the bus for Qt: the event type and bus from the block before,
// `this` a QObject of the receiving thread.
#include <sigreg/bus.h>
#include <sigreg/qt/qtbus.h>

#include <QtCore/QFuture>
#include <QtCore/QObject>

struct CertReloaded {
    int serverId;
};

class Listener : public QObject {
public:
    void listen(sigreg::Bus &bus);
};

void Listener::listen(sigreg::Bus &bus)
{
// @snippet
}
