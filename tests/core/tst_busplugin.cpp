// SPDX-License-Identifier: MIT
// Qt Test suite: sigreg::Bus type identity across shared libraries. A real
// plugin (tests/core/bus_plugin, a MODULE built with hidden visibility and
// loaded with QLibrary) emits, handles and receives event types defined by
// this host (plugin_events.h) on the host's bus. This executable is built
// with hidden visibility too, so host and plugin each have their own
// std::type_info for those types; the bus must still give each type one
// channel. An anonymous-namespace type spelled the same in both modules must
// not cross.
//
// Registered only when Sigreg::Core is a shared library (one copy of Sigreg
// per process).
#include "plugin_events.h"

#include <sigreg/bus.h>

#include <QtCore/QLibrary>
#include <QtTest/QTest>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <typeinfo>
#include <vector>

#ifndef SIGREG_BUS_PLUGIN_PATH
#error "SIGREG_BUS_PLUGIN_PATH must name the tst_bus_plugin module"
#endif

using namespace std::chrono_literals;
using namespace sigreg_bus_plugin;

namespace {

// Spelled exactly like the plugin's own anonymous AnonEvent: a different type.
struct AnonEvent {
    int value = 0;
};

QList<int> range(int from, int to) // [from, to)
{
    QList<int> out;
    for (int i = from; i < to; ++i)
        out.push_back(i);
    return out;
}

template <class E>
QList<int> drainHost(sigreg::Receiver<E> &rx, std::uint64_t *missed = nullptr)
{
    QList<int> out;
    for (;;) {
        sigreg::ReceiveResult<E> r = rx.tryReceive();
        if (r.status() == sigreg::ReceiveStatus::Lagged) {
            if (missed)
                *missed += r.lagged();
            continue;
        }
        if (!r)
            return out;
        out.push_back(r->value);
    }
}

} // namespace

class tst_BusPlugin : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase();
    void typeInfosDifferAcrossModules();
    void pluginEmitsReachHostHandlersAndReceivers();
    void hostEmitsReachPluginHandler();
    void hostEmitsReachPluginReceiver();
    void channelCreatedByPluginIsTheHosts();
    void blockingReceiveAcrossModules();
    void anonymousTypesDoNotCross();

private:
    QList<int> pluginDrain(void *rx, std::uint64_t *missed = nullptr) const;
    QList<int> pluginHandled() const;

    QLibrary m_lib{QStringLiteral(SIGREG_BUS_PLUGIN_PATH)};
    EmitFn m_emit = nullptr;
    EmitNobodyFn m_emitNobody = nullptr;
    SubscribeFn m_subscribe = nullptr;
    DrainFn m_drain = nullptr;
    ReceiveForFn m_receiveFor = nullptr;
    ReleaseFn m_release = nullptr;
    OnFn m_on = nullptr;
    RemoveFn m_remove = nullptr;
    HandledFn m_handled = nullptr;
    HasChannelFn m_hasChannel = nullptr;
    TypeCountFn m_typeCount = nullptr;
    AnonOnFn m_anonOn = nullptr;
    AnonEmitFn m_anonEmit = nullptr;
    AnonHandledFn m_anonHandled = nullptr;
    TypeInfoFn m_hostEventTypeInfo = nullptr;
    TypeInfoFn m_anonTypeInfo = nullptr;
};

template <class Fn>
static void resolveInto(QLibrary &lib, Fn &fn, const char *name)
{
    fn = reinterpret_cast<Fn>(lib.resolve(name));
    if (!fn)
        qFatal("tst_bus_plugin does not export %s: %s", name, qPrintable(lib.errorString()));
}

void tst_BusPlugin::initTestCase()
{
    // Never unloaded: the bus runs the plugin's code (handlers, channels)
    // until it is destroyed, and the module must stay loaded meanwhile.
    QVERIFY2(m_lib.load(), qPrintable(m_lib.errorString()));
    resolveInto(m_lib, m_emit, "plugin_emit");
    resolveInto(m_lib, m_emitNobody, "plugin_emit_nobody");
    resolveInto(m_lib, m_subscribe, "plugin_subscribe");
    resolveInto(m_lib, m_drain, "plugin_drain");
    resolveInto(m_lib, m_receiveFor, "plugin_receive_for");
    resolveInto(m_lib, m_release, "plugin_release");
    resolveInto(m_lib, m_on, "plugin_on");
    resolveInto(m_lib, m_remove, "plugin_remove");
    resolveInto(m_lib, m_handled, "plugin_handled");
    resolveInto(m_lib, m_hasChannel, "plugin_has_channel");
    resolveInto(m_lib, m_typeCount, "plugin_type_count");
    resolveInto(m_lib, m_anonOn, "plugin_anon_on");
    resolveInto(m_lib, m_anonEmit, "plugin_anon_emit");
    resolveInto(m_lib, m_anonHandled, "plugin_anon_handled");
    resolveInto(m_lib, m_hostEventTypeInfo, "plugin_host_event_typeinfo");
    resolveInto(m_lib, m_anonTypeInfo, "plugin_anon_typeinfo");
    // Hidden visibility hides everything else, the plugin's type_info of
    // the host's event type included.
    QVERIFY(!m_lib.resolve("_ZTIN17sigreg_bus_plugin9HostEventE"));
}

