// SPDX-License-Identifier: MIT
// The `certs` module: "reloads" server certificates on a worker thread and
// announces each reload on the bus (certs::CertReloaded). It knows the bus
// and its own events, nothing of who listens.
#pragma once

#include <QtCore/QThread>

#include <chrono>

namespace sigreg {
class Bus;
}

namespace certs {

class CertReloader {
public:
    /// Prepares the worker thread ("certs"); start() starts it.
    CertReloader(sigreg::Bus &bus, std::chrono::milliseconds interval);
    /// Stops the thread if it still runs (it normally ends on ShutdownInitiated).
    ~CertReloader();
    CertReloader(const CertReloader &) = delete;
    CertReloader &operator=(const CertReloader &) = delete;

    void start();
    /// Waits until the thread has ended on its own after ShutdownInitiated;
    /// false if it still ran at the deadline.
    bool waitStopped(std::chrono::milliseconds timeout);

private:
    QThread m_thread;
    QObject *m_root = nullptr; // the module's objects, living in m_thread
};

} // namespace certs
