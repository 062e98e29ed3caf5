// SPDX-License-Identifier: MIT
// Qt Test suite for sigreg::Guard: RAII removal, release/reset, moves, empty
// guards, guards that outlive their registry, and guards destroyed by the
// handler they own. Races between guards and registry destruction are in
// tst_concurrency.cpp.
#include <sigreg/registry.h>

#include <QtTest/QTest>

#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

struct Event {
    int value = 0;
};
using Reg = sigreg::Registry<Event>;
using sigreg::Guard;
using sigreg::HandlerId;

static_assert(!std::is_copy_constructible_v<Guard> && !std::is_copy_assignable_v<Guard>);
static_assert(std::is_nothrow_move_constructible_v<Guard> && std::is_nothrow_move_assignable_v<Guard>);
static_assert(std::is_nothrow_destructible_v<Guard>);
static_assert(!std::is_convertible_v<Guard, bool>, "operator bool is explicit");

// Counts destructions of a handler's registered instance (moved-from shells do
// not count) and calls.
struct Counts {
    int calls = 0;
    int destroyed = 0;
};
struct Counted {
    Counts *c;
    explicit Counted(Counts *p) : c(p) {}
    Counted(Counted &&o) noexcept : c(std::exchange(o.c, nullptr)) {}
    Counted(const Counted &) = delete;
    ~Counted()
    {
        if (c)
            ++c->destroyed;
    }
    void operator()(const Event &) const { ++c->calls; }
};

} // namespace

class tst_Guard : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void removesOnDestruction();
    void releaseKeepsHandler();
    void reset_data();
    void reset();
    void moveConstruction();
    void moveAssignment();
    void moveAssignmentFromAGuardTheOldHandlerOwns();
    void selfMoveAssignmentKeepsHandler();
    void defaultConstructedIsInert();
    void guardOutlivesRegistry_data();
    void guardOutlivesRegistry();
    void guardForAlreadyRemovedId();
    void guardFromIdOwnsTheHandler();
    void guardDestroyedInsideItsOwnHandler_data();
    void guardDestroyedInsideItsOwnHandler();
    void handlerOwningAGuardOfItsRegistry();
    void registryDestroyedByItsGuardedHandler_data();
    void registryDestroyedByItsGuardedHandler();
    void guardsInAContainer();
};

void tst_Guard::removesOnDestruction()
{
    Counts counts;
    Reg reg;
    HandlerId id;
    {
        Guard g = reg.addGuarded(Counted(&counts));
        id = g.id();
        QVERIFY(g.isActive());
        QVERIFY(static_cast<bool>(g));
        QVERIFY(reg.contains(id));
        reg.notify(Event{});
        QCOMPARE(counts.calls, 1);
    }
    QVERIFY(!reg.contains(id));
    QVERIFY(reg.empty());
    reg.notify(Event{});
    QCOMPARE(counts.calls, 1);
    // The guard's removal waited and reclaimed: nothing notifies, so the
    // handler is gone for good.
    QCOMPARE(reg.pendingReclamation(), std::size_t(0));
    QCOMPARE(counts.destroyed, 1);
    QVERIFY(!reg.remove(id)); // already removed by the guard
}

void tst_Guard::releaseKeepsHandler()
{
    Counts counts;
    Reg reg;
    HandlerId released;
    HandlerId original;
    {
        Guard g = reg.addGuarded(3, Counted(&counts));
        original = g.id();
        released = g.release();
        QVERIFY(!g.isActive());
        QVERIFY(!g.id().isValid());
        QVERIFY(!g.release().isValid()); // nothing left to release
        QVERIFY(!g.reset());
    }
    QCOMPARE(released, original);
    QVERIFY(reg.contains(released));
    reg.notify(Event{});
    QCOMPARE(counts.calls, 1);
    QCOMPARE(counts.destroyed, 0);
    QVERIFY(reg.remove(released)); // the id is now the caller's to remove
    QCOMPARE(reg.pendingReclamation(), std::size_t(0));
    QCOMPARE(counts.destroyed, 1);
}

