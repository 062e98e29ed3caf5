// SPDX-License-Identifier: MIT
// Sigreg QML example: three worker threads notify a typed
// sigreg::QtRegistry<Reading>; sigreg::exposeToQml() hands its events to QML,
// where RegistryHandler elements (an alarm desk, one per sensor panel, a log)
// react in priority order.
//
// What it shows
// * The event is a plain C++ struct. QML never sees it: exposeToQml()
//   converts each one to a QVariantMap on the notifying (worker) thread, and
//   the QML Registry delivers it in the QML engine's thread.
// * A C++ handler and the QML handlers share one source registry.
// * QML handlers live and die with their element: the sensor panels are
//   Repeater delegates, and a timer adds and removes one of them.
//
// Run it with a window, or render one frame offscreen:
//     sigreg-qml-dashboard --screenshot dashboard.png
// which waits (at most 5 s) until readings have reached QML, saves the frame,
// stops the workers and exits 0, or non-zero with a message on any failure.
#include <sigreg/qml/qmlregistry.h>
#include <sigreg/qt/qtregistry.h>

#include <QCommandLineParser>
#include <QEventLoop>
#include <QGuiApplication>
#include <QImage>
#include <QQmlApplicationEngine>
#include <QQmlError>
#include <QQuickWindow>
#include <QSGRendererInterface>
#include <QTimer>
#include <QVariantMap>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <numbers>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;

// The event: plain C++, no Qt.
struct Reading {
    std::string sensor;
    double value = 0;
    std::chrono::system_clock::time_point time;
    int worker = 0;         // 1, 2, 3: the thread that measured it
    std::uint64_t seq = 0;  // unique across workers
};

// A simulated sensor: a slow wave, noise and, now and then, a spike.
struct Sensor {
    const char *name;
    double base, amplitude, periodS, noise, spike;
};

// The worker threads: each measures its sensors in turn, every `period`.
class Plant {
public:
    explicit Plant(const sigreg::QtRegistry<Reading> &out) : m_out(out) {}
    ~Plant() { stop(); }
    Plant(const Plant &) = delete;
    Plant &operator=(const Plant &) = delete;

    void start()
    {
        m_threads.emplace_back([this](std::stop_token st) {
            run(st, 1, {{"temperature", 66, 9, 7, 0.8, 16}, {"pressure", 215, 22, 11, 3, 45}}, 55ms, 11);
        });
        m_threads.emplace_back([this](std::stop_token st) {
            run(st, 2, {{"humidity", 52, 9, 9, 1.2, 18}}, 90ms, 22);
        });
        m_threads.emplace_back([this](std::stop_token st) {
            run(st, 3, {{"vibration", 3.4, 1.4, 5, 0.35, 4.5}}, 70ms, 33);
        });
    }
    // Returns once every worker has ended (std::jthread joins).
    void stop() { m_threads.clear(); }
    std::uint64_t sent() const { return m_seq.load(); }

private:
    void run(std::stop_token st, int worker, std::vector<Sensor> sensors, std::chrono::milliseconds period,
             unsigned seed)
    {
        std::mt19937 rng(seed);
        std::normal_distribution<double> noise;
        std::uniform_real_distribution<double> chance;
        const auto start = std::chrono::steady_clock::now();
        std::mutex mutex; // only for the interruptible wait
        std::condition_variable_any cv;
        for (std::size_t i = 0; !st.stop_requested(); ++i) {
            const Sensor &s = sensors[i % sensors.size()];
            const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            double value = s.base + s.amplitude * std::sin(2 * std::numbers::pi * t / s.periodS)
                + s.noise * noise(rng);
            if (chance(rng) < 0.05)
                value += s.spike;
            m_out.notify(Reading{s.name, value, std::chrono::system_clock::now(), worker, ++m_seq});
            std::unique_lock lock(mutex);
            cv.wait_for(lock, st, period, [] { return false; }); // wakes early on stop
        }
    }

    const sigreg::QtRegistry<Reading> &m_out;
    std::atomic<std::uint64_t> m_seq{0};
    std::vector<std::jthread> m_threads;
};

// What QML gets for a Reading. Runs on the worker thread that notified.
QVariantMap toQml(const Reading &r)
{
    using std::chrono::duration_cast, std::chrono::milliseconds;
    return {
        {QStringLiteral("sensor"), QString::fromStdString(r.sensor)},
        {QStringLiteral("value"), r.value},
        {QStringLiteral("time"), double(duration_cast<milliseconds>(r.time.time_since_epoch()).count())},
        {QStringLiteral("worker"), r.worker},
        {QStringLiteral("seq"), double(r.seq)},
    };
}

// Runs the event loop until done() holds, at most `timeout`; returns done().
template <class Done>
bool waitUntil(Done done, std::chrono::milliseconds timeout)
{
    if (done())
        return true;
    QEventLoop loop;
    QTimer poll;
    QObject::connect(&poll, &QTimer::timeout, &loop, [&] {
        if (done())
            loop.quit();
    });
    poll.start(20ms);
    QTimer::singleShot(timeout, &loop, &QEventLoop::quit);
    loop.exec();
    return done();
}

