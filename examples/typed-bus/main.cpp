// SPDX-License-Identifier: MIT
// Sigreg example: two modules that do not know each other exchange typed
// events over a sigreg::Bus; the Qt application's shutdown is an event too.
//
//   certs    (static library, worker thread "certs") reloads certificates
//            and emits certs::CertReloaded;
//   metrics  (a plugin, loaded at run time with QLibrary) counts them and
//            emits metrics::Summary;
//   main     owns the bus, waits for the first reload with nextEvent<E>(),
//            quits after --events summaries (a push handler), and reads the
//            final summary afterwards (a pull receiver).
//
// Quitting the application emits sigreg::ShutdownInitiated (attachToApplication):
// `certs` stops its timer and ends its thread, `metrics` publishes its final
// summary. The program checks all that and exits 0, or 1 if something is
// missing (2 if it ran into its 10 s safety timeout).
#include "certs/cert_events.h"
#include "certs/cert_reloader.h"
#include "metrics/metrics_events.h"
#include "metrics/metrics_plugin.h"

#include <sigreg/bus.h>
#include <sigreg/qt/qtbus.h>

#include <QtCore/QCommandLineParser>
#include <QtCore/QCoreApplication>
#include <QtCore/QDir>
#include <QtCore/QFileInfo>
#include <QtCore/QFuture>
#include <QtCore/QLibrary>
#include <QtCore/QThread>
#include <QtCore/QTimer>

#include <chrono>
#include <cstdio>
#include <memory>

using namespace std::chrono_literals;

namespace {

QByteArray threadName()
{
    return QThread::currentThread()->objectName().toUtf8();
}

} // namespace

int main(int argc, char *argv[])
{
    std::setvbuf(stdout, nullptr, _IOLBF, 0); // the transcript as it happens, even piped
    QCoreApplication app(argc, argv);
    QThread::currentThread()->setObjectName(QStringLiteral("main"));

    QCommandLineParser parser;
    parser.setApplicationDescription(QStringLiteral("Two modules exchange typed events on a sigreg::Bus."));
    parser.addHelpOption();
    const QCommandLineOption eventsOption(QStringLiteral("events"),
                                          QStringLiteral("Quit after <n> reloads (default 5)."),
                                          QStringLiteral("n"), QStringLiteral("5"));
    parser.addOption(eventsOption);
    parser.process(app);
    bool ok = false;
    const int wanted = parser.value(eventsOption).toInt(&ok);
    if (!ok || wanted < 1) {
        std::fprintf(stderr, "--events: expected a positive number\n");
        return 1;
    }

    // The bus: no event type declared anywhere; a channel appears for each
    // type the first time someone listens to it. Quitting the application
    // will emit sigreg::ShutdownInitiated on it, once.
    sigreg::Bus bus;
    sigreg::attachToApplication(bus);

    // 1. A one-shot: the first reload, as a QFuture. The future is fulfilled
    //    in the emitting thread ("certs"); the continuation runs in the
    //    thread of its context object, `app`: here.
    sigreg::nextEvent<certs::CertReloaded>(bus).then(&app, [](const certs::CertReloaded &e) {
        std::printf("[%-5s] main:    first reload (nextEvent): server %d, generation %d\n",
                    threadName().constData(), e.serverId, e.generation);
    });

    // 2. A push handler: runs in the emitting thread, which for Summary is
    //    the thread metrics delivers in (main). The guard removes it.
    const sigreg::Guard quitWhenDone = bus.onGuarded([&bus, wanted](const metrics::Summary &s) {
        if (s.reloads == wanted && !bus.isShuttingDown()) {
            std::printf("[%-5s] main:    %d reloads counted by metrics: quitting\n", threadName().constData(),
                        s.reloads);
            QCoreApplication::quit();
        }
    });

    // 3. A pull receiver: a mailbox read when main wants. Capacity 1 keeps
    //    only the latest summary; it tells how many older ones it dropped.
    sigreg::Receiver<metrics::Summary> latestSummary = bus.subscribe<metrics::Summary>(1);

    // The modules. `certs` is linked in; `metrics` is found next to this
    // executable and loaded now. It stays loaded to the end: a module must
    // outlive the bus's use of its code (so no unload()).
    certs::CertReloader reloader(bus, 50ms);
    QLibrary plugin(QDir(QCoreApplication::applicationDirPath()).filePath(QStringLiteral(SIGREG_METRICS_PLUGIN)));
    const auto create = reinterpret_cast<metrics::CreateFunction>(plugin.resolve(metrics::kCreateSymbol));
    if (!create) {
        std::fprintf(stderr, "cannot load the metrics plugin: %s\n", qPrintable(plugin.errorString()));
        return 1;
    }
    std::printf("[%-5s] main:    loaded %s\n", threadName().constData(),
                qPrintable(QFileInfo(plugin.fileName()).fileName()));
    const std::unique_ptr<QObject> metricsPlugin(create(bus));

    // Never hang: give up after 10 s.
    QTimer::singleShot(10s, &app, [] {
        std::fprintf(stderr, "timed out\n");
        QCoreApplication::exit(2);
    });

    reloader.start();
    const int code = app.exec(); // ShutdownInitiated was emitted (and delivered here) before it returned
    if (code != 0)
        return code;

    // The shutdown, checked: `certs` ends its thread when it gets the event...
    const bool certsStopped = reloader.waitStopped(3s);
    std::printf("[%-5s] main:    certs thread %s\n", threadName().constData(),
                certsStopped ? "ended" : "STILL RUNNING");

    // ... and `metrics` answered it with a final summary, the latest one in the mailbox.
    bool sawFinal = false;
    for (;;) {
        sigreg::ReceiveResult<metrics::Summary> r = latestSummary.tryReceive();
        if (r.status() == sigreg::ReceiveStatus::Lagged) {
            std::printf("[%-5s] main:    mailbox: older summaries dropped: %llu\n", threadName().constData(),
                        static_cast<unsigned long long>(r.lagged()));
        } else if (r) {
            sawFinal = r->final;
            std::printf("[%-5s] main:    mailbox: %s summary: %d reloads, %d servers, last generation %d\n",
                        threadName().constData(), r->final ? "final" : "non-final", r->reloads, r->servers,
                        r->lastGeneration);
        } else {
            break; // Empty: nothing more
        }
    }
    const int exitCode = certsStopped && sawFinal ? 0 : 1;
    std::printf("[%-5s] main:    exit code %d\n", threadName().constData(), exitCode);
    return exitCode;
}
