// SPDX-License-Identifier: MIT
// The `metrics` plugin: a shared module the application loads at run time.
// It counts certificate reloads and publishes what it counted.
//
// It includes the event header of `certs`, never its code, and does not link
// it: the two modules share event *types*, not a library. The plugin is built
// with hidden visibility, so its copies of those types' typeinfo are its own;
// the bus still puts its receivers on the same channel as the application's
// emits, because Sigreg keys a type by its name in the (one, shared) Sigreg
// core library.
#include "metrics/metrics_plugin.h"

#include "certs/cert_events.h"
#include "metrics/metrics_events.h"

#include <sigreg/bus.h>
#include <sigreg/qt/qtbus.h>

#include <QtCore/QObject>
#include <QtCore/QThread>

#include <cstdio>
#include <set>

namespace metrics {
namespace {

QByteArray threadName()
{
    return QThread::currentThread()->objectName().toUtf8();
}

// The plugin's state. Its receivers deliver in the thread this object lives
// in, the one that created it: here the application's main thread. So every
// callback below runs there, one at a time, and the counters need no lock,
// although the reloads are emitted in the "certs" thread. (To count in a
// thread of its own, the plugin would move this object to a QThread.)
class Metrics final : public QObject {
public:
    explicit Metrics(sigreg::Bus &bus)
        : m_bus(bus), m_reloads(bus, 16), m_shutdown(bus)
    {
        // At most 16 reloads wait for this thread; more are dropped oldest
        // first, and lagged(n) says how many.
        m_reloads.onEvent(this, [this](const certs::CertReloaded &e) {
            ++m_summary.reloads;
            m_servers.insert(e.serverId);
            m_summary.servers = static_cast<int>(m_servers.size());
            m_summary.lastGeneration = e.generation;
            std::printf("[%-5s] metrics: CertReloaded server %d, %s, generation %d\n", threadName().constData(),
                        e.serverId, e.path.c_str(), e.generation);
            m_bus.emit(m_summary); // our own event type, for whoever cares
        });
        QObject::connect(&m_reloads, &sigreg::QtBusReceiverBase::lagged, this, [](quint64 missed) {
            std::printf("[%-5s] metrics: missed %llu reloads\n", threadName().constData(),
                        static_cast<unsigned long long>(missed));
        });

        // attachToApplication() delivers ShutdownInitiated to main-thread
        // receivers before QCoreApplication::exec() returns: this runs then.
        m_shutdown.onEvent(this, [this](const sigreg::ShutdownInitiated &) {
            std::printf("[%-5s] metrics: ShutdownInitiated: publishing the final summary\n",
                        threadName().constData());
            Summary last = m_summary;
            last.final = true;
            m_bus.emit(last);
        });
    }

private:
    sigreg::Bus &m_bus;
    Summary m_summary;
    std::set<int> m_servers;
    // Declared last, destroyed first: no callback runs once they are gone.
    sigreg::QtBusReceiver<certs::CertReloaded> m_reloads;
    sigreg::QtBusReceiver<sigreg::ShutdownInitiated> m_shutdown;
};

} // namespace
} // namespace metrics

// The one symbol the plugin exports (everything else is hidden).
// (Declared in metrics_plugin.h, so a mismatch with what the application
// expects does not compile.)
extern "C" Q_DECL_EXPORT QObject *sigreg_typed_bus_metrics_create(sigreg::Bus &bus)
{
    return new metrics::Metrics(bus);
}
