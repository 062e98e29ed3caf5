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

#if defined(__linux__)
#include <climits>
#include <pthread.h>
#endif

#include "../support/hazard_records.h"
#include "../support/sanitizers.h"

namespace {

using NotifyFn = void (*)(sigreg::Registry<int> *, int);
using AddressFn = const void *(*)();

} // namespace

class tst_ModuleRecords : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void pluginCopyAttachesAndDetachesOnUnload();
    void readInTheLastKeyDestructorRoundListsNoCopy();
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

// A thread exits; Sigreg's pthread-key destructor hands its record back in
// the first round; another library's key destructor keeps itself alive and
// notifies in glibc's last round. That read takes a record again, which no
// round will hand back: the module copy it would attach would stay listed
// with the thread's storage gone, and a module's detacher (at exit, at
// dlclose) would write there. It must not be attached.
void tst_ModuleRecords::readInTheLastKeyDestructorRoundListsNoCopy()
{
#if !SIGREG_MODULE_RECORDS || !defined(__linux__) || !defined(PTHREAD_DESTRUCTOR_ITERATIONS)
    QSKIP("needs module copies and pthread key destructor rounds");
#else
    if (sigreg_test::kUnderTsan) {
        // ThreadSanitizer finishes a thread in the last key-destructor round
        // itself: instrumented code after that crashes its runtime.
        QSKIP("ThreadSanitizer cannot run code in the last key-destructor round");
    }
    struct LastRound {
        pthread_key_t key;
        sigreg::Registry<int> *registry;
        std::atomic<int> rounds{0};
        std::atomic<bool> recordTaken{false};
        std::atomic<const void *> copyAfter{nullptr};
    };
    sigreg::Registry<int> registry;
    std::atomic<int> sum{0};
    auto guard = registry.addGuarded([&](int v) { sum.fetch_add(v); });
    registry.notify(1); // Sigreg's key exists before the test's: its destructor runs first in a round
    LastRound state;
    state.registry = &registry;
    QCOMPARE(pthread_key_create(&state.key, [](void *p) {
                 auto *s = static_cast<LastRound *>(p);
                 if (s->rounds.fetch_add(1) + 1 < PTHREAD_DESTRUCTOR_ITERATIONS) {
                     pthread_setspecific(s->key, s); // once more, in the next round
                     return;
                 }
                 s->registry->notify(1);
                 s->recordTaken = !sigreg::detail::tl_record->isPlaceholder();
                 s->copyAfter = sigreg::detail::moduleRecord();
             }),
             0);
    const void *slot = nullptr;
    bool attachedBefore = false;
    std::thread th([&] {
        registry.notify(1);
        registry.notify(1); // attaches this executable's copy
        slot = &sigreg::detail::tl_moduleRecord;
        attachedBefore = sigreg::detail::moduleRecord() == sigreg::detail::tl_record;
        pthread_setspecific(state.key, &state);
    });
    th.join();
    QVERIFY(attachedBefore);
    pthread_key_delete(state.key);
    QCOMPARE(state.rounds.load(), PTHREAD_DESTRUCTOR_ITERATIONS);
    QCOMPARE(sum.load(), 4); // the last round's read ran
    QVERIFY(state.recordTaken.load());
    QVERIFY(state.copyAfter.load() == &sigreg::detail::g_placeholderRecord);
    for (auto *r = sigreg::detail::ThreadRecord::first(); r; r = r->next.load(std::memory_order_acquire))
        QVERIFY2(!sigreg_test::listsModuleCopy(r, slot), "a record lists the dead thread's module copy");
    QVERIFY(guard.reset());
#endif
}

QTEST_GUILESS_MAIN(tst_ModuleRecords)
#include "tst_modulerecords.moc"
