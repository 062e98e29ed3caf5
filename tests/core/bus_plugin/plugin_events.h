// SPDX-License-Identifier: MIT
// Shared between tst_busplugin (the host) and tst_bus_plugin (a MODULE loaded
// with QLibrary): the event types the host defines and both sides use, and
// the plugin's C entry points (resolved by name; see bus_plugin.cpp).
//
// Both modules are built with hidden visibility, so each has its own
// std::type_info for these types: the bus must still give them one channel.
#pragma once

#include <cstddef>
#include <cstdint>
#include <typeinfo>

namespace sigreg {
class Bus;
}

namespace sigreg_bus_plugin {

/// Defined by the host; emitted, handled and received on both sides.
struct HostEvent {
    int value = 0;
};

/// Defined by the host; only ever emitted by the plugin, listened to by nobody.
struct NobodyListens {
    int value = 0;
};

// Status codes of PluginReceiveForFn (sigreg::ReceiveStatus as an int).
inline constexpr int kReceived = 0;

// The plugin's entry points (extern "C", default visibility), by name.
using EmitFn = void (*)(sigreg::Bus *bus, int first, int count);       // "plugin_emit": HostEvent{first..first+count-1}
using EmitNobodyFn = void (*)(sigreg::Bus *bus, int value);           // "plugin_emit_nobody"
using SubscribeFn = void *(*)(sigreg::Bus *bus, std::size_t capacity); // "plugin_subscribe": a Receiver<HostEvent>
using DrainFn = int (*)(void *receiver, int *values, int max, std::uint64_t *missed); // "plugin_drain"
using ReceiveForFn = int (*)(void *receiver, int timeoutMs, int *value); // "plugin_receive_for": a ReceiveStatus
using ReleaseFn = void (*)(void *receiver);                            // "plugin_release"
using OnFn = std::uint64_t (*)(sigreg::Bus *bus);                      // "plugin_on": handler id
using RemoveFn = bool (*)(sigreg::Bus *bus, std::uint64_t id);         // "plugin_remove"
using HandledFn = int (*)(int *values, int max);                       // "plugin_handled": the handler's log
using HasChannelFn = bool (*)(const sigreg::Bus *bus);                 // "plugin_has_channel" (HostEvent)
using TypeCountFn = std::size_t (*)(const sigreg::Bus *bus);           // "plugin_type_count"
using AnonOnFn = void (*)(sigreg::Bus *bus);                           // "plugin_anon_on"
using AnonEmitFn = void (*)(sigreg::Bus *bus, int value);              // "plugin_anon_emit"
using AnonHandledFn = int (*)();                                       // "plugin_anon_handled"
using TypeInfoFn = const std::type_info *(*)();                        // "plugin_host_event_typeinfo", "plugin_anon_typeinfo"

} // namespace sigreg_bus_plugin
