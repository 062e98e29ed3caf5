// SPDX-License-Identifier: MIT
// Qt Test suite for sigreg::Registry<E> on one thread: ids, priority order,
// removal, handler types and lifetimes, error isolation, reentrancy, batches,
// registration at scale and reclamation. The multi-threaded guarantees are in
// tst_concurrency.cpp, guards in tst_guard.cpp.
#include <sigreg/detail/hazard.h>
#include <sigreg/registry.h>

#include <QtTest/QTest>

#if defined(__GLIBCXX__) && __has_include(<unwind.h>)
#include <unwind.h>
#define SIGREG_TEST_FOREIGN_EXCEPTIONS 1
#endif

#include <algorithm>
#include <climits>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

struct Event {
    int value = 0;
};
using Reg = sigreg::Registry<Event>;
using sigreg::HandlerId;

// ---------------------------------------------------------------------------
// Compile-time properties of the public types.
// ---------------------------------------------------------------------------
static_assert(!std::is_copy_constructible_v<sigreg::Guard>, "Guard owns a registration: not copyable");
static_assert(!std::is_copy_assignable_v<sigreg::Guard>);
static_assert(std::is_nothrow_move_constructible_v<sigreg::Guard>);
static_assert(std::is_nothrow_move_assignable_v<sigreg::Guard>);
static_assert(std::is_nothrow_default_constructible_v<sigreg::Guard>);
// Handlers and guards point at the registry, so it must stay where it is.
static_assert(!std::is_copy_constructible_v<Reg> && !std::is_move_constructible_v<Reg>);
static_assert(!std::is_copy_assignable_v<Reg> && !std::is_move_assignable_v<Reg>);
static_assert(std::is_trivially_copyable_v<HandlerId>);
static_assert(sizeof(HandlerId) == 8);
static_assert(!HandlerId().isValid() && HandlerId(1).isValid());
static_assert(HandlerId(1) < HandlerId(2));
static_assert(std::is_nothrow_constructible_v<Reg>, "an empty registry allocates nothing");
// Batches are move-only values.
static_assert(!std::is_copy_constructible_v<Reg::Batch> && std::is_nothrow_move_constructible_v<Reg::Batch>);

// An event type that can be neither copied nor moved: notify() must pass it
// by reference all the way down.
struct Pinned {
    explicit Pinned(int v) : value(v) {}
    Pinned(const Pinned &) = delete;
    Pinned &operator=(const Pinned &) = delete;
    int value;
};
static_assert(!std::is_copy_constructible_v<Pinned> && !std::is_move_constructible_v<Pinned>);

// Book-keeping for one registered handler object: how often its registered
// instance (not moved-from shells) was called and destroyed, and whether a
// destructor ever ran while a call was in progress.
struct Lifetime {
    int calls = 0;
    int destroyed = 0;
    int destroyedWhileRunning = 0;
    bool running = false;
};

// A move-only handler that reports to a Lifetime and runs an optional body.
template <class Body = std::nullptr_t>
struct Tracked {
    Lifetime *life;
    Body body;

    explicit Tracked(Lifetime *l, Body b = Body()) : life(l), body(std::move(b)) {}
    Tracked(Tracked &&o) noexcept : life(std::exchange(o.life, nullptr)), body(std::move(o.body)) {}
    Tracked(const Tracked &) = delete;
    Tracked &operator=(const Tracked &) = delete;
    Tracked &operator=(Tracked &&) = delete;
    ~Tracked()
    {
        if (!life)
            return; // moved-from shell
        if (life->running)
            ++life->destroyedWhileRunning;
        ++life->destroyed;
    }
    void operator()(const Event &e)
    {
        ++life->calls;
        life->running = true;
        if constexpr (!std::is_same_v<Body, std::nullptr_t>)
            body(e);
        life->running = false;
    }
};

// The order in which handlers with these priorities must run, computed
// independently of the registry: a stable sort by descending priority.
QList<int> expectedOrder(const QList<int> &priorities)
{
    QList<int> order(priorities.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return priorities[a] > priorities[b]; });
    return order;
}

// Deterministic pseudo-random priorities (no seeding differences between runs).
QList<int> pseudoRandomPriorities(int n, int lo, int hi, std::uint32_t seed)
{
    QList<int> out;
    std::uint32_t x = seed;
    for (int i = 0; i < n; ++i) {
        x = x * 1664525u + 1013904223u;
        out.push_back(lo + int((x >> 8) % std::uint32_t(hi - lo + 1)));
    }
    return out;
}

struct CustomError : std::logic_error {
    explicit CustomError(int c) : std::logic_error("custom error " + std::to_string(c)), code(c) {}
    int code;
};

} // namespace

class tst_Registry : public QObject {
    Q_OBJECT

private Q_SLOTS:
    // ids
    void idsAreValidUniqueAndIncreasing();
    void idsAreNeverReused();
    // ordering
    void priorities_data();
    void priorities();
    void insertionPosition_data();
    void insertionPosition();
    // removal and queries
    void removeReturnsTrueOnce();
    void removeUnknownId();
    void clearReturnsCountAndEmpties();
    void containsSizeEmpty();
    // handlers and events
    void everyHandlerGetsTheSameEventObject();
    void nonCopyableNonMovableEvent();
    void moveOnlyHandler();
    void mutableLambdaKeepsState();
    void plainFunctionPointerAndStdFunction();
    void emptyHandlersAreRejected();
    void handlerDestroyedExactlyOnce_data();
    void handlerDestroyedExactlyOnce();
    // errors
    void errorHandlerGetsStdException();
    void errorHandlerGetsNonStdException();
    void foreignExceptionIsReportedWithANonNullException();
    void throwingHandlerDoesNotStopSiblings_data();
    void throwingHandlerDoesNotStopSiblings();
    void failuresWithoutErrorHandlerAreCounted();
    void throwingErrorHandlerIsCountedAsUnhandled();
    void replaceAndResetErrorHandler();
    void errorHandlerReplacesItself();
    // reentrancy
    void handlerAddsHandler_data();
    void handlerAddsHandler();
    void handlerRemovesItself();
    void handlerRemovesLaterSibling();
    void handlerRemovesEarlierSibling();
    void recursiveNotify_data();
    void recursiveNotify();
    void recursiveNotifyKeepsOuterSnapshotsAlive_data();
    void recursiveNotifyKeepsOuterSnapshotsAlive();
    void handlerNotifiesAnotherRegistry();
    void handlerCallsClear();
    void errorHandlerRemovesFailingHandler();
    // batches
    void batchPublishesAtOnce();
    void batchOrdering_data();
    void batchOrdering();
    void uncommittedBatchChangesNothing();
    void batchIdIsTheBatchsUntilCommit();
    void batchCommitCounts();
    void movedBatchCommits();
    // scale and reclamation
    void manyAdds_data();
    void manyAdds();
    void pendingReclamationDrainsAfterRemoval();
    // the hazard protocol, white-box
    void emptyNotifyWithdrawsStaleAnnouncement();
};

// ===========================================================================
// ids
// ===========================================================================

void tst_Registry::idsAreValidUniqueAndIncreasing()
{
    Reg reg;
    std::vector<HandlerId> ids;
    for (int i = 0; i < 50; ++i)
        ids.push_back(i % 3 == 0 ? reg.add(i, [](const Event &) {}) : reg.add([](const Event &) {}));
    // Documented: the per-registry counter starts at 1.
    QCOMPARE(ids.front().value(), std::uint64_t(1));
    for (std::size_t i = 0; i < ids.size(); ++i) {
        QVERIFY(ids[i].isValid());
        if (i > 0)
            QVERIFY2(ids[i - 1] < ids[i], "ids must increase with every registration");
    }
    QCOMPARE(std::set<HandlerId>(ids.begin(), ids.end()).size(), ids.size());

    // Ids of different registries are unrelated: a fresh registry starts over.
    Reg other;
    QCOMPARE(other.add([](const Event &) {}).value(), std::uint64_t(1));
}