void tst_Guard::reset_data()
{
    QTest::addColumn<bool>("noWait");
    QTest::newRow("reset") << false;
    QTest::newRow("resetNoWait") << true;
}

void tst_Guard::reset()
{
    QFETCH(bool, noWait);
    auto doReset = [noWait](Guard &g) { return noWait ? g.resetNoWait() : g.reset(); };
    Counts counts;
    Reg reg;

    Guard g = reg.addGuarded(Counted(&counts));
    const HandlerId id = g.id();
    QVERIFY(doReset(g)); // this call removed it
    QVERIFY(!g.isActive());
    QVERIFY(!g.id().isValid());
    QVERIFY(!reg.contains(id));
    QVERIFY(!doReset(g)); // empty now
    reg.notify(Event{});
    QCOMPARE(counts.calls, 0);

    // Removed by id first: the guard's reset reports false.
    Guard h = reg.addGuarded([](const Event &) {});
    QVERIFY(reg.remove(h.id()));
    QVERIFY(h.isActive()); // it still names the id
    QVERIFY(!doReset(h));
    QVERIFY(!h.isActive());

    // Empty guard.
    Guard empty;
    QVERIFY(!doReset(empty));

    // A guard whose registry is gone.
    auto gone = std::make_unique<Reg>();
    Guard orphan = gone->addGuarded([](const Event &) {});
    gone.reset();
    QVERIFY(orphan.isActive());
    QVERIFY(!doReset(orphan));
    QVERIFY(!orphan.isActive());
}

void tst_Guard::moveConstruction()
{
    Counts counts;
    Reg reg;
    std::optional<Guard> a(reg.addGuarded(Counted(&counts)));
    const HandlerId id = a->id();

    Guard b(std::move(*a));
    QVERIFY(!a->isActive()); // NOLINT(bugprone-use-after-move): documented empty
    QVERIFY(!a->id().isValid());
    QCOMPARE(b.id(), id);
    a.reset(); // destroying the moved-from guard removes nothing
    QVERIFY(reg.contains(id));
    reg.notify(Event{});
    QCOMPARE(counts.calls, 1);

    {
        Guard c(std::move(b));
        QVERIFY(!b.isActive());
        QVERIFY(reg.contains(id));
    } // c owns it now and removes it
    QVERIFY(!reg.contains(id));
    QVERIFY(!b.reset());
}

void tst_Guard::moveAssignment()
{
    Counts first, second;
    Reg reg;
    Guard a = reg.addGuarded(Counted(&first));
    Guard b = reg.addGuarded(Counted(&second));
    const HandlerId idA = a.id();
    const HandlerId idB = b.id();

    // Assigning over an active guard removes the handler it owned.
    a = std::move(b);
    QVERIFY(!reg.contains(idA));
    QVERIFY(reg.contains(idB));
    QCOMPARE(a.id(), idB);
    QVERIFY(!b.isActive());
    reg.notify(Event{});
    QCOMPARE(first.calls, 0);
    QCOMPARE(second.calls, 1);
    QCOMPARE(reg.pendingReclamation(), std::size_t(0));
    QCOMPARE(first.destroyed, 1);
    QCOMPARE(second.destroyed, 0);

    // Assigning an empty guard empties the target (removing its handler).
    a = Guard();
    QVERIFY(!a.isActive());
    QVERIFY(!reg.contains(idB));

    // Assigning into an empty guard just takes ownership.
    Guard c;
    Guard d = reg.addGuarded([](const Event &) {});
    const HandlerId idD = d.id();
    c = std::move(d);
    QCOMPARE(c.id(), idD);
    QVERIFY(reg.contains(idD));

    // Across registries: the old handler goes from its own registry.
    Reg other;
    Guard e = other.addGuarded([](const Event &) {});
    const HandlerId idE = e.id();
    c = std::move(e);
    QVERIFY(!reg.contains(idD));
    QVERIFY(other.contains(idE));
    c.reset();
    QVERIFY(other.empty());
}