QList<int> tst_BusPlugin::pluginDrain(void *rx, std::uint64_t *missed) const
{
    std::vector<int> values(4096);
    std::uint64_t m = 0;
    const int n = m_drain(rx, values.data(), int(values.size()), &m);
    if (missed)
        *missed = m;
    return QList<int>(values.begin(), values.begin() + n);
}

QList<int> tst_BusPlugin::pluginHandled() const
{
    std::vector<int> values(4096);
    const int n = m_handled(values.data(), int(values.size()));
    return QList<int>(values.begin(), values.begin() + n);
}

void tst_BusPlugin::typeInfosDifferAcrossModules()
{
    // The case the interning by name exists for: one type, two type_infos.
    // (If they were merged the other tests would prove less, not fail.)
    const std::type_info *theirs = m_hostEventTypeInfo();
    QCOMPARE(QByteArray(theirs->name()), QByteArray(typeid(HostEvent).name()));
    QVERIFY2(theirs != &typeid(HostEvent), "host and plugin share one type_info: visibility is not hidden");
    // The anonymous types: same spelling, different types.
    QCOMPARE(QByteArray(m_anonTypeInfo()->name()), QByteArray(typeid(AnonEvent).name()));
    QVERIFY(*m_anonTypeInfo() != typeid(AnonEvent));
}

void tst_BusPlugin::pluginEmitsReachHostHandlersAndReceivers()
{
    sigreg::Bus bus;
    QList<int> handled;
    bus.on([&](const HostEvent &e) { handled.push_back(e.value); });
    sigreg::Receiver<HostEvent> rx = bus.subscribe<HostEvent>(64);
    QCOMPARE(bus.typeCount(), std::size_t(1));
    QVERIFY(m_hasChannel(&bus));

    m_emit(&bus, 0, 10);
    QCOMPARE(handled, range(0, 10));
    QCOMPARE(drainHost(rx), range(0, 10));
    QCOMPARE(bus.typeCount(), std::size_t(1));
    QCOMPARE(m_typeCount(&bus), std::size_t(1));

    // Lag counts are exact whoever emits.
    m_emit(&bus, 10, 100);
    std::uint64_t missed = 0;
    QCOMPARE(drainHost(rx, &missed), range(46, 110));
    QCOMPARE(missed, std::uint64_t(36));

    // A host type nobody listens to: the plugin's emit creates no channel.
    m_emitNobody(&bus, 1);
    QVERIFY(!bus.hasChannel<NobodyListens>());
    QCOMPARE(bus.typeCount(), std::size_t(1));
}

void tst_BusPlugin::hostEmitsReachPluginHandler()
{
    sigreg::Bus bus;
    const QList<int> before = pluginHandled();
    const std::uint64_t id = m_on(&bus);
    QVERIFY(id != 0);
    QVERIFY(bus.hasChannel<HostEvent>());
    QCOMPARE(bus.handlerCount<HostEvent>(), std::size_t(1));
    QCOMPARE(bus.typeCount(), std::size_t(1));

    // The host's handler and the plugin's share the channel.
    QList<int> hostHandled;
    bus.on([&](const HostEvent &e) { hostHandled.push_back(e.value); });
    QCOMPARE(bus.handlerCount<HostEvent>(), std::size_t(2));
    QCOMPARE(bus.typeCount(), std::size_t(1));

    for (int i = 0; i < 5; ++i)
        bus.emit(HostEvent{100 + i});
    QCOMPARE(pluginHandled().mid(before.size()), range(100, 105));
    QCOMPARE(hostHandled, range(100, 105));

    // Removal by id works from either side.
    QVERIFY(bus.remove<HostEvent>(sigreg::HandlerId(id)));
    QVERIFY(!m_remove(&bus, id));
    bus.emit(HostEvent{200});
    QCOMPARE(pluginHandled().mid(before.size()), range(100, 105));
    QCOMPARE(hostHandled.size(), 6);
    const std::uint64_t id2 = m_on(&bus);
    QVERIFY(m_remove(&bus, id2));
    QCOMPARE(bus.handlerCount<HostEvent>(), std::size_t(1));
}