bool hasScreenshotFlag(int argc, char **argv)
{
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--screenshot") == 0 || std::strncmp(argv[i], "--screenshot=", 13) == 0)
            return true;
    }
    return false;
}

int fail(const char *what, const QString &detail = {})
{
    std::fprintf(stderr, "sigreg-qml-dashboard: %s%s%s\n", what, detail.isEmpty() ? "" : ": ",
                 qPrintable(detail));
    return 1;
}

} // namespace

int main(int argc, char *argv[])
{
    // Offscreen mode: settled before the application and the window exist.
    if (hasScreenshotFlag(argc, argv)) {
        if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM"))
            qputenv("QT_QPA_PLATFORM", "offscreen");
        QQuickWindow::setGraphicsApi(QSGRendererInterface::Software);
    }
    QGuiApplication app(argc, argv);
    QGuiApplication::setApplicationName(QStringLiteral("sigreg-qml-dashboard"));

    QCommandLineParser parser;
    parser.setApplicationDescription(QStringLiteral("Sigreg QML dashboard: worker threads -> QtRegistry -> QML"));
    parser.addHelpOption();
    const QCommandLineOption screenshotOption(
        QStringLiteral("screenshot"),
        QStringLiteral("Render one frame offscreen into <file> (PNG) once readings have reached QML, then exit."),
        QStringLiteral("file"));
    parser.addOption(screenshotOption);
    parser.process(app);
    const QString screenshot = parser.value(screenshotOption);
    const bool offscreen = parser.isSet(screenshotOption);
    if (offscreen && screenshot.isEmpty())
        return fail("--screenshot needs a file name");

    // The C++ side: a typed registry, a C++ handler, and its QML face.
    sigreg::QtRegistry<Reading> readings;
    std::atomic<std::uint64_t> seenInCpp{0};
    readings.add([&seenInCpp](const Reading &) { seenInCpp.fetch_add(1, std::memory_order_relaxed); });
    sigreg::QmlRegistry *qmlReadings = sigreg::exposeToQml(readings, &toQml, &app);
    Plant plant(readings);

    QQmlApplicationEngine engine;
#ifdef SIGREG_QML_IMPORT_PATH
    engine.addImportPath(QStringLiteral(SIGREG_QML_IMPORT_PATH)); // QML_IMPORT_PATH is read as well
#endif
    QStringList qmlErrors;
    QObject::connect(&engine, &QQmlEngine::warnings, &app, [&qmlErrors](const QList<QQmlError> &warnings) {
        for (const QQmlError &w : warnings)
            qmlErrors << w.toString();
    });
    engine.setInitialProperties({{QStringLiteral("readings"), QVariant::fromValue(qmlReadings)}});
    engine.load(QUrl(QStringLiteral("qrc:/qml-dashboard/Main.qml")));
    auto *window = engine.rootObjects().isEmpty() ? nullptr
                                                  : qobject_cast<QQuickWindow *>(engine.rootObjects().constFirst());
    if (!window)
        return fail("the QML did not load", qmlErrors.join(QLatin1Char('\n')));

    plant.start();
    if (!offscreen) {
        const int rc = QGuiApplication::exec();
        plant.stop();
        return rc;
    }

    // --screenshot: wait until QML says it has seen enough (or 5 s passed).
    auto received = [window] { return window->property("received").toInt(); };
    const bool settled = waitUntil(
        [&] { return !qmlErrors.isEmpty() || window->property("settled").toBool(); }, 5000ms);
    if (!qmlErrors.isEmpty()) {
        plant.stop();
        return fail("QML errors", qmlErrors.join(QLatin1Char('\n')));
    }
    if (received() == 0) {
        plant.stop();
        return fail("no reading reached QML within 5 s");
    }
    if (!settled)
        std::fprintf(stderr, "sigreg-qml-dashboard: not settled after 5 s, taking the frame anyway\n");

    const QImage frame = window->grabWindow();
    plant.stop();
    if (frame.isNull())
        return fail("grabbing the window failed");
    if (!frame.save(screenshot, "PNG"))
        return fail("could not save", screenshot);
    // Anything the workers queued before they stopped: delivered, then checked.
    QCoreApplication::processEvents();
    if (!qmlErrors.isEmpty())
        return fail("QML errors", qmlErrors.join(QLatin1Char('\n')));
    if (qmlReadings->failureCount() != 0)
        return fail("QML handlers failed");

    std::printf("workers sent %llu readings; the C++ handler saw %llu, QML %d (%d alarms, %d handlers)\n"
                "saved %s (%dx%d)\n",
                static_cast<unsigned long long>(plant.sent()), static_cast<unsigned long long>(seenInCpp.load()),
                received(), window->property("alarmCount").toInt(), qmlReadings->count(), qPrintable(screenshot),
                frame.width(), frame.height());
    return 0;
}