void tst_Guard::moveAssignmentFromAGuardTheOldHandlerOwns()
{
    // Handler A owns (through shared state) the guard of handler B, and A's
    // guard is assigned B's guard: the assignment must take B's guard before
    // removing A, whose destruction destroys the guard moved from.
    struct Holder {
        Guard guardOfB;
    };
    Counts countsA, countsB;
    Reg reg;
    auto holder = std::make_shared<Holder>();
    holder->guardOfB = reg.addGuarded(Counted(&countsB));
    const HandlerId idB = holder->guardOfB.id();
    Holder *raw = holder.get();
    Guard a = reg.addGuarded([h = std::move(holder), c = Counted(&countsA)](const Event &e) { c(e); });
    const HandlerId idA = a.id();

    a = std::move(raw->guardOfB); // removes A, which destroys `raw`
    QCOMPARE(a.id(), idB);
    QVERIFY(!reg.contains(idA));
    QVERIFY2(reg.contains(idB), "B's guard was taken over, not destroyed with A");
    QCOMPARE(reg.size(), std::size_t(1));
    reg.notify(Event{});
    QCOMPARE(countsA.calls, 0);
    QCOMPARE(countsB.calls, 1);
    QCOMPARE(countsB.destroyed, 0);
    a.reset();
    QVERIFY(!reg.contains(idB));
    QCOMPARE(countsB.destroyed, 1);
}

void tst_Guard::selfMoveAssignmentKeepsHandler()
{
    Reg reg;
    Guard g = reg.addGuarded([](const Event &) {});
    const HandlerId id = g.id();
    Guard &alias = g; // self-move through an alias (no -Wself-move)
    g = std::move(alias);
    QVERIFY(g.isActive());
    QCOMPARE(g.id(), id);
    QVERIFY(reg.contains(id));
}

void tst_Guard::defaultConstructedIsInert()
{
    Guard g;
    QVERIFY(!g.isActive());
    QVERIFY(!static_cast<bool>(g));
    QVERIFY(!g.id().isValid());
    QVERIFY(!g.reset());
    QVERIFY(!g.resetNoWait());
    QVERIFY(!g.release().isValid());
    Guard moved(std::move(g));
    QVERIFY(!moved.isActive());

    // Destroying it near a registry touches nothing there.
    Reg reg;
    const HandlerId id = reg.add([](const Event &) {});
    {
        Guard inert;
        Guard alsoInert = std::move(inert);
    }
    QVERIFY(reg.contains(id));
}

void tst_Guard::guardOutlivesRegistry_data()
{
    QTest::addColumn<QString>("how");
    QTest::newRow("destructor") << "destructor";
    QTest::newRow("reset") << "reset";
    QTest::newRow("resetNoWait") << "resetNoWait";
    QTest::newRow("release") << "release";
    QTest::newRow("move-assigned over") << "assign";
}

void tst_Guard::guardOutlivesRegistry()
{
    // Destroy the registry first, then use/destroy the guard: must be harmless
    // (ASan checks that nothing touches the dead registry).
    QFETCH(QString, how);
    Counts counts;
    std::optional<Guard> g;
    std::optional<Guard> unusedGuardOfSameRegistry;
    {
        Reg reg;
        g.emplace(reg.addGuarded(Counted(&counts)));
        unusedGuardOfSameRegistry.emplace(reg.addGuarded([](const Event &) {}));
        reg.notify(Event{});
    }
    QCOMPARE(counts.destroyed, 1); // the registry destroyed its handler
    QVERIFY(g->isActive());        // the guard still names it...

    if (how == "reset") {
        QVERIFY(!g->reset()); // ...but cannot remove anything
    } else if (how == "resetNoWait") {
        QVERIFY(!g->resetNoWait());
    } else if (how == "release") {
        QVERIFY(g->release().isValid());
    } else if (how == "assign") {
        Reg fresh;
        *g = fresh.addGuarded([](const Event &) {});
        QVERIFY(fresh.contains(g->id()));
        g->reset();
        QVERIFY(fresh.empty());
    }
    g.reset();
    unusedGuardOfSameRegistry.reset();
    QCOMPARE(counts.destroyed, 1);
    QCOMPARE(counts.calls, 1);
}

