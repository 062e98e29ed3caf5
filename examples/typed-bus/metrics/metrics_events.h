// SPDX-License-Identifier: MIT
// The events of the `metrics` plugin. The application includes this header to
// consume them; it never sees the plugin's code (it loads it at run time).
#pragma once

namespace metrics {

/// What the plugin has counted so far; emitted after every reload it saw,
/// and once more, with `final` set, when the application shuts down.
struct Summary {
    int reloads = 0;        ///< certs::CertReloaded events seen
    int servers = 0;        ///< distinct servers among them
    int lastGeneration = 0; ///< generation of the latest one
    bool final = false;
};

} // namespace metrics
