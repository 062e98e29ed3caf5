// SPDX-License-Identifier: MIT
// Pattern: a QML front end fed by a C++ back end (docs/PATTERNS.md).
//
// The back end (JobService) runs jobs in its own thread and reports progress
// with a typed sigreg::QtRegistry<JobUpdate> of plain C++ structs. The front
// end is QML: exposeToQml() turns that registry into a QML `Registry`, whose
// RegistryHandler keeps a ListModel up to date in the QML engine's thread.
// The way back is a second QML Registry, `commands`: QML notifies it
// ("cancel job 2") and a C++ handler acts on it.
//
// Runs offscreen when QT_QPA_PLATFORM=offscreen, quits by itself once every
// job is over, then checks what each side saw. Exits 0 when every check
// holds, 1 otherwise (2 on its 20 s safety timeout).
#include <sigreg/qml/qmlregistry.h>
#include <sigreg/qt/qtregistry.h>

#include <QGuiApplication>
#include <QQmlApplicationEngine>
#include <QQmlError>
#include <QQuickWindow>
#include <QSGRendererInterface>
#include <QTimer>
#include <QVariantMap>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

namespace {

// [pattern:qml-frontend-backend]
struct JobUpdate { // plain C++: the back end knows nothing of QML
    int job;
    std::string status; // "running", "done", "cancelled"
    int progress;      // percent
};

class JobService {
public:
    sigreg::QtRegistry<JobUpdate> updates; // notified from the service's thread

    void cancel(int job) { m_cancelled.at(std::size_t(job)) = true; }
    void start()
    {
        m_thread = std::jthread([this](std::stop_token stop) {
            for (int job = 1; job <= 3 && !stop.stop_requested(); ++job)
                run(job, job == 2 ? 40 : 4, stop);
        });
    }
    // [/pattern:qml-frontend-backend]
    void stop()
    {
        m_thread.request_stop();
        if (m_thread.joinable())
            m_thread.join();
    }
    int sent() const { return m_sent.load(); }
    bool wasCancelled(int job) const { return m_cancelled.at(std::size_t(job)); }

private:
    void run(int job, int steps, std::stop_token stop)
    {
        send({job, "running", 0});
        for (int step = 1; step <= steps; ++step) {
            std::mutex m; // only for the interruptible 25 ms of "work"
            std::unique_lock lock(m);
            std::condition_variable_any().wait_for(lock, stop, std::chrono::milliseconds(25), [] { return false; });
            if (m_cancelled.at(std::size_t(job))) {
                send({job, "cancelled", 100 * (step - 1) / steps});
                return;
            }
            send({job, step == steps ? "done" : "running", 100 * step / steps});
        }
    }
    void send(const JobUpdate &u)
    {
        ++m_sent;
        updates.notify(u);
    }

    std::array<std::atomic<bool>, 4> m_cancelled{}; // by job number
    std::atomic<int> m_sent{0};
    std::jthread m_thread; // last: joined first
};

} // namespace

int main(int argc, char *argv[])
{
    QGuiApplication app(argc, argv);
    if (QGuiApplication::platformName() == QLatin1String("offscreen"))
        QQuickWindow::setGraphicsApi(QSGRendererInterface::Software);

    JobService service;

    // [pattern:qml-frontend-bridge]
    // C++ -> QML: each JobUpdate becomes a JS object, converted on the
    // service's thread; QML handlers run in the engine's thread.
    sigreg::QmlRegistry *jobUpdates = sigreg::exposeToQml(
        service.updates,
        [](const JobUpdate &u) {
            return QVariantMap{{QStringLiteral("job"), u.job},
                               {QStringLiteral("status"), QString::fromStdString(u.status)},
                               {QStringLiteral("progress"), u.progress}};
        },
        &app);

    // QML -> C++: QML notifies `commands`; this handler runs in the engine's thread.
    sigreg::QmlRegistry commands;
    std::atomic<int> commandsSeen{0};
    commands.add([&](const QVariant &command) {
        const QVariantMap c = command.toMap();
        if (c.value(QStringLiteral("action")) == QStringLiteral("cancel"))
            service.cancel(c.value(QStringLiteral("job")).toInt());
        ++commandsSeen;
    });

    QQmlApplicationEngine engine;
    engine.addImportPath(QStringLiteral(SIGREG_QML_IMPORT_PATH));
    QStringList qmlErrors;
    QObject::connect(&engine, &QQmlEngine::warnings, &app, [&qmlErrors](const QList<QQmlError> &warnings) {
        for (const QQmlError &w : warnings)
            qmlErrors << w.toString();
    });
    engine.setInitialProperties({{QStringLiteral("jobUpdates"), QVariant::fromValue(jobUpdates)},
                                 {QStringLiteral("commands"), QVariant::fromValue(&commands)}});
    engine.load(QUrl(QStringLiteral("qrc:/qml-frontend/Main.qml")));
    // [/pattern:qml-frontend-bridge]
    if (engine.rootObjects().isEmpty()) {
        std::fprintf(stderr, "qml-frontend: the QML did not load\n");
        return 1;
    }
    QObject *root = engine.rootObjects().constFirst();

    service.start();
    QTimer::singleShot(20000, &app, [] {
        std::fprintf(stderr, "qml-frontend: timed out\n");
        QCoreApplication::exit(2);
    });
    const int rc = QGuiApplication::exec(); // QML calls Qt.quit() once every job is over
    service.stop();
    if (rc != 0)
        return rc;

    const int received = root->property("received").toInt();
    const QString summary = root->property("summary").toString();
    std::printf("back end sent %d updates; QML received %d; QML sent %d command(s)\n", service.sent(), received,
                commandsSeen.load());
    std::printf("jobs as QML shows them: %s\n", qPrintable(summary));

    int failed = 0;
    auto check = [&failed](bool ok, const char *what) {
        std::printf("  [%s] %s\n", ok ? "ok" : "FAILED", what);
        failed += ok ? 0 : 1;
    };
    check(received == service.sent(), "QML received every update the back end notified");
    check(commandsSeen == 1 && service.wasCancelled(2), "QML's cancel command reached the C++ back end");
    check(summary == QStringLiteral("1:done 2:cancelled 3:done"), "QML shows the outcome of every job");
    check(jobUpdates->failureCount() == 0 && commands.failureCount() == 0 && qmlErrors.isEmpty(),
          "no handler failed, no QML warning");
    for (const QString &e : qmlErrors)
        std::printf("    %s\n", qPrintable(e));

    std::printf("%s\n", failed == 0 ? "qml-frontend: all checks passed" : "qml-frontend: CHECKS FAILED");
    return failed == 0 ? 0 : 1;
}
