// SPDX-License-Identifier: MIT
// How the application starts the `metrics` plugin: one C entry point, looked
// up by name with QLibrary::resolve(). Everything else the plugin and the
// application say to each other goes through the bus.
#pragma once

class QObject;
namespace sigreg {
class Bus;
}

/// Starts the plugin on `bus`; the caller owns (and must delete) the result,
/// before the bus. Its objects live in the calling thread. Defined (and
/// exported) by the plugin only: the application never links it, it resolves
/// it by name.
extern "C" QObject *sigreg_typed_bus_metrics_create(sigreg::Bus &bus);

namespace metrics {

/// The entry point's name (extern "C": exported unmangled) and type.
inline constexpr char kCreateSymbol[] = "sigreg_typed_bus_metrics_create";
using CreateFunction = decltype(&sigreg_typed_bus_metrics_create);

} // namespace metrics
