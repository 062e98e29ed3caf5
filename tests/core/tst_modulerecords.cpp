// SPDX-License-Identifier: MIT
// The per-module copies of a thread's hazard record pointer
// (detail::tl_moduleRecord, see detail/hazard.h) across a plugin that is
// loaded, used on a thread and unloaded while that thread still runs.
#include <sigreg/registry.h>

#include <QtCore/QLibrary>
#include <QtTest/QTest>

#include <atomic>
#include <cstdint>
#include <latch>
#include <thread>

#include "../support/hazard_records.h"

namespace {

using NotifyFn = void (*)(sigreg::Registry<int> *, int);
using AddressFn = const void *(*)();

} // namespace

class tst_ModuleRecords : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void pluginCopyAttachesAndDetachesOnUnload();
};

// A plugin's notify attaches the plugin's own copy on the calling thread;
// unloading the plugin unlists that copy from the thread's record (so the
// thread's exit never writes to the unloaded module's thread-local storage)
// and leaves the executable's copy alone; the thread then exits cleanly.
void tst_ModuleRecords::pluginCopyAttachesAndDetachesOnUnload()
{
#if !SIGREG_MODULE_RECORDS
    QSKIP("module copies of the record pointer are off on this platform");
#else
    QLibrary lib(QStringLiteral(SIGREG_RECORD_PLUGIN_PATH));
    QVERIFY2(lib.load(), qPrintable(lib.errorString()));
    auto pluginNotify = reinterpret_cast<NotifyFn>(lib.resolve("plugin_notify"));
    auto pluginCopyAddress = reinterpret_cast<AddressFn>(lib.resolve("plugin_copy_address"));
    auto pluginCopyValue = reinterpret_cast<AddressFn>(lib.resolve("plugin_copy_value"));
    QVERIFY(pluginNotify && pluginCopyAddress && pluginCopyValue);

    sigreg::Registry<int> registry;
    std::atomic<int> sum{0};
    auto guard = registry.addGuarded([&](int v) { sum.fetch_add(v); });
    const int before = sigreg_test::recordsInUse();

    std::latch used(1);
    std::latch unloaded(1);
    const sigreg::detail::ThreadRecord *rec = nullptr;
    const void *pluginSlot = nullptr;
    const void *hostSlot = nullptr;
    bool pluginAttached = false;
    bool hostAttached = false;
    std::thread th([&] {
        pluginNotify(&registry, 1); // takes the thread's record
        pluginNotify(&registry, 1); // attaches the plugin's copy
        pluginNotify(&registry, 1); // the inline path
        registry.notify(1);         // the host's copy: taken, attached
        registry.notify(1);
        rec = sigreg::detail::tl_record;
        pluginSlot = pluginCopyAddress();
        hostSlot = &sigreg::detail::tl_moduleRecord; // this thread's
        pluginAttached = pluginCopyValue() == rec;
        hostAttached = sigreg::detail::moduleRecord() == rec;
        used.count_down();
        unloaded.wait();
        registry.notify(1); // still through the host's copy
    });
    used.wait();
    // Lets the thread finish whatever happens below.
    struct Finish {
        std::latch &unloaded;
        std::thread &th;
        ~Finish()
        {
            if (th.joinable()) {
                unloaded.count_down();
                th.join();
            }
        }
    } finish{unloaded, th};
    QVERIFY(pluginAttached);
    QVERIFY(hostAttached);
    QVERIFY(sigreg_test::listsModuleCopy(rec, pluginSlot));
    QVERIFY(sigreg_test::listsModuleCopy(rec, hostSlot));

    pluginNotify = nullptr;
    QVERIFY2(lib.unload(), qPrintable(lib.errorString()));
    QVERIFY(!sigreg_test::listsModuleCopy(rec, pluginSlot)); // the plugin's copy was unlisted at unload
    QVERIFY(sigreg_test::listsModuleCopy(rec, hostSlot));

    unloaded.count_down();
    th.join();
    QCOMPARE(sum.load(), 6);
    QCOMPARE(sigreg_test::recordsInUse(), before);
    QVERIFY(guard.reset());
#endif
}

QTEST_GUILESS_MAIN(tst_ModuleRecords)
#include "tst_modulerecords.moc"