void tst_Registry::idsAreNeverReused()
{
    Reg reg;
    std::set<HandlerId> seen;
    HandlerId last;
    auto addOne = [&](HandlerId id) {
        QVERIFY(id.isValid());
        QVERIFY2(seen.insert(id).second, "an id was handed out twice");
        QVERIFY(last < id);
        last = id;
    };
    for (int round = 0; round < 5; ++round) {
        const HandlerId a = reg.add([](const Event &) {});
        addOne(a);
        const HandlerId b = reg.add(-round, [](const Event &) {});
        addOne(b);
        QVERIFY(reg.remove(a));
        addOne(reg.add([](const Event &) {})); // after remove
        QVERIFY(reg.clear() >= 2);
        addOne(reg.add([](const Event &) {})); // after clear
        {
            sigreg::Guard g = reg.addGuarded([](const Event &) {});
            addOne(g.id());
        }
        auto batch = reg.batch();
        addOne(batch.add([](const Event &) {})); // batch ids come from the same counter
        addOne(batch.add(3, [](const Event &) {}));
        (void)batch.commit();
    }
    // A stale id must not remove anything, even after many registrations.
    const std::size_t before = reg.size();
    QVERIFY(!reg.remove(*seen.begin()));
    QCOMPARE(reg.size(), before);
}

// ===========================================================================
// ordering
// ===========================================================================

