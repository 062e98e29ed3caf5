// SPDX-License-Identifier: MIT
// tst_bus_plugin: a module loaded by tst_busplugin with QLibrary. Built with
// hidden visibility; only the extern "C" entry points below are exported.
// It uses the host's event types (plugin_events.h) through the host's bus,
// and an anonymous-namespace type spelled like one of the host's.
#include "plugin_events.h"

#include <sigreg/bus.h>

#include <algorithm>
#include <chrono>
#include <vector>

#define PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))

using sigreg_bus_plugin::HostEvent;

namespace {

// Spelled exactly like the host's own anonymous AnonEvent: a different type.
struct AnonEvent {
    int value = 0;
};

std::vector<int> g_handled; // what plugin_on's handlers saw
int g_anonHandled = 0;

using PluginReceiver = sigreg::Receiver<HostEvent>;

} // namespace

PLUGIN_EXPORT void plugin_emit(sigreg::Bus *bus, int first, int count)
{
    for (int i = 0; i < count; ++i)
        bus->emit(HostEvent{first + i});
}

PLUGIN_EXPORT void plugin_emit_nobody(sigreg::Bus *bus, int value)
{
    bus->emit(sigreg_bus_plugin::NobodyListens{value});
}

PLUGIN_EXPORT void *plugin_subscribe(sigreg::Bus *bus, std::size_t capacity)
{
    return new PluginReceiver(bus->subscribe<HostEvent>(capacity));
}

PLUGIN_EXPORT int plugin_drain(void *receiver, int *values, int max, std::uint64_t *missed)
{
    auto *rx = static_cast<PluginReceiver *>(receiver);
    int n = 0;
    for (;;) {
        sigreg::ReceiveResult<HostEvent> r = rx->tryReceive();
        if (r.status() == sigreg::ReceiveStatus::Lagged) {
            *missed += r.lagged();
            continue;
        }
        if (!r || n == max)
            return n;
        values[n++] = r->value;
    }
}

PLUGIN_EXPORT int plugin_receive_for(void *receiver, int timeoutMs, int *value)
{
    auto *rx = static_cast<PluginReceiver *>(receiver);
    sigreg::ReceiveResult<HostEvent> r = rx->receiveFor(std::chrono::milliseconds(timeoutMs));
    if (r)
        *value = r->value;
    return int(r.status());
}

PLUGIN_EXPORT void plugin_release(void *receiver)
{
    delete static_cast<PluginReceiver *>(receiver);
}

PLUGIN_EXPORT std::uint64_t plugin_on(sigreg::Bus *bus)
{
    return bus->on([](const HostEvent &e) { g_handled.push_back(e.value); }).value();
}

PLUGIN_EXPORT bool plugin_remove(sigreg::Bus *bus, std::uint64_t id)
{
    return bus->remove<HostEvent>(sigreg::HandlerId(id));
}

PLUGIN_EXPORT int plugin_handled(int *values, int max)
{
    const int n = std::min(max, int(g_handled.size()));
    std::copy_n(g_handled.begin(), n, values);
    return n;
}

PLUGIN_EXPORT bool plugin_has_channel(const sigreg::Bus *bus)
{
    return bus->hasChannel<HostEvent>();
}

PLUGIN_EXPORT std::size_t plugin_type_count(const sigreg::Bus *bus)
{
    return bus->typeCount();
}

PLUGIN_EXPORT void plugin_anon_on(sigreg::Bus *bus)
{
    bus->on([](const AnonEvent &) { ++g_anonHandled; });
}

PLUGIN_EXPORT void plugin_anon_emit(sigreg::Bus *bus, int value)
{
    bus->emit(AnonEvent{value});
}

PLUGIN_EXPORT int plugin_anon_handled()
{
    return g_anonHandled;
}

PLUGIN_EXPORT const std::type_info *plugin_host_event_typeinfo()
{
    return &typeid(HostEvent);
}

PLUGIN_EXPORT const std::type_info *plugin_anon_typeinfo()
{
    return &typeid(AnonEvent);
}