void tst_Guard::guardForAlreadyRemovedId()
{
    Reg reg;
    int calls = 0;
    const HandlerId id = reg.add([&](const Event &) { ++calls; });
    QVERIFY(reg.remove(id));
    const HandlerId later = reg.add([&](const Event &) { calls += 10; });
    {
        Guard g = reg.guard(id);
        QVERIFY(g.isActive());
        QCOMPARE(g.id(), id);
    } // does nothing: id is gone, and ids are never reused
    QVERIFY(reg.contains(later));
    reg.notify(Event{});
    QCOMPARE(calls, 10);

    Guard h = reg.guard(id);
    QVERIFY(!h.reset());
    // A guard for an id that was never handed out is equally inert.
    Guard never = reg.guard(HandlerId(later.value() + 100));
    QVERIFY(!never.reset());
    Guard invalid = reg.guard(HandlerId());
    QVERIFY(!invalid.isActive());
    QVERIFY(reg.contains(later));
}

void tst_Guard::guardFromIdOwnsTheHandler()
{
    Counts counts;
    Reg reg;
    const HandlerId id = reg.add(Counted(&counts));
    {
        Guard g = reg.guard(id);
        QCOMPARE(g.id(), id);
        reg.notify(Event{});
    }
    QVERIFY(!reg.contains(id));
    QCOMPARE(counts.calls, 1);
    QCOMPARE(counts.destroyed, 1);
}

void tst_Guard::guardDestroyedInsideItsOwnHandler_data()
{
    QTest::addColumn<QString>("how");
    QTest::newRow("optional reset (destructor)") << "destroy";
    QTest::newRow("Guard::reset") << "reset";
    QTest::newRow("Guard::resetNoWait") << "resetNoWait";
    QTest::newRow("assign empty guard") << "assign";
}

void tst_Guard::guardDestroyedInsideItsOwnHandler()
{
    QFETCH(QString, how);
    Reg reg;
    std::optional<Guard> self;
    auto state = std::make_shared<int>(0);
    std::weak_ptr<int> watch = state;
    int calls = 0;
    int afterRemoval = -1;
    int siblingCalls = 0;
    bool resetResult = false;
    self.emplace(reg.addGuarded([&, state](const Event &) {
        ++calls;
        ++*state;
        if (how == "destroy")
            self.reset(); // the guard lives outside, captured by reference
        else if (how == "reset")
            resetResult = self->reset();
        else if (how == "resetNoWait")
            resetResult = self->resetNoWait();
        else
            *self = Guard();
        // The handler (and its captured state) must survive until it returns.
        afterRemoval = *state;
    }));
    const HandlerId id = self->id();
    reg.add(-1, [&](const Event &) { ++siblingCalls; });

    reg.notify(Event{});
    reg.notify(Event{});
    QCOMPARE(calls, 1);
    QCOMPARE(afterRemoval, 1);
    QCOMPARE(siblingCalls, 2);
    QVERIFY(!reg.contains(id));
    if (how == "reset" || how == "resetNoWait")
        QVERIFY(resetResult);
    QVERIFY(!self.has_value() || !self->isActive());

    state.reset();
    QVERIFY(!watch.expired()); // still held by the removed handler, not yet reclaimed
    // The next removal, with no notify running, reclaims it.
    QVERIFY(reg.remove(reg.add([](const Event &) {})));
    QVERIFY(watch.expired());
}