void tst_Registry::priorities_data()
{
    QTest::addColumn<QList<int>>("priorities");
    QTest::newRow("empty") << QList<int>{};
    QTest::newRow("single") << QList<int>{7};
    QTest::newRow("all equal") << QList<int>(12, 0);
    QTest::newRow("ascending") << QList<int>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    QTest::newRow("descending") << QList<int>{12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
    QTest::newRow("ties interleaved") << QList<int>{3, 1, 3, 2, 1, 3, 0, 2, 2, 1, 0, 3};
    QTest::newRow("negative") << QList<int>{-1, -5, -1, -3, 0, -5, -2, -1};
    QTest::newRow("extremes") << QList<int>{0, INT_MIN, INT_MAX, -1, INT_MAX, INT_MIN, 1, INT_MAX, 0, INT_MIN};
    // Eight equal ones fill a first snapshot; the rest mix in-place appends
    // with insertions that need a new snapshot.
    QTest::newRow("append then insert") << QList<int>{0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 5, -1, 6, -1, -1, 6};
    QTest::newRow("pseudo-random 300") << pseudoRandomPriorities(300, -6, 6, 12345u);
    QTest::newRow("pseudo-random wide") << pseudoRandomPriorities(100, -1000000, 1000000, 777u);
}

void tst_Registry::priorities()
{
    QFETCH(QList<int>, priorities);
    Reg reg;
    QList<int> log;
    std::vector<HandlerId> ids;
    for (int i = 0; i < priorities.size(); ++i)
        ids.push_back(reg.add(priorities[i], [&log, i](const Event &) { log.push_back(i); }));
    QCOMPARE(reg.size(), std::size_t(priorities.size()));

    const QList<int> expected = expectedOrder(priorities);
    reg.notify(Event{});
    QCOMPARE(log, expected);

    // The order is a property of the registry, not of one notification.
    log.clear();
    reg.notify(Event{});
    QCOMPARE(log, expected);

    // Removing some handlers keeps the relative order of the others.
    QList<int> remaining;
    for (int i : expected) {
        if (i % 3 == 1)
            QVERIFY(reg.remove(ids[std::size_t(i)]));
        else
            remaining.push_back(i);
    }
    log.clear();
    reg.notify(Event{});
    QCOMPARE(log, remaining);
}

void tst_Registry::insertionPosition_data()
{
    QTest::addColumn<QList<int>>("existing");
    QTest::addColumn<int>("priority");
    QTest::addColumn<int>("expectedIndex");
    const QList<int> three{30, 20, 10};
    QTest::newRow("front") << three << 40 << 0;
    QTest::newRow("front, INT_MAX") << three << INT_MAX << 0;
    QTest::newRow("tie with first goes after it") << three << 30 << 1;
    QTest::newRow("middle") << three << 25 << 1;
    QTest::newRow("tie in middle goes after it") << three << 20 << 2;
    QTest::newRow("before last") << three << 15 << 2;
    QTest::newRow("tie with last appends") << three << 10 << 3;
    QTest::newRow("end") << three << 5 << 3;
    QTest::newRow("end, INT_MIN") << three << INT_MIN << 3;
    QTest::newRow("into empty") << QList<int>{} << 0 << 0;
    // Nine existing handlers: beyond a first snapshot of eight.
    const QList<int> nine{9, 8, 7, 6, 5, 4, 3, 2, 1};
    QTest::newRow("nine, front") << nine << 100 << 0;
    QTest::newRow("nine, middle") << nine << 5 << 5;
    QTest::newRow("nine, end") << nine << 0 << 9;
}

void tst_Registry::insertionPosition()
{
    QFETCH(QList<int>, existing);
    QFETCH(int, priority);
    QFETCH(int, expectedIndex);

    Reg reg;
    QList<int> log;
    for (int i = 0; i < existing.size(); ++i)
        reg.add(existing[i], [&log, i](const Event &) { log.push_back(i); });
    const int newcomer = 1000;
    reg.add(priority, [&log](const Event &) { log.push_back(newcomer); });

    QList<int> expected;
    for (int i = 0; i < existing.size(); ++i)
        expected.push_back(i);
    expected.insert(expectedIndex, newcomer);

    reg.notify(Event{});
    QCOMPARE(log, expected);
}

// ===========================================================================
// removal and queries
// ===========================================================================

void tst_Registry::removeReturnsTrueOnce()
{
    Reg reg;
    int aCalls = 0, bCalls = 0;
    const HandlerId a = reg.add([&](const Event &) { ++aCalls; });
    const HandlerId b = reg.add([&](const Event &) { ++bCalls; });

    QVERIFY(reg.remove(a));
    QVERIFY2(!reg.remove(a), "a second remove of the same id must report false");
    QVERIFY(!reg.removeNoWait(a));
    QVERIFY(!reg.contains(a));
    QVERIFY(reg.contains(b));
    QCOMPARE(reg.size(), std::size_t(1));

    reg.notify(Event{});
    QCOMPARE(aCalls, 0);
    QCOMPARE(bCalls, 1);

    QVERIFY(reg.removeNoWait(b));
    QVERIFY(!reg.remove(b));
    QVERIFY(reg.empty());
    reg.notify(Event{});
    QCOMPARE(bCalls, 1);
}

void tst_Registry::removeUnknownId()
{
    Reg reg;
    const HandlerId a = reg.add([](const Event &) {});
    QVERIFY(!reg.remove(HandlerId()));
    QVERIFY(!reg.removeNoWait(HandlerId()));
    QVERIFY(!reg.remove(HandlerId(a.value() + 1))); // not handed out yet
    QVERIFY(!reg.remove(HandlerId(~std::uint64_t(0))));
    QVERIFY(!reg.contains(HandlerId()));

    // An id of another registry means nothing here.
    Reg other;
    const HandlerId foreign = other.add([](const Event &) {});
    (void)other.add([](const Event &) {});
    const HandlerId foreign2 = other.add([](const Event &) {});
    QVERIFY(!reg.remove(foreign2));
    QCOMPARE(reg.size(), std::size_t(1));
    QCOMPARE(foreign, a); // both first ids: same value, different registries
    QVERIFY(other.contains(foreign));
    QVERIFY(reg.remove(a));
    QVERIFY(other.contains(foreign)); // removing from reg left `other` alone
}

void tst_Registry::clearReturnsCountAndEmpties()
{
    Reg reg;
    QCOMPARE(reg.clear(), std::size_t(0));
    int calls = 0;
    std::vector<HandlerId> ids;
    for (int i = 0; i < 7; ++i)
        ids.push_back(reg.add(i % 2, [&](const Event &) { ++calls; }));
    QVERIFY(reg.remove(ids[3]));

    QCOMPARE(reg.clear(), std::size_t(6));
    QVERIFY(reg.empty());
    QCOMPARE(reg.size(), std::size_t(0));
    for (HandlerId id : ids) {
        QVERIFY(!reg.contains(id));
        QVERIFY(!reg.remove(id));
    }
    reg.notify(Event{});
    QCOMPARE(calls, 0);
    QCOMPARE(reg.clear(), std::size_t(0));

    // The registry is fully usable after clear().
    const HandlerId fresh = reg.add([&](const Event &) { ++calls; });
    QVERIFY(fresh > ids.back());
    reg.notify(Event{});
    QCOMPARE(calls, 1);
}

void tst_Registry::containsSizeEmpty()
{
    Reg reg;
    QVERIFY(reg.empty());
    QCOMPARE(reg.size(), std::size_t(0));
    std::vector<HandlerId> ids;
    for (int i = 0; i < 20; ++i) {
        ids.push_back(reg.add(-i, [](const Event &) {}));
        QCOMPARE(reg.size(), std::size_t(i + 1));
        QVERIFY(!reg.empty());
    }
    for (std::size_t i = 0; i < ids.size(); i += 2)
        QVERIFY(reg.remove(ids[i]));
    QCOMPARE(reg.size(), std::size_t(10));
    for (std::size_t i = 0; i < ids.size(); ++i)
        QCOMPARE(reg.contains(ids[i]), i % 2 == 1);
    for (std::size_t i = 1; i < ids.size(); i += 2)
        QVERIFY(reg.removeNoWait(ids[i]));
    QVERIFY(reg.empty());
}

// ===========================================================================
// handlers and events
// ===========================================================================

void tst_Registry::everyHandlerGetsTheSameEventObject()
{
    Reg reg;
    std::vector<const Event *> seen;
    for (int i = 0; i < 10; ++i)
        reg.add(i % 4 - 2, [&seen](const Event &e) { seen.push_back(&e); });
    const Event event{42};
    reg.notify(event);
    QCOMPARE(seen.size(), std::size_t(10));
    for (const Event *p : seen)
        QCOMPARE(p, &event); // by reference, no copy anywhere
}

void tst_Registry::nonCopyableNonMovableEvent()
{
    sigreg::Registry<Pinned> reg;
    std::vector<const Pinned *> seen;
    int sum = 0;
    reg.add([&](const Pinned &p) {
        seen.push_back(&p);
        sum += p.value;
    });
    reg.add(1, [&](const Pinned &p) {
        seen.push_back(&p);
        sum += 10 * p.value;
    });
    const Pinned event(3);
    reg.notify(event);
    QCOMPARE(sum, 33);
    QCOMPARE(seen.size(), std::size_t(2));
    QCOMPARE(seen[0], &event);
    QCOMPARE(seen[1], &event);
    static_assert(noexcept(reg.notify(event)));
}

void tst_Registry::moveOnlyHandler()
{
    Reg reg;
    int observed = 0;
    auto handler = [p = std::make_unique<int>(5), &observed](const Event &e) { observed += *p + e.value; };
    static_assert(!std::is_copy_constructible_v<decltype(handler)>);
    const HandlerId id = reg.add(std::move(handler));
    reg.notify(Event{10});
    QCOMPARE(observed, 15);

    // Also through a guard and a batch.
    sigreg::Guard g = reg.addGuarded([p = std::make_unique<int>(100), &observed](const Event &) { observed += *p; });
    auto batch = reg.batch();
    batch.add([p = std::make_unique<int>(1000), &observed](const Event &) { observed += *p; });
    QCOMPARE(batch.commit().added, std::size_t(1));
    reg.notify(Event{1});
    QCOMPARE(observed, 15 + 6 + 100 + 1000);
    QVERIFY(reg.remove(id));
}

void tst_Registry::mutableLambdaKeepsState()
{
    Reg reg;
    QList<int> log;
    reg.add([n = 0, &log](const Event &) mutable { log.push_back(++n); });
    for (int i = 0; i < 4; ++i)
        reg.notify(Event{});
    QCOMPARE(log, (QList<int>{1, 2, 3, 4})); // one object, state kept across calls

    // A functor with a non-const call operator, passed as an lvalue (copied in).
    struct Counter {
        int n = 0;
        int *out;
        void operator()(const Event &) { *out = ++n; }
    };
    int last = 0;
    Counter c{0, &last};
    reg.add(c);
    reg.notify(Event{});
    reg.notify(Event{});
    QCOMPARE(last, 2);
    QCOMPARE(c.n, 0); // the registry holds its own copy
}

namespace {
int g_freeFunctionCalls = 0;
void freeFunction(const Event &e)
{
    g_freeFunctionCalls += e.value;
}
} // namespace

void tst_Registry::plainFunctionPointerAndStdFunction()
{
    Reg reg;
    g_freeFunctionCalls = 0;
    reg.add(&freeFunction);
    reg.add(freeFunction); // decays to a function pointer
    int viaFunction = 0;
    reg.add(std::function<void(const Event &)>([&](const Event &e) { viaFunction += e.value; }));
    // A return value is ignored.
    reg.add([](const Event &e) { return e.value * 2; });
    reg.notify(Event{3});
    QCOMPARE(g_freeFunctionCalls, 6);
    QCOMPARE(viaFunction, 3);
}

void tst_Registry::emptyHandlersAreRejected()
{
    Reg reg;
    void (*nullFn)(const Event &) = nullptr;
    const std::function<void(const Event &)> emptyFn;

    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, reg.add(nullFn));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, reg.add(5, nullFn));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, reg.add(emptyFn));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, reg.add(std::function<void(const Event &)>()));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, (void)reg.addGuarded(nullFn));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, (void)reg.addGuarded(-1, emptyFn));
    {
        auto batch = reg.batch();
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, batch.add(nullFn));
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, batch.add(2, emptyFn));
        const sigreg::BatchResult r = batch.commit();
        QCOMPARE(r.added, std::size_t(0));
    }
    const std::function<void(const sigreg::HandlerFailure &)> emptySink;
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, reg.setErrorHandler(emptySink));
    void (*nullSink)(const sigreg::HandlerFailure &) = nullptr;
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, reg.setErrorHandler(nullSink));

    // Nothing was registered, and the registry still works.
    QVERIFY(reg.empty());
    int calls = 0;
    reg.add([&](const Event &) { ++calls; });
    reg.notify(Event{});
    QCOMPARE(calls, 1);
}

void tst_Registry::handlerDestroyedExactlyOnce_data()
{
    QTest::addColumn<QString>("how");
    QTest::newRow("remove") << "remove";
    QTest::newRow("removeNoWait") << "removeNoWait";
    QTest::newRow("clear") << "clear";
    QTest::newRow("batch remove") << "batch";
    QTest::newRow("guard") << "guard";
    QTest::newRow("registry destruction") << "destroy";
    QTest::newRow("self-removal") << "self";
}