void tst_BusPlugin::hostEmitsReachPluginReceiver()
{
    sigreg::Bus bus;
    sigreg::Receiver<HostEvent> hostRx = bus.subscribe<HostEvent>(8);
    void *rx = m_subscribe(&bus, 4);
    QCOMPARE(bus.receiverCount<HostEvent>(), std::size_t(2));
    QCOMPARE(bus.typeCount(), std::size_t(1));

    for (int i = 0; i < 3; ++i)
        bus.emit(HostEvent{i});
    m_emit(&bus, 3, 2);
    QCOMPARE(pluginDrain(rx), range(0, 5).mid(1)); // capacity 4: event 0 lost
    std::uint64_t missed = 0;
    bus.emit(HostEvent{5});
    QCOMPARE(pluginDrain(rx, &missed), QList<int>{5});
    QCOMPARE(missed, std::uint64_t(0));
    QCOMPARE(drainHost(hostRx), range(0, 6));

    // The plugin's receiver outlives nothing it should not: release it.
    m_release(rx);
    QCOMPARE(bus.receiverCount<HostEvent>(), std::size_t(1));
}

void tst_BusPlugin::channelCreatedByPluginIsTheHosts()
{
    // The plugin subscribes first: the channel is made by the plugin's code.
    auto bus = std::make_unique<sigreg::Bus>();
    void *rx = m_subscribe(bus.get(), 16);
    QCOMPARE(bus->typeCount(), std::size_t(1));
    QVERIFY(bus->hasChannel<HostEvent>());
    QCOMPARE(bus->receiverCount<HostEvent>(), std::size_t(1));
    QList<int> handled;
    bus->on([&](const HostEvent &e) { handled.push_back(e.value); });
    QCOMPARE(bus->typeCount(), std::size_t(1));
    bus->emit(HostEvent{1});
    m_emit(bus.get(), 2, 1);
    QCOMPARE(handled, (QList<int>{1, 2}));
    QCOMPARE(pluginDrain(rx), (QList<int>{1, 2}));
    bus->emit(HostEvent{3});
    // The host destroys the bus (and the plugin-made channel); the plugin's
    // receiver drains, then is closed.
    bus.reset();
    QCOMPARE(pluginDrain(rx), QList<int>{3});
    int value = -1;
    QCOMPARE(m_receiveFor(rx, 30000, &value), int(sigreg::ReceiveStatus::Closed));
    m_release(rx);
}

void tst_BusPlugin::blockingReceiveAcrossModules()
{
    sigreg::Bus bus;
    void *rx = m_subscribe(&bus, 1024);
    int value = -1;
    QCOMPARE(m_receiveFor(rx, 20, &value), int(sigreg::ReceiveStatus::TimedOut));

    // The plugin's receiver waits on this thread; a host thread emits.
    constexpr int kEvents = 200;
    std::atomic<bool> waiting{false};
    std::thread producer([&] {
        while (!waiting.load())
            std::this_thread::yield();
        std::this_thread::sleep_for(20ms); // most likely blocked by now
        for (int i = 0; i < kEvents; ++i)
            bus.emit(HostEvent{i});
    });
    waiting.store(true);
    QList<int> got;
    for (int i = 0; i < kEvents; ++i) {
        const int status = m_receiveFor(rx, 30000, &value);
        if (status != kReceived)
            break;
        got.push_back(value);
    }
    producer.join();
    QCOMPARE(got, range(0, kEvents));
    m_release(rx);
}

void tst_BusPlugin::anonymousTypesDoNotCross()
{
    sigreg::Bus bus;
    QList<int> hostHandled;
    bus.on([&](const AnonEvent &e) { hostHandled.push_back(e.value); });
    sigreg::Receiver<AnonEvent> hostRx = bus.subscribe<AnonEvent>();
    QCOMPARE(bus.typeCount(), std::size_t(1));

    const int before = m_anonHandled();
    m_anonOn(&bus);
    QCOMPARE(bus.typeCount(), std::size_t(2)); // its own channel
    QCOMPARE(bus.handlerCount<AnonEvent>(), std::size_t(1));

    m_anonEmit(&bus, 7); // the plugin's AnonEvent
    QCOMPARE(hostHandled, QList<int>());
    QCOMPARE(drainHost(hostRx), QList<int>());
    QCOMPARE(m_anonHandled(), before + 1);

    bus.emit(AnonEvent{8}); // the host's
    QCOMPARE(hostHandled, QList<int>{8});
    QCOMPARE(drainHost(hostRx), QList<int>{8});
    QCOMPARE(m_anonHandled(), before + 1);
}

QTEST_GUILESS_MAIN(tst_BusPlugin)
#include "tst_busplugin.moc"
