// SPDX-License-Identifier: MIT
#include "certs/cert_reloader.h"

#include "certs/cert_events.h"

#include <sigreg/bus.h>
#include <sigreg/qt/qtbus.h>

#include <QtCore/QDeadlineTimer>
#include <QtCore/QTimer>

#include <cstdio>
#include <memory>
#include <string>

namespace certs {

namespace {

QByteArray threadName()
{
    return QThread::currentThread()->objectName().toUtf8();
}

} // namespace

CertReloader::CertReloader(sigreg::Bus &bus, std::chrono::milliseconds interval)
{
    m_thread.setObjectName(QStringLiteral("certs"));

    // Everything of the module lives in its thread, under one root object.
    // The objects are made here, then moved as a whole: a QObject cannot get
    // a parent in another thread, and a QTimer must be started, stopped and
    // destroyed in the thread it lives in.
    auto *root = m_root = new QObject;
    auto *timer = new QTimer(root);
    timer->setInterval(interval);

    // The reload: runs in the "certs" thread at every tick and emits on the
    // bus from there. emit() copies the event into every pull receiver, then
    // calls the push handlers, all on this thread; it never waits for anyone.
    auto generation = std::make_shared<int>(0); // only touched in "certs"
    QObject::connect(timer, &QTimer::timeout, timer, [&bus, generation] {
        const int g = ++*generation;
        const int server = 1 + (g - 1) % 2; // two servers, taking turns
        bus.emit(CertReloaded{server, "/etc/tls/server" + std::to_string(server) + ".pem", g});
    });

    // Shutdown: a QtBusReceiver delivers in the thread its object lives in,
    // so once moved below, this callback runs in "certs", where the timer can
    // be stopped. (A push handler, bus.on<ShutdownInitiated>(), would run in
    // whatever thread emits it: the main thread, inside aboutToQuit.)
    auto *shutdown = new sigreg::QtBusReceiver<sigreg::ShutdownInitiated>(bus, root);
    shutdown->onEvent([timer, generation](const sigreg::ShutdownInitiated &) {
        timer->stop();
        std::printf("[%-5s] certs:   ShutdownInitiated: timer stopped after %d reloads\n",
                    threadName().constData(), *generation);
        QThread::currentThread()->quit(); // ends the thread's event loop
    });

    root->moveToThread(&m_thread);
    QObject::connect(&m_thread, &QThread::started, timer, [timer] {
        std::printf("[%-5s] certs:   reloading every %d ms\n", threadName().constData(), timer->interval());
        timer->start();
    });
    // Deleted in its own thread, as its thread ends (QThread::finished is
    // emitted there, and its deferred deletions run before the thread exits).
    QObject::connect(&m_thread, &QThread::finished, root, &QObject::deleteLater);
}

CertReloader::~CertReloader()
{
    const bool started = m_thread.isRunning() || m_thread.isFinished();
    m_thread.quit();
    m_thread.wait();
    if (!started)
        delete m_root; // never started, so QThread::finished did not delete it
}

void CertReloader::start()
{
    m_thread.start();
}

bool CertReloader::waitStopped(std::chrono::milliseconds timeout)
{
    return m_thread.wait(QDeadlineTimer(timeout));
}

} // namespace certs