void tst_Registry::handlerDestroyedExactlyOnce()
{
    QFETCH(QString, how);
    constexpr int kHandlers = 5;
    std::vector<Lifetime> lives(kHandlers);
    {
        auto reg = std::make_unique<Reg>();
        std::vector<HandlerId> ids(kHandlers);
        std::optional<sigreg::Guard> guard;
        for (int i = 0; i < kHandlers; ++i) {
            if (how == "self") {
                // Removes itself during the call; its destructor must wait
                // until the call (and the notify) is over.
                auto body = [&reg, &ids, &lives, i](const Event &) {
                    QVERIFY(reg->remove(ids[std::size_t(i)]));
                    QCOMPARE(lives[std::size_t(i)].destroyed, 0);
                };
                ids[std::size_t(i)] = reg->add(Tracked<decltype(body)>(&lives[std::size_t(i)], body));
            } else {
                ids[std::size_t(i)] = reg->add(i, Tracked<>(&lives[std::size_t(i)]));
            }
        }
        reg->notify(Event{});
        for (const Lifetime &l : lives) {
            QCOMPARE(l.calls, 1);
            if (how != "self") // nothing removed yet
                QCOMPARE(l.destroyed, 0);
        }

        if (how == "remove") {
            for (HandlerId id : ids)
                QVERIFY(reg->remove(id));
        } else if (how == "removeNoWait") {
            for (HandlerId id : ids)
                QVERIFY(reg->removeNoWait(id));
        } else if (how == "clear") {
            QCOMPARE(reg->clear(), std::size_t(kHandlers));
        } else if (how == "batch") {
            auto batch = reg->batch();
            for (HandlerId id : ids)
                batch.remove(id);
            QCOMPARE(batch.commit().removed, std::size_t(kHandlers));
        } else if (how == "guard") {
            for (HandlerId id : ids)
                guard.emplace(reg->guard(id)); // assigning a new guard destroys the previous one
            guard.reset();
        }

        if (how != "destroy") {
            QVERIFY(reg->empty());
            // No notify is running: once nothing awaits reclamation, every
            // removed handler must have been destroyed, exactly once.
            if (how == "self") {
                // Self-removal inside notify could not free the handlers (the
                // running notify still read them); the next removal reclaims.
                const HandlerId extra = reg->add([](const Event &) {});
                QVERIFY(reg->remove(extra));
            }
            QCOMPARE(reg->pendingReclamation(), std::size_t(0));
            for (const Lifetime &l : lives)
                QCOMPARE(l.destroyed, 1);
            reg->notify(Event{});
            for (const Lifetime &l : lives)
                QCOMPARE(l.calls, 1);
        }
        reg.reset();
    }
    for (const Lifetime &l : lives) {
        QCOMPARE(l.destroyed, 1);
        QCOMPARE(l.destroyedWhileRunning, 0);
    }
}

// ===========================================================================
// errors
// ===========================================================================

void tst_Registry::errorHandlerGetsStdException()
{
    Reg reg;
    struct Seen {
        HandlerId id;
        std::string what;
        std::string message;
        int code = -1;
        std::string rethrownWhat;
    };
    std::vector<Seen> seen;
    reg.setErrorHandler([&](const sigreg::HandlerFailure &f) {
        Seen s;
        s.id = f.handler;
        s.what = f.what ? f.what : "<null>";
        s.message = std::string(f.message());
        QVERIFY(f.exception != nullptr);
        try {
            std::rethrow_exception(f.exception);
        } catch (const CustomError &e) {
            s.code = e.code;
            s.rethrownWhat = e.what();
        } catch (const std::runtime_error &e) {
            s.rethrownWhat = e.what();
        } catch (...) {
            s.rethrownWhat = "<wrong type>";
        }
        seen.push_back(s);
    });
    reg.add([](const Event &) {}); // a quiet sibling: never reported
    const HandlerId runtimeId = reg.add([](const Event &e) {
        throw std::runtime_error("runtime failure " + std::to_string(e.value));
    });
    const HandlerId customId = reg.add(-1, [](const Event &e) { throw CustomError(e.value * 2); });

    reg.notify(Event{21});
    QCOMPARE(seen.size(), std::size_t(2));
    QCOMPARE(seen[0].id, runtimeId);
    QCOMPARE(seen[0].what, std::string("runtime failure 21"));
    QCOMPARE(seen[0].message, seen[0].what);
    QCOMPARE(seen[0].rethrownWhat, std::string("runtime failure 21"));
    QCOMPARE(seen[1].id, customId);
    QCOMPARE(seen[1].code, 42); // rethrown as the very same type, payload intact
    QCOMPARE(seen[1].what, std::string("custom error 42"));
    QCOMPARE(seen[1].rethrownWhat, seen[1].what);
    QCOMPARE(reg.failureCount(), std::uint64_t(2));
    QCOMPARE(reg.unhandledFailureCount(), std::uint64_t(0));
}

#ifdef SIGREG_TEST_FOREIGN_EXCEPTIONS
namespace {
/// Throws an exception that is not a C++ one (as code in another language
/// would, through the same unwinder): catch (...) catches it, and
/// std::current_exception() cannot capture it.
[[noreturn]] void throwForeignException()
{
    auto *e = new _Unwind_Exception{};
    e->exception_class = 0x5349475245470000ull; // "SIGREG\0\0", not C++'s "GNUCC++\0"
    e->exception_cleanup = [](_Unwind_Reason_Code, _Unwind_Exception *x) { delete x; };
    _Unwind_RaiseException(e);
    std::abort(); // only if nothing caught it
}
} // namespace
#endif

void tst_Registry::foreignExceptionIsReportedWithANonNullException()
{
#ifndef SIGREG_TEST_FOREIGN_EXCEPTIONS
    QSKIP("needs libstdc++ and <unwind.h>");
#else
    // HandlerFailure::exception is documented as never null, also for an
    // exception std::current_exception() returns null for.
    Reg reg;
    std::vector<sigreg::HandlerFailure> failures;
    reg.setErrorHandler([&](const sigreg::HandlerFailure &f) { failures.push_back(f); });
    const HandlerId id = reg.add(1, [](const Event &) { throwForeignException(); });
    int siblingCalls = 0;
    reg.add([&](const Event &) { ++siblingCalls; });
    reg.notify(Event{});
    QCOMPARE(siblingCalls, 1);
    QCOMPARE(int(failures.size()), 1);
    QCOMPARE(failures[0].handler, id);
    QVERIFY(failures[0].what == nullptr);
    QVERIFY2(failures[0].exception, "HandlerFailure::exception is null");
    std::string text;
    try {
        std::rethrow_exception(failures[0].exception);
    } catch (const std::runtime_error &e) {
        text = e.what();
    } catch (...) {
    }
    QVERIFY2(text.find("not a C++ exception") != std::string::npos, text.c_str());
    QCOMPARE(reg.failureCount(), std::uint64_t(1));
#endif
}

void tst_Registry::errorHandlerGetsNonStdException()
{
    Reg reg;
    int reports = 0;
    HandlerId reported;
    const char *what = "not null";
    std::string message;
    int thrown = 0;
    reg.setErrorHandler([&](const sigreg::HandlerFailure &f) {
        ++reports;
        reported = f.handler;
        what = f.what;
        message = std::string(f.message());
        try {
            std::rethrow_exception(f.exception);
        } catch (int v) {
            thrown = v;
        } catch (...) {
        }
    });
    const HandlerId id = reg.add([](const Event &) { throw 42; });
    reg.notify(Event{});
    QCOMPARE(reports, 1);
    QCOMPARE(reported, id);
    QVERIFY(what == nullptr); // not a std::exception: no what()
    QVERIFY(!message.empty());
    QCOMPARE(thrown, 42);
    QCOMPARE(reg.failureCount(), std::uint64_t(1));
    QCOMPARE(reg.unhandledFailureCount(), std::uint64_t(0));
}

void tst_Registry::throwingHandlerDoesNotStopSiblings_data()
{
    QTest::addColumn<int>("throwingIndex");
    QTest::addColumn<bool>("withErrorHandler");
    for (bool withSink : {false, true}) {
        const char *suffix = withSink ? ", error handler" : ", no error handler";
        QTest::addRow("first%s", suffix) << 0 << withSink;
        QTest::addRow("middle%s", suffix) << 2 << withSink;
        QTest::addRow("last%s", suffix) << 4 << withSink;
    }
}