void tst_Guard::handlerOwningAGuardOfItsRegistry()
{
    // Handler A owns the guard of handler B. Removing A destroys A, which
    // destroys the guard, which removes B — from inside the registry's
    // reclamation. Destructors must run outside the registry's lock for this
    // not to deadlock.
    Counts countsB;
    {
        Reg reg;
        Guard gb = reg.addGuarded(Counted(&countsB));
        const HandlerId idB = gb.id();
        const HandlerId idA = reg.add([g = std::move(gb)](const Event &) {});
        QVERIFY(reg.contains(idB));
        QVERIFY(reg.remove(idA));
        QVERIFY(!reg.contains(idB));
        // Nothing notifies: B's removal (run from A's destructor) reclaimed B.
        QCOMPARE(reg.pendingReclamation(), std::size_t(0));
        QCOMPARE(countsB.destroyed, 1);

        // The same at registry destruction: the guard finds the registry dying
        // and does nothing.
        Guard gc = reg.addGuarded([](const Event &) {});
        reg.add([g = std::move(gc)](const Event &) {});
    }
    QCOMPARE(countsB.destroyed, 1);
}

void tst_Guard::registryDestroyedByItsGuardedHandler_data()
{
    QTest::addColumn<QString>("how");
    QTest::newRow("reset") << QStringLiteral("reset");
    QTest::newRow("resetNoWait") << QStringLiteral("resetNoWait");
    QTest::newRow("destructor") << QStringLiteral("destructor");
    QTest::newRow("move assignment") << QStringLiteral("assign");
    QTest::newRow("nested guard") << QStringLiteral("nested");
}

void tst_Guard::registryDestroyedByItsGuardedHandler()
{
    // "Keep my owner alive while I am subscribed": the handler holds the
    // last reference to the object that owns the registry, so removing the
    // handler destroys the registry, inside the guard's removal. The
    // registry's destructor must not wait for that removal (it is further up
    // this thread's stack: a hang, before the fix). A hang here ends in the
    // test's timeout.
    QFETCH(QString, how);
    struct Owner {
        Reg events;
        bool *destroyed;
        explicit Owner(bool *d) : destroyed(d) {}
        ~Owner() { *destroyed = true; }
    };
    bool ownerDestroyed = false;
    auto owner = std::make_shared<Owner>(&ownerDestroyed);
    Guard guard;
    if (how == QLatin1String("nested")) {
        // The guarded handler owns a guard of another handler of the same
        // registry, and that one holds the owner: the registry goes in the
        // removal nested inside the first.
        Guard inner = owner->events.addGuarded([keep = owner](const Event &) {});
        guard = owner->events.addGuarded([g = std::move(inner)](const Event &) {});
    } else {
        guard = owner->events.addGuarded([keep = owner](const Event &) {});
    }
    int calls = 0;
    owner->events.add([&calls](const Event &) { ++calls; });
    owner->events.notify(Event{});
    QCOMPARE(calls, 1);
    owner.reset(); // the handler holds the last reference
    QVERIFY(!ownerDestroyed);

    if (how == QLatin1String("reset") || how == QLatin1String("nested")) {
        QVERIFY(guard.reset());
    } else if (how == QLatin1String("resetNoWait")) {
        QVERIFY(guard.resetNoWait());
    } else if (how == QLatin1String("destructor")) {
        Guard dying = std::move(guard);
    } else {
        guard = Guard();
    }
    QVERIFY(ownerDestroyed);
    QVERIFY(!guard.isActive());
    QVERIFY(!guard.reset()); // and the guard is inert afterwards
}

void tst_Guard::guardsInAContainer()
{
    Reg reg;
    std::vector<Guard> guards;
    int calls = 0;
    for (int i = 0; i < 40; ++i)
        guards.push_back(reg.addGuarded(i % 5, [&](const Event &) { ++calls; })); // reallocation moves guards
    QCOMPARE(reg.size(), std::size_t(40));
    reg.notify(Event{});
    QCOMPARE(calls, 40);
    guards.erase(guards.begin(), guards.begin() + 15);
    QCOMPARE(reg.size(), std::size_t(25));
    guards.clear();
    QVERIFY(reg.empty());
    reg.notify(Event{});
    QCOMPARE(calls, 40);
}

QTEST_GUILESS_MAIN(tst_Guard)
#include "tst_guard.moc"
