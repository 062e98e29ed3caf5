// SPDX-License-Identifier: MIT
// The events of the `certs` module: its whole public vocabulary on the bus.
//
// Whoever wants to hear about certificate reloads includes this header and
// nothing else of `certs` (the `metrics` plugin does exactly that). An event
// type is a plain value: no base class, no registration, no Qt. The bus tells
// types apart by their full name, so keep them in the module's namespace.
#pragma once

#include <string>

namespace certs {

/// A server's certificate was (re)loaded from `path`.
struct CertReloaded {
    int serverId = 0;
    std::string path;
    int generation = 0; ///< 1, 2, 3, ... over all servers
};

} // namespace certs