void tst_Registry::throwingHandlerDoesNotStopSiblings()
{
    QFETCH(int, throwingIndex);
    QFETCH(bool, withErrorHandler);
    Reg reg;
    QList<int> log;
    int reports = 0;
    if (withErrorHandler)
        reg.setErrorHandler([&](const sigreg::HandlerFailure &) { ++reports; });
    for (int i = 0; i < 5; ++i) {
        reg.add([&log, i, throwingIndex](const Event &) {
            log.push_back(i);
            if (i == throwingIndex)
                throw std::runtime_error("boom");
        });
    }
    constexpr int kRounds = 3;
    for (int r = 0; r < kRounds; ++r)
        reg.notify(Event{});
    QList<int> expected;
    for (int r = 0; r < kRounds; ++r)
        expected << 0 << 1 << 2 << 3 << 4;
    QCOMPARE(log, expected);
    QCOMPARE(reg.failureCount(), std::uint64_t(kRounds));
    QCOMPARE(reports, withErrorHandler ? kRounds : 0);
    QCOMPARE(reg.unhandledFailureCount(), std::uint64_t(withErrorHandler ? 0 : kRounds));
}

void tst_Registry::failuresWithoutErrorHandlerAreCounted()
{
    Reg reg;
    QCOMPARE(reg.failureCount(), std::uint64_t(0));
    QCOMPARE(reg.unhandledFailureCount(), std::uint64_t(0));
    reg.add([](const Event &e) {
        if (e.value % 2)
            throw std::runtime_error("odd");
    });
    reg.add([](const Event &) { throw 1.5; });
    for (int i = 0; i < 10; ++i)
        reg.notify(Event{i});
    // 5 odd values + 10 non-std throws.
    QCOMPARE(reg.failureCount(), std::uint64_t(15));
    QCOMPARE(reg.unhandledFailureCount(), std::uint64_t(15));
}

void tst_Registry::throwingErrorHandlerIsCountedAsUnhandled()
{
    Reg reg;
    int sinkCalls = 0;
    reg.setErrorHandler([&](const sigreg::HandlerFailure &) {
        ++sinkCalls;
        throw std::logic_error("the error handler fails too");
    });
    QList<int> log;
    reg.add([&](const Event &) { log << 1; });
    reg.add([&](const Event &) {
        log << 2;
        throw std::runtime_error("first failure");
    });
    reg.add([&](const Event &) { log << 3; });
    // notify() is noexcept: an escaping exception would terminate the test.
    reg.notify(Event{});
    reg.notify(Event{});
    QCOMPARE(log, (QList<int>{1, 2, 3, 1, 2, 3}));
    QCOMPARE(sinkCalls, 2);
    QCOMPARE(reg.failureCount(), std::uint64_t(2));
    QCOMPARE(reg.unhandledFailureCount(), std::uint64_t(2));
}

void tst_Registry::replaceAndResetErrorHandler()
{
    Lifetime firstLife, secondLife;
    {
        Reg reg;
        std::vector<int> firstIds, secondIds;
        struct Sink {
            Lifetime *life;
            std::vector<int> *out;
            Sink(Lifetime *l, std::vector<int> *o) : life(l), out(o) {}
            Sink(Sink &&o) noexcept : life(std::exchange(o.life, nullptr)), out(o.out) {}
            ~Sink()
            {
                if (life)
                    ++life->destroyed;
            }
            void operator()(const sigreg::HandlerFailure &f) const
            {
                ++life->calls;
                out->push_back(static_cast<int>(f.handler.value()));
            }
        };
        const HandlerId bad = reg.add([](const Event &) { throw std::runtime_error("x"); });

        reg.setErrorHandler(Sink(&firstLife, &firstIds));
        reg.notify(Event{});
        reg.setErrorHandler(Sink(&secondLife, &secondIds));
        // The replaced handler is no longer reachable by any notify: it is
        // destroyed (exactly once) by the replacement.
        QCOMPARE(firstLife.destroyed, 1);
        reg.notify(Event{});
        reg.notify(Event{});
        QCOMPARE(firstIds, std::vector<int>{int(bad.value())});
        QCOMPARE(secondIds, (std::vector<int>{int(bad.value()), int(bad.value())}));
        QCOMPARE(reg.unhandledFailureCount(), std::uint64_t(0));

        reg.resetErrorHandler();
        QCOMPARE(secondLife.destroyed, 1);
        reg.notify(Event{});
        QCOMPARE(secondIds.size(), std::size_t(2));
        QCOMPARE(reg.failureCount(), std::uint64_t(4));
        QCOMPARE(reg.unhandledFailureCount(), std::uint64_t(1));
        reg.resetErrorHandler(); // resetting twice is harmless

        // A new one after reset works again; the registry destroys it.
        reg.setErrorHandler(Sink(&secondLife, &secondIds));
        reg.notify(Event{});
        QCOMPARE(secondIds.size(), std::size_t(3));
        QCOMPARE(secondLife.destroyed, 1);
    }
    QCOMPARE(firstLife.destroyed, 1);
    QCOMPARE(secondLife.destroyed, 2); // two distinct sink objects, one destruction each
}

void tst_Registry::errorHandlerReplacesItself()
{
    // The running error handler installs its successor: it must stay alive
    // until it returns (it is read through a hazard slot of its own).
    Reg reg;
    int firstCalls = 0, secondCalls = 0;
    auto alive = std::make_shared<int>(7);
    std::weak_ptr<int> watch = alive;
    reg.setErrorHandler([&, alive = std::move(alive)](const sigreg::HandlerFailure &) {
        ++firstCalls;
        reg.setErrorHandler([&](const sigreg::HandlerFailure &) { ++secondCalls; });
        // Still running: the captured state must not have been destroyed.
        QCOMPARE(*alive, 7);
    });
    reg.add([](const Event &) { throw std::runtime_error("x"); });
    reg.notify(Event{});
    reg.notify(Event{});
    QCOMPARE(firstCalls, 1);
    QCOMPARE(secondCalls, 1);
    QCOMPARE(reg.unhandledFailureCount(), std::uint64_t(0));
    // Once the next writer reclaims, the first sink is gone.
    reg.resetErrorHandler();
    QCOMPARE(reg.pendingReclamation(), std::size_t(0));
    QVERIFY(watch.expired());
}

// ===========================================================================
// reentrancy
// ===========================================================================

void tst_Registry::handlerAddsHandler_data()
{
    QTest::addColumn<int>("existing");
    QTest::addColumn<int>("newPriority");
    QTest::addColumn<bool>("floor");
    // The equal/lower rows append in place to the snapshot being read; the
    // higher rows need a new snapshot. Existing counts around eight cover
    // both a snapshot with room and a full one. With a floor (a handler of a
    // lower priority registered first), the handlers of priority 0 went in
    // front of it, so the snapshot keeps free cells before its entries too:
    // the higher rows prepend in place, the others need a new snapshot.
    for (bool floor : {false, true}) {
        for (int existing : {1, 3, 7, 8, 9, 16}) {
            const char *f = floor ? ", floor" : "";
            QTest::addRow("%d existing, lower%s", existing, f) << existing << -1 << floor;
            QTest::addRow("%d existing, equal%s", existing, f) << existing << 0 << floor;
            QTest::addRow("%d existing, higher%s", existing, f) << existing << 1 << floor;
        }
    }
}

void tst_Registry::handlerAddsHandler()
{
    QFETCH(int, existing);
    QFETCH(int, newPriority);
    QFETCH(bool, floor);
    Reg reg;
    QList<int> log;
    if (floor)
        reg.add(-10, [&](const Event &) { log << -10; });
    bool added = false;
    HandlerId newId;
    std::size_t retiredByTheAdd = 0;
    // The first handler adds the newcomer during the first notify.
    reg.add([&](const Event &) {
        log << 0;
        if (!added) {
            added = true;
            const std::size_t before = reg.pendingReclamation();
            newId = reg.add(newPriority, [&](const Event &) { log << 100; });
            retiredByTheAdd = reg.pendingReclamation() - before;
        }
    });
    for (int i = 1; i < existing; ++i)
        reg.add([&log, i](const Event &) { log << i; });

    QList<int> plain;
    for (int i = 0; i < existing; ++i)
        plain << i;
    if (floor)
        plain << -10;

    reg.notify(Event{});
    QCOMPARE(log, plain); // not called by the notify that registered it
    QVERIFY(reg.contains(newId));
    QCOMPARE(reg.size(), std::size_t(existing + 1 + (floor ? 1 : 0)));
    if (floor && newPriority > 0)
        QCOMPARE(retiredByTheAdd, std::size_t(0)); // prepended in place: no snapshot replaced

    log.clear();
    reg.notify(Event{});
    QList<int> expected = plain;
    if (newPriority > 0)
        expected.prepend(100);
    else
        expected.insert(existing, 100); // after the 0s, before the floor
    QCOMPARE(log, expected); // called from the next notify on, in its place
}

void tst_Registry::handlerRemovesItself()
{
    Reg reg;
    QList<int> log;
    HandlerId self;
    std::optional<bool> removed;
    reg.add([&](const Event &) { log << 0; });
    self = reg.add([&](const Event &) {
        log << 1;
        removed = reg.remove(self); // must neither deadlock nor wait for itself
        log << 11;
    });
    reg.add([&](const Event &) { log << 2; });

    reg.notify(Event{});
    QVERIFY(removed.has_value());
    QVERIFY(*removed);
    QCOMPARE(log, (QList<int>{0, 1, 11, 2})); // the call completed normally, siblings ran
    QVERIFY(!reg.contains(self));
    QCOMPARE(reg.size(), std::size_t(2));

    log.clear();
    reg.notify(Event{});
    QCOMPARE(log, (QList<int>{0, 2}));

    // Same with removeNoWait().
    HandlerId other;
    other = reg.add([&](const Event &) {
        log << 3;
        QVERIFY(reg.removeNoWait(other));
    });
    log.clear();
    reg.notify(Event{});
    reg.notify(Event{});
    QCOMPARE(log, (QList<int>{0, 2, 3, 0, 2}));
}

void tst_Registry::handlerRemovesLaterSibling()
{
    Lifetime laterLife;
    Reg reg;
    QList<int> log;
    HandlerId later;
    bool result = false;
    reg.add(10, [&](const Event &) {
        log << 0;
        if (reg.contains(later))
            result = reg.remove(later);
        // The sibling has not run; it must not be destroyed under our feet
        // either: the running notify still lists it.
        QCOMPARE(laterLife.destroyed, 0);
    });
    reg.add(5, [&](const Event &) { log << 1; });
    later = reg.add(0, Tracked<>(&laterLife));
    reg.add(-5, [&](const Event &) { log << 3; });

    reg.notify(Event{});
    QVERIFY(result);
    QCOMPARE(log, (QList<int>{0, 1, 3}));
    QCOMPARE(laterLife.calls, 0); // skipped in the current notify already
    reg.notify(Event{});
    QCOMPARE(laterLife.calls, 0);
    QCOMPARE(reg.size(), std::size_t(3));
}

void tst_Registry::handlerRemovesEarlierSibling()
{
    Reg reg;
    QList<int> log;
    HandlerId earlier = reg.add(1, [&](const Event &) { log << 0; });
    reg.add([&](const Event &) {
        log << 1;
        if (earlier.isValid()) {
            QVERIFY(reg.remove(earlier));
            earlier = HandlerId();
        }
    });
    reg.notify(Event{});
    reg.notify(Event{});
    QCOMPARE(log, (QList<int>{0, 1, 1}));
}

void tst_Registry::recursiveNotify_data()
{
    QTest::addColumn<int>("depth");
    // Eight nesting levels live inline in a thread's hazard record; deeper
    // ones use chained chunks of 32 levels.
    for (int d : {1, 7, 8, 9, 20, 41, 70})
        QTest::addRow("depth %d", d) << d;
}

void tst_Registry::recursiveNotify()
{
    QFETCH(int, depth);
    Reg reg;
    QList<int> before, after;
    int maxSeen = 0;
    reg.add(1, [&](const Event &e) { before << e.value; });
    reg.add([&](const Event &e) {
        maxSeen = std::max(maxSeen, e.value);
        if (e.value + 1 < depth)
            reg.notify(Event{e.value + 1});
    });
    reg.add(-1, [&](const Event &e) { after << e.value; });
    reg.notify(Event{0});

    QCOMPARE(maxSeen, depth - 1);
    QList<int> expectedBefore, expectedAfter;
    for (int d = 0; d < depth; ++d)
        expectedBefore << d;
    for (int d = depth - 1; d >= 0; --d)
        expectedAfter << d; // the innermost notify finishes first
    QCOMPARE(before, expectedBefore);
    QCOMPARE(after, expectedAfter);

    // The thread's record is usable afterwards (depth restored).
    before.clear();
    after.clear();
    reg.notify(Event{depth - 1});
    QCOMPARE(before, (QList<int>{depth - 1}));
    QCOMPARE(after, (QList<int>{depth - 1}));
}

void tst_Registry::recursiveNotifyKeepsOuterSnapshotsAlive_data()
{
    QTest::addColumn<int>("firstLevel");
    QTest::newRow("from the first nesting level") << 0;
    // The first levels are taken by notifications of another registry, so
    // every snapshot of the registry under test is protected only by hazard
    // slots in an overflow chunk of the thread's record.
    QTest::newRow("beyond the inline levels") << int(sigreg::detail::ThreadRecord::kInlineLevels);
}

void tst_Registry::recursiveNotifyKeepsOuterSnapshotsAlive()
{
    // Every nesting level reads a different snapshot: before recursing, each
    // level adds a handler in front (forcing a new snapshot and retiring the
    // one it is reading). At the bottom the sibling that every level still
    // has to visit is removed, which runs reclamation. Each outer level then
    // resumes on its own, retired snapshot and must find it (and the removed
    // sibling's node) intact. If reclamation missed a hazard slot, the
    // sibling would be destroyed while those levels still list it (checked
    // below) and the snapshots would be freed under them (ASan).
    QFETCH(int, firstLevel);
    constexpr int kDepth = 20;
    Lifetime siblingLife;
    HandlerId sibling;
    int fronts = 0;
    int resumed = 0;
    int destroyedTooEarly = 0;
    bool removed = false;
    Reg outer;
    Reg reg;
    reg.add([&](const Event &e) {
        if (e.value + 1 < kDepth) {
            reg.add(1000 + e.value, [&fronts](const Event &) { ++fronts; });
            reg.notify(Event{e.value + 1});
        } else {
            removed = reg.remove(sibling);
            // Force further reclamation passes while all levels are live.
            for (int i = 0; i < 6; ++i)
                reg.remove(reg.add(2000 + i, [](const Event &) {}));
        }
        if (siblingLife.destroyed != 0)
            ++destroyedTooEarly;
        ++resumed;
    });
    sibling = reg.add(-1, Tracked<>(&siblingLife));
    outer.add([&](const Event &e) {
        if (e.value + 1 < firstLevel)
            outer.notify(Event{e.value + 1});
        else
            reg.notify(Event{0});
    });

    if (firstLevel == 0)
        reg.notify(Event{0});
    else
        outer.notify(Event{0});
    QVERIFY(removed);
    QCOMPARE(destroyedTooEarly, 0);
    QCOMPARE(resumed, kDepth);
    QCOMPARE(siblingLife.calls, 0); // removed before any level reached it
    QCOMPARE(siblingLife.destroyedWhileRunning, 0);
    // Level d sees the handlers added by levels 0..d-1: 0+1+...+(kDepth-1).
    QCOMPARE(fronts, kDepth * (kDepth - 1) / 2);

    // Nothing reads the old snapshots any more: the next removal frees all.
    QVERIFY(reg.remove(reg.add([](const Event &) {})));
    QCOMPARE(reg.pendingReclamation(), std::size_t(0));
    QCOMPARE(siblingLife.destroyed, 1);
}

void tst_Registry::handlerNotifiesAnotherRegistry()
{
    Reg first;
    sigreg::Registry<std::string> second;
    QList<int> log;
    std::string received;
    second.add([&](const std::string &s) {
        received = s;
        log << 10;
        first.notify(Event{-1}); // and back, bounded by the event value
    });
    first.add([&](const Event &e) {
        log << e.value;
        if (e.value >= 0)
            second.notify(std::string("from first"));
    });
    first.add(-1, [&](const Event &e) { log << 100 + e.value; });
    first.notify(Event{1});
    QCOMPARE(received, std::string("from first"));
    QCOMPARE(log, (QList<int>{1, 10, -1, 99, 101}));
}

void tst_Registry::handlerCallsClear()
{
    std::vector<Lifetime> lives(3);
    Reg reg;
    QList<int> log;
    std::optional<std::size_t> cleared;
    reg.add(2, Tracked<>(&lives[0]));
    reg.add(1, [&](const Event &) {
        log << 1;
        cleared = reg.clear();
        log << 11;
    });
    reg.add(0, Tracked<>(&lives[1]));
    reg.add(0, Tracked<>(&lives[2]));

    reg.notify(Event{});
    QCOMPARE(cleared.value_or(0), std::size_t(4)); // itself included
    QCOMPARE(log, (QList<int>{1, 11}));
    QCOMPARE(lives[0].calls, 1);
    QCOMPARE(lives[1].calls, 0); // later siblings skipped
    QCOMPARE(lives[2].calls, 0);
    QVERIFY(reg.empty());
    for (const Lifetime &l : lives)
        QCOMPARE(l.destroyedWhileRunning, 0);

    // Usable again; the next removal reclaims everything the notify held.
    int calls = 0;
    const HandlerId id = reg.add([&](const Event &) { ++calls; });
    reg.notify(Event{});
    QCOMPARE(calls, 1);
    QVERIFY(reg.remove(id));
    QCOMPARE(reg.pendingReclamation(), std::size_t(0));
    for (const Lifetime &l : lives)
        QCOMPARE(l.destroyed, 1);
}

void tst_Registry::errorHandlerRemovesFailingHandler()
{
    // A common pattern: the error handler unregisters the culprit.
    Reg reg;
    int failures = 0;
    reg.setErrorHandler([&](const sigreg::HandlerFailure &f) {
        ++failures;
        QVERIFY(reg.remove(f.handler));
    });
    QList<int> log;
    reg.add([&](const Event &) { log << 0; });
    reg.add([&](const Event &) {
        log << 1;
        throw std::runtime_error("once");
    });
    reg.add([&](const Event &) { log << 2; });
    reg.notify(Event{});
    reg.notify(Event{});
    QCOMPARE(log, (QList<int>{0, 1, 2, 0, 2}));
    QCOMPARE(failures, 1);
    QCOMPARE(reg.size(), std::size_t(2));
}

// ===========================================================================
// batches
// ===========================================================================

void tst_Registry::batchPublishesAtOnce()
{
    Reg reg;
    QList<int> log;
    const HandlerId a = reg.add([&](const Event &) { log << 0; });
    const HandlerId b = reg.add([&](const Event &) { log << 1; });
    const HandlerId c = reg.add([&](const Event &) { log << 2; });

    auto batch = reg.batch();
    const HandlerId x = batch.add([&](const Event &) { log << 10; });
    const HandlerId y = batch.add(5, [&](const Event &) { log << 11; });
    const HandlerId z = batch.add(-5, [&](const Event &) { log << 12; });
    batch.remove(a);
    batch.remove(c);
    QVERIFY(x.isValid() && y.isValid() && z.isValid());
    QVERIFY(c < x && x < y && y < z); // ids assigned at batch.add()

    // Before commit nothing is visible.
    QCOMPARE(reg.size(), std::size_t(3));
    QVERIFY(!reg.contains(x));
    QVERIFY(reg.contains(a));
    reg.notify(Event{});
    QCOMPARE(log, (QList<int>{0, 1, 2}));

    // The batch is visible as a whole after commit, while a notify is in the
    // middle of iterating: that notify still sees the old set entirely.
    log.clear();
    bool committed = false;
    sigreg::BatchResult result;
    const HandlerId trigger = reg.add(100, [&](const Event &) {
        if (!committed) {
            committed = true;
            result = batch.commit();
        }
    });
    reg.notify(Event{});
    QCOMPARE(result.added, std::size_t(3));
    QCOMPARE(result.removed, std::size_t(2));
    // a and c were removed during this notify (skipped); b kept; the adds wait
    // for the next notify.
    QCOMPARE(log, (QList<int>{1}));
    QVERIFY(reg.remove(trigger));

    log.clear();
    reg.notify(Event{});
    QCOMPARE(log, (QList<int>{11, 1, 10, 12}));
    QCOMPARE(reg.size(), std::size_t(4));
    QVERIFY(!reg.contains(a) && reg.contains(b) && !reg.contains(c));
    QVERIFY(reg.contains(x) && reg.contains(y) && reg.contains(z));
}

void tst_Registry::batchOrdering_data()
{
    QTest::addColumn<QList<int>>("existing");
    QTest::addColumn<QList<int>>("batched");
    QTest::newRow("into empty") << QList<int>{} << QList<int>{0, 2, 1, 2, 0};
    QTest::newRow("all equal") << QList<int>{0, 0, 0} << QList<int>{0, 0};
    QTest::newRow("ties with existing")
        << QList<int>{5, 3, 3, 1} << QList<int>{3, 5, 1, 3, 0, 6};
    QTest::newRow("extremes") << QList<int>{0, INT_MAX, INT_MIN}
                              << QList<int>{INT_MIN, INT_MAX, 0, INT_MAX, -1};
    QTest::newRow("pseudo-random")
        << pseudoRandomPriorities(40, -4, 4, 99u) << pseudoRandomPriorities(25, -4, 4, 7u);
}

void tst_Registry::batchOrdering()
{
    QFETCH(QList<int>, existing);
    QFETCH(QList<int>, batched);
    Reg reg;
    QList<int> log;
    for (int i = 0; i < existing.size(); ++i)
        reg.add(existing[i], [&log, i](const Event &) { log << i; });
    const int offset = 1000;
    auto batch = reg.batch();
    for (int i = 0; i < batched.size(); ++i)
        batch.add(batched[i], [&log, i](const Event &) { log << offset + i; });
    const sigreg::BatchResult r = batch.commit();
    QCOMPARE(r.added, std::size_t(batched.size()));
    QCOMPARE(r.removed, std::size_t(0));

    // Expected: registration at commit, i.e. all existing handlers come before
    // the batched ones at equal priority, and batched ones keep batch order.
    // One stable sort of the concatenation gives exactly that.
    QList<int> all = existing + batched;
    QList<int> order = expectedOrder(all);
    for (int &i : order)
        if (i >= existing.size())
            i = offset + (i - int(existing.size()));
    reg.notify(Event{});
    QCOMPARE(log, order);
}

void tst_Registry::batchIdIsTheBatchsUntilCommit()
{
    // As documented on Batch: before commit(), the registry does not know an
    // id the batch added; a Registry::remove() of it is not remembered, and
    // commit() registers the handler all the same.
    Reg reg;
    int calls = 0;
    auto batch = reg.batch();
    const HandlerId id = batch.add([&](const Event &) { ++calls; });
    QVERIFY(!reg.contains(id));
    QVERIFY(!reg.remove(id));
    QCOMPARE(batch.commit().added, std::size_t(1));
    QVERIFY(reg.contains(id));
    reg.notify(Event{});
    QCOMPARE(calls, 1);
    QVERIFY(reg.remove(id)); // the registry's from now on
}

void tst_Registry::uncommittedBatchChangesNothing()
{
    std::vector<Lifetime> lives(4);
    Reg reg;
    int kept = 0;
    const HandlerId existing = reg.add([&](const Event &) { ++kept; });
    HandlerId lastBatchId;
    {
        auto batch = reg.batch();
        for (int i = 0; i < 4; ++i)
            lastBatchId = batch.add(i, Tracked<>(&lives[std::size_t(i)]));
        batch.remove(existing);
        QCOMPARE(reg.size(), std::size_t(1));
    } // dropped without commit()
    for (const Lifetime &l : lives) {
        QCOMPARE(l.destroyed, 1); // the batch owned them
        QCOMPARE(l.calls, 0);
    }
    QVERIFY(reg.contains(existing));
    QVERIFY(!reg.contains(lastBatchId));
    QCOMPARE(reg.size(), std::size_t(1));
    reg.notify(Event{});
    QCOMPARE(kept, 1);
    // The reserved ids are still never reused.
    QVERIFY(reg.add([](const Event &) {}) > lastBatchId);
}

void tst_Registry::batchCommitCounts()
{
    Reg reg;
    std::vector<HandlerId> ids;
    for (int i = 0; i < 6; ++i)
        ids.push_back(reg.add([](const Event &) {}));
    QVERIFY(reg.remove(ids[5]));

    auto batch = reg.batch();
    batch.remove(ids[0]);
    batch.remove(ids[0]);              // duplicate: counted once
    batch.remove(ids[1]);
    batch.remove(ids[5]);              // already removed: ignored
    batch.remove(HandlerId());         // invalid: ignored
    batch.remove(HandlerId(1u << 30)); // unknown: ignored
    int ownCalls = 0;
    auto ownLife = std::make_shared<int>(0);
    const HandlerId own = batch.add([&ownCalls, ownLife](const Event &) { ++ownCalls; });
    const HandlerId kept = batch.add([](const Event &) {});
    QCOMPARE(ownLife.use_count(), 2L);
    batch.remove(own); // added by this batch: taken out of it, destroyed now
    QCOMPARE(ownLife.use_count(), 1L);

    sigreg::BatchResult r = batch.commit();
    QCOMPARE(r.added, std::size_t(1));
    QCOMPARE(r.removed, std::size_t(2));
    QCOMPARE(reg.size(), std::size_t(6 - 1 - 2 + 1));
    QVERIFY(!reg.contains(own));
    QVERIFY(reg.contains(kept));
    QVERIFY(!reg.contains(ids[0]) && !reg.contains(ids[1]));
    reg.notify(Event{});
    QCOMPARE(ownCalls, 0);

    // The batch is empty after commit and can be reused.
    r = batch.commit();
    QCOMPARE(r.added, std::size_t(0));
    QCOMPARE(r.removed, std::size_t(0));
    batch.remove(kept);
    batch.add(3, [](const Event &) {});
    r = batch.commit();
    QCOMPARE(r.added, std::size_t(1));
    QCOMPARE(r.removed, std::size_t(1));
    QCOMPARE(reg.size(), std::size_t(4));
}

void tst_Registry::movedBatchCommits()
{
    Reg reg;
    int calls = 0;
    auto first = reg.batch();
    first.add([&](const Event &) { ++calls; });
    auto second = std::move(first); // the moved-from batch owns nothing any more
    QCOMPARE(second.commit().added, std::size_t(1));
    QCOMPARE(first.commit().added, std::size_t(0)); // NOLINT(bugprone-use-after-move): documented empty
    reg.notify(Event{});
    QCOMPARE(calls, 1);
    QCOMPARE(reg.size(), std::size_t(1));
}

// ===========================================================================
// scale and reclamation
// ===========================================================================

void tst_Registry::manyAdds_data()
{
    QTest::addColumn<QString>("pattern");
    QTest::newRow("equal") << "equal";           // in-place appends
    QTest::newRow("descending") << "descending"; // in-place appends
    QTest::newRow("ascending") << "ascending";   // every add inserts at the front
    QTest::newRow("sawtooth") << "sawtooth";
}

void tst_Registry::manyAdds()
{
    // Registration one by one at scale: only correctness is asserted (size,
    // ids, order), never time.
    QFETCH(QString, pattern);
    constexpr int kCount = 10000;
    QList<int> priorities;
    priorities.reserve(kCount);
    for (int i = 0; i < kCount; ++i) {
        if (pattern == "equal")
            priorities << 0;
        else if (pattern == "descending")
            priorities << -i;
        else if (pattern == "ascending")
            priorities << i;
        else
            priorities << i % 37 - 18;
    }
    Reg reg;
    QList<int> log;
    log.reserve(kCount);
    HandlerId last;
    for (int i = 0; i < kCount; ++i) {
        const HandlerId id = reg.add(priorities[i], [&log, i](const Event &) { log << i; });
        QVERIFY(last < id);
        last = id;
    }
    QCOMPARE(reg.size(), std::size_t(kCount));
    reg.notify(Event{});
    QCOMPARE(log, expectedOrder(priorities));
    QCOMPARE(reg.clear(), std::size_t(kCount));
    QCOMPARE(reg.pendingReclamation(), std::size_t(0));
}

void tst_Registry::pendingReclamationDrainsAfterRemoval()
{
    Lifetime victimLife;
    Reg reg;
    QCOMPARE(reg.pendingReclamation(), std::size_t(0));
    std::vector<HandlerId> ids;
    for (int i = 0; i < 12; ++i)
        ids.push_back(reg.add(i, [](const Event &) {})); // ascending: new snapshots
    reg.notify(Event{});
    // Retired snapshots never pile up beyond the documented bound.
    QVERIFY(reg.pendingReclamation() < 4);

    // While a notify runs, what it reads cannot be reclaimed.
    std::size_t pendingInside = 0;
    const HandlerId victim = reg.add(-100, Tracked<>(&victimLife));
    const HandlerId remover = reg.add(-50, [&](const Event &) {
        QVERIFY(reg.remove(victim));
        pendingInside = reg.pendingReclamation();
    });
    reg.notify(Event{});
    QVERIFY2(pendingInside > 0, "the snapshot being read and the removed node must be kept");
    QCOMPARE(victimLife.destroyed, 0);
    QCOMPARE(victimLife.calls, 0);

    // No notify running: after the final removal nothing is left over.
    QVERIFY(reg.remove(remover));
    QCOMPARE(reg.pendingReclamation(), std::size_t(0));
    QCOMPARE(victimLife.destroyed, 1);
    for (HandlerId id : ids)
        QVERIFY(reg.removeNoWait(id));
    QCOMPARE(reg.pendingReclamation(), std::size_t(0));
    QVERIFY(reg.empty());
}

// ===========================================================================
// the hazard protocol, white-box
// ===========================================================================

void tst_Registry::emptyNotifyWithdrawsStaleAnnouncement()
{
    // Announcements are not cleared when a read ends; a read that calls no
    // handler must clear the one an earlier read left, or a remover of that
    // handler waits while this thread keeps reading empty registries (the
    // bus does that: receivers, then an empty handler list, on every emit).
    Reg withHandler;
    Reg empty;
    const sigreg::detail::Node *seen = nullptr;
    withHandler.add([&](const Event &) {
        seen = sigreg::detail::tl_record->levels[0].current.load(std::memory_order_relaxed);
    });
    withHandler.notify(Event{});
    QVERIFY(seen != nullptr); // the handler was announced on level 0 while it ran
    QCOMPARE(sigreg::detail::tl_record->levels[0].current.load(), seen); // and still is: not cleared
    empty.notify(Event{});
    QCOMPARE(sigreg::detail::tl_record->levels[0].current.load(), nullptr);
}

QTEST_GUILESS_MAIN(tst_Registry)
#include "tst_registry.moc"
