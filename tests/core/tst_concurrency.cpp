// SPDX-License-Identifier: MIT
// Qt Test suite for the multi-threaded guarantees of sigreg::Registry<E>:
//   * of several concurrent removals of one id exactly one returns true;
//   * when remove() returns true the handler is not running elsewhere and is
//     never called again (stress test with notifiers, churn and one-shots);
//   * every notify reaches every handler registered for its whole duration
//     exactly once, in order per notifying thread;
//   * remove() waits for a running call, removeNoWait() does not, and
//     remove(X) waits for calls of X only (not for other callbacks);
//   * handlers removing themselves on two threads at once do not deadlock;
//   * guards racing with the destruction of their registry are harmless.
//
// Every test is bounded: loops run a fixed number of iterations or until a
// steady_clock deadline. No assertion measures time. The only sleep makes a
// scenario likely (a remover already waiting) and never decides a result; the
// only deadlines are generous watchdogs (seconds, for operations that take
// microseconds) that turn a wrong wait into a failure instead of a hang.
// QtTest macros are used on the main thread only, after worker threads have
// been joined (failures inside threads are counted in atomics).

#include <sigreg/registry.h>

#include <QtTest/QTest>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <latch>
#include <iterator>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#if SIGREG_MODULE_RECORDS
#include <pthread.h>
#endif

#include "../support/hazard_records.h"
#include "../support/sanitizers.h"

using namespace std::chrono_literals;

namespace {

using sigreg_test::kUnderTsan;

// Iteration counts: smaller under TSan, which slows everything ~10x.
constexpr int scaled(int normal, int tsan) { return kUnderTsan ? tsan : normal; }

using Clock = std::chrono::steady_clock;
using sigreg::Guard;
using sigreg::HandlerId;

struct Event {
    int value = 0;
};
using Reg = sigreg::Registry<Event>;

// How long we wait for something that must happen unless the library
// deadlocks. Generous: only reached on failure.
constexpr auto kWatchdog = 30s;

/// Polls `pred` until it holds or `timeout` passes; returns whether it held.
template <class Pred>
bool waitFor(Pred pred, std::chrono::nanoseconds timeout = kWatchdog)
{
    const auto deadline = Clock::now() + timeout;
    for (int round = 0; !pred(); ++round) {
        if (Clock::now() > deadline)
            return false;
        if (round < 100)
            std::this_thread::yield();
        else
            std::this_thread::sleep_for(50us); // leave the (two) cores to the workers
    }
    return true;
}

/// Aborts with a message: used where the alternative is a hung test.
[[noreturn]] void deadlocked(const char *what)
{
    std::fprintf(stderr, "FATAL: %s did not finish within the watchdog time: deadlock?\n", what);
    std::fflush(stderr);
    std::abort();
}

/// Spins (yielding) until `flag` is set: a handler that blocks.
void spinUntilSet(const std::atomic<bool> &flag)
{
    while (!flag.load(std::memory_order_acquire))
        std::this_thread::yield();
}

} // namespace

class tst_RegistryConcurrency : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void concurrentRemoveOfOneId_data();
    void concurrentRemoveOfOneId();
    void stress();
    void removeWaitsForRunningHandler_data();
    void removeWaitsForRunningHandler();
    void removeNoWaitDoesNotWait_data();
    void removeNoWaitDoesNotWait();
    void laterRemovalWaitsForEarlierOne_data();
    void laterRemovalWaitsForEarlierOne();
    void churnDuringLongReadIsFreed();
    void handlerRemovedFromTwoOfItsCalls_data();
    void handlerRemovedFromTwoOfItsCalls();
    void removeDoesNotWaitForUnrelatedCallbacks_data();
    void removeDoesNotWaitForUnrelatedCallbacks();
    void removeFromErrorHandlerWaitsForOtherCalls();
    void simultaneousSelfRemovalDoesNotDeadlock_data();
    void simultaneousSelfRemovalDoesNotDeadlock();
    void guardRacesWithRegistryDestruction_data();
    void guardRacesWithRegistryDestruction();
    void registryDestroyedByItsGuardWhileAnotherThreadRemoves();
    void twoRegistriesDestroyedByEachOthersGuardedHandlers();
    void notifyDuringThreadExit_data();
    void notifyDuringThreadExit();
    void moduleCopyFollowsTheRecord();
    void inPlaceAddsAtBothEndsWhileNotifying();
};

// ===========================================================================
// a. concurrent removal of one id
// ===========================================================================

void tst_RegistryConcurrency::concurrentRemoveOfOneId_data()
{
    QTest::addColumn<QString>("how");
    QTest::addColumn<bool>("withNotifier");
    for (bool notifier : {false, true}) {
        const char *suffix = notifier ? ", while notifying" : "";
        QTest::addRow("remove%s", suffix) << "remove" << notifier;
        QTest::addRow("removeNoWait%s", suffix) << "removeNoWait" << notifier;
        QTest::addRow("guard reset%s", suffix) << "guard" << notifier;
        QTest::addRow("mixed%s", suffix) << "mixed" << notifier;
    }
}

void tst_RegistryConcurrency::concurrentRemoveOfOneId()
{
    QFETCH(QString, how);
    QFETCH(bool, withNotifier);
    constexpr int kThreads = 8;
    const int kRounds = scaled(200, 60);

    // Per-handler state, owned here so that it outlives every call.
    struct State {
        std::atomic<bool> removedWaiting{false}; // set after a *waiting* removal returned true
        std::atomic<std::uint64_t> calls{0};
    };
    std::deque<State> states;
    std::atomic<std::uint64_t> violations{0};
    std::atomic<std::uint64_t> currentId{0};
    std::atomic<State *> currentState{nullptr};
    std::atomic<int> winners{0};
    std::atomic<bool> stop{false};
    std::vector<int> winnersPerRound;
    winnersPerRound.reserve(std::size_t(kRounds));

    enum Kind { Remove, RemoveNoWait, GuardReset };
    auto kindFor = [&](int thread) {
        if (how == "remove")
            return Remove;
        if (how == "removeNoWait")
            return RemoveNoWait;
        if (how == "guard")
            return GuardReset;
        return Kind(thread % 3);
    };

    Reg reg;
    std::barrier sync(kThreads + 1);
    std::vector<std::thread> removers;
    for (int t = 0; t < kThreads; ++t) {
        removers.emplace_back([&, t] {
            const Kind kind = kindFor(t);
            for (int round = 0; round < kRounds; ++round) {
                sync.arrive_and_wait(); // the round's id is published
                const HandlerId id(currentId.load());
                bool won = false;
                switch (kind) {
                case Remove:
                    won = reg.remove(id);
                    break;
                case RemoveNoWait:
                    won = reg.removeNoWait(id);
                    break;
                case GuardReset: {
                    Guard g = reg.guard(id);
                    won = g.reset();
                    break;
                }
                }
                if (won) {
                    winners.fetch_add(1);
                    if (kind != RemoveNoWait)
                        currentState.load()->removedWaiting.store(true);
                }
                sync.arrive_and_wait(); // round done
            }
        });
    }
    std::thread notifier;
    if (withNotifier) {
        notifier = std::thread([&] {
            while (!stop.load(std::memory_order_relaxed))
                reg.notify(Event{});
        });
    }

    for (int round = 0; round < kRounds; ++round) {
        State &s = states.emplace_back();
        currentState.store(&s);
        currentId.store(reg.add([&s, &violations](const Event &) {
                               if (s.removedWaiting.load())
                                   violations.fetch_add(1); // called after remove() returned
                               s.calls.fetch_add(1);
                           }).value());
        winners.store(0);
        sync.arrive_and_wait();
        sync.arrive_and_wait();
        winnersPerRound.push_back(winners.load());
    }
    stop.store(true);
    if (notifier.joinable())
        notifier.join();
    for (std::thread &t : removers)
        t.join();

    for (int round = 0; round < kRounds; ++round) {
        if (winnersPerRound[std::size_t(round)] != 1)
            QFAIL(qPrintable(QStringLiteral("round %1: %2 removals reported true, expected exactly 1")
                                 .arg(round)
                                 .arg(winnersPerRound[std::size_t(round)])));
    }
    QCOMPARE(violations.load(), std::uint64_t(0));
    QVERIFY(reg.empty());
    // Nothing notifies any more: the next removal reclaims everything.
    QVERIFY(reg.remove(reg.add([](const Event &) {})));
    QCOMPARE(reg.pendingReclamation(), std::size_t(0));
}

// ===========================================================================
// b. stress: notifiers, churn, one-shots, guards, batches, errors
// ===========================================================================

namespace {

struct StressEvent {
    int thread;
    std::uint64_t seq;
};
using StressReg = sigreg::Registry<StressEvent>;

constexpr int kNotifiers = 4;
constexpr int kChurners = 2;

/// Per stable handler, per notifying thread: written only by that thread.
struct alignas(64) StableSlot {
    std::uint64_t count = 0;
    std::uint64_t disorder = 0; // sequence numbers seen out of order / twice / skipped
};
struct StableState {
    StableSlot slots[kNotifiers];
};

/// State of one churn handler, shared between the churn thread and the
/// handler (by shared_ptr: it lives until both are done with it).
struct ChurnState {
    explicit ChurnState(std::atomic<long> *l) : live(l) { live->fetch_add(1); }
    ~ChurnState() { live->fetch_sub(1); }
    ChurnState(const ChurnState &) = delete;
    ChurnState &operator=(const ChurnState &) = delete;

    std::atomic<long> *live;
    /// Set right after a waiting removal (remove, guard reset/destruction,
    /// batch commit) returned: from then on the handler must never run.
    std::atomic<bool> removed{false};
    std::atomic<std::uint64_t> id{0}; // for one-shots: their own id
    std::atomic<std::uint64_t> calls{0};
};

struct Shared {
    std::atomic<std::uint64_t> violations{0};      // a call after its remove() returned
    std::atomic<std::uint64_t> wrongResults{0};    // a remove/commit result that contradicts ownership
    std::atomic<std::uint64_t> thrown{0};          // exceptions thrown by handlers
    std::atomic<std::uint64_t> handled{0};         // calls of any installed error handler
    std::atomic<std::uint64_t> oneShotsFired{0};   // one-shots that removed themselves
    std::atomic<std::uint64_t> churnOps{0};
    std::atomic<std::uint64_t> relayed{0};         // nested notifications delivered
    std::atomic<long> liveStates{0};               // ChurnState objects alive
};

} // namespace

void tst_RegistryConcurrency::stress()
{
    // Declared before the registries: handlers reference these.
    Shared sh;
    std::vector<StableState> stable(3);
    const int stablePriorities[] = {5, 0, -5};
    std::uint64_t notifies[kNotifiers] = {};
    const auto churnTime = 1000ms; // the churn threads' deadline; notifiers stop right after

    sigreg::Registry<int> side; // target of nested notifications from inside handlers
    side.add([&sh](const int &) { sh.relayed.fetch_add(1, std::memory_order_relaxed); });

    StressReg reg;
    reg.setErrorHandler([&sh](const sigreg::HandlerFailure &) { sh.handled.fetch_add(1); });

    // (ii) stable handlers, registered before any notifier starts.
    std::vector<HandlerId> stableIds;
    for (std::size_t h = 0; h < stable.size(); ++h) {
        StableState *st = &stable[h];
        stableIds.push_back(reg.add(stablePriorities[h], [st](const StressEvent &e) {
            StableSlot &slot = st->slots[e.thread];
            if (e.seq != slot.count)
                ++slot.disorder;
            ++slot.count;
        }));
    }

    enum class Kind { Checked, NoWait, Throwing, OneShot, Relay };
    struct Owned {
        HandlerId id;
        std::shared_ptr<ChurnState> state;
        Kind kind;
    };
    struct OwnedGuard {
        Guard guard;
        std::shared_ptr<ChurnState> state;
    };

    // Handler bodies. Each checks invariant (i) on entry and, where it can,
    // again on exit: a waiting removal must also wait for calls that were
    // already running when it started.
    auto makeChecked = [&sh](std::shared_ptr<ChurnState> s) {
        return [s = std::move(s), &sh](const StressEvent &) {
            if (s->removed.load())
                sh.violations.fetch_add(1);
            s->calls.fetch_add(1, std::memory_order_relaxed);
            if (s->removed.load())
                sh.violations.fetch_add(1);
        };
    };
    auto makeThrowing = [&sh](std::shared_ptr<ChurnState> s) {
        return [s = std::move(s), &sh](const StressEvent &) {
            if (s->removed.load())
                sh.violations.fetch_add(1);
            if ((s->calls.fetch_add(1, std::memory_order_relaxed) & 15) == 0) {
                sh.thrown.fetch_add(1);
                throw std::runtime_error("churn handler failure");
            }
        };
    };
    auto makeOneShot = [&sh, &reg](std::shared_ptr<ChurnState> s) {
        // Removes itself on its first call (on whichever notifier gets there
        // first; several may be inside at once).
        return [s = std::move(s), &sh, &reg](const StressEvent &) {
            if (s->removed.load())
                sh.violations.fetch_add(1);
            s->calls.fetch_add(1, std::memory_order_relaxed);
            const std::uint64_t id = s->id.load();
            if (id != 0 && reg.remove(HandlerId(id))) {
                s->removed.store(true);
                sh.oneShotsFired.fetch_add(1);
                return; // this call removed it: it completes normally
            }
            // Lost the race (or the id is not set yet): whoever removed it
            // waits for this call before it reports the removal.
            if (s->removed.load())
                sh.violations.fetch_add(1);
        };
    };
    auto makeRelay = [&sh, &side](std::shared_ptr<ChurnState> s) {
        return [s = std::move(s), &sh, &side](const StressEvent &e) {
            if (s->removed.load())
                sh.violations.fetch_add(1);
            s->calls.fetch_add(1, std::memory_order_relaxed);
            side.notify(static_cast<int>(e.seq));
            if (s->removed.load())
                sh.violations.fetch_add(1);
        };
    };

    std::atomic<bool> stop{false};
    std::latch start(kNotifiers + kChurners + 1);

    std::vector<std::thread> notifiers;
    for (int t = 0; t < kNotifiers; ++t) {
        notifiers.emplace_back([&, t] {
            start.arrive_and_wait();
            std::uint64_t seq = 0;
            while (!stop.load(std::memory_order_relaxed))
                reg.notify(StressEvent{t, seq++});
            notifies[t] = seq; // read after join
        });
    }

    const auto deadline = Clock::now() + churnTime;
    std::vector<std::thread> churners;
    for (int c = 0; c < kChurners; ++c) {
        churners.emplace_back([&, c] {
            std::minstd_rand rng(std::uint32_t(1234 + c));
            auto pick = [&rng](int n) { return int(rng() % std::uint32_t(n)); };
            auto newState = [&sh] { return std::make_shared<ChurnState>(&sh.liveStates); };
            std::vector<Owned> owned;
            std::vector<OwnedGuard> guards;

            auto addOne = [&](Kind kind) {
                auto s = newState();
                const int prio = pick(13) - 6;
                HandlerId id;
                switch (kind) {
                case Kind::Checked:
                case Kind::NoWait:
                    id = reg.add(prio, makeChecked(s));
                    break;
                case Kind::Throwing:
                    id = reg.add(prio, makeThrowing(s));
                    break;
                case Kind::OneShot:
                    id = reg.add(prio, makeOneShot(s));
                    s->id.store(id.value());
                    break;
                case Kind::Relay:
                    id = reg.add(prio, makeRelay(s));
                    break;
                }
                owned.push_back(Owned{id, std::move(s), kind});
            };
            // Removes owned[i] the way its kind asks for; checks the result.
            auto removeAt = [&](std::size_t i) {
                Owned o = std::move(owned[i]);
                owned[i] = std::move(owned.back());
                owned.pop_back();
                switch (o.kind) {
                case Kind::NoWait:
                    // Returns without waiting: a call may still be running, so
                    // invariant (i) is not checked for these.
                    if (!reg.removeNoWait(o.id))
                        sh.wrongResults.fetch_add(1);
                    break;
                case Kind::OneShot:
                    // Either we or the handler itself removes it. Either way,
                    // once our waiting remove() returns no call is running.
                    reg.remove(o.id);
                    o.state->removed.store(true);
                    break;
                default:
                    if (!reg.remove(o.id))
                        sh.wrongResults.fetch_add(1); // nobody else removes our handlers
                    o.state->removed.store(true);
                    break;
                }
            };
            auto dropGuardAt = [&](std::size_t i, int how) {
                OwnedGuard g = std::move(guards[i]);
                guards[i] = std::move(guards.back());
                guards.pop_back();
                switch (how) {
                case 0:
                    if (!g.guard.reset())
                        sh.wrongResults.fetch_add(1);
                    g.state->removed.store(true);
                    break;
                case 1:
                    if (!g.guard.resetNoWait())
                        sh.wrongResults.fetch_add(1);
                    break; // no waiting: (i) not checked
                default:
                    {
                        Guard dying = std::move(g.guard); // its destructor removes, waiting
                    }
                    g.state->removed.store(true);
                    break;
                }
            };

            start.arrive_and_wait();
            while (Clock::now() < deadline) {
                sh.churnOps.fetch_add(1, std::memory_order_relaxed);
                const bool full = owned.size() + guards.size() > 24;
                switch (full ? 4 + pick(3) : pick(10)) {
                case 0:
                    addOne(Kind::Checked);
                    break;
                case 1:
                    addOne(pick(2) ? Kind::NoWait : Kind::Throwing);
                    break;
                case 2:
                    addOne(pick(3) ? Kind::OneShot : Kind::Relay);
                    break;
                case 3: {
                    auto s = newState();
                    guards.push_back(OwnedGuard{reg.addGuarded(pick(13) - 6, makeChecked(s)), s});
                    break;
                }
                case 4:
                case 5:
                    if (!owned.empty())
                        removeAt(std::size_t(pick(int(owned.size()))));
                    break;
                case 6:
                    if (!guards.empty())
                        dropGuardAt(std::size_t(pick(int(guards.size()))), pick(3));
                    break;
                case 7: {
                    // A batch: a few adds and the removal of up to two owned
                    // Checked handlers, published at once.
                    auto batch = reg.batch();
                    std::vector<Owned> batchAdds;
                    const int adds = 1 + pick(3);
                    for (int i = 0; i < adds; ++i) {
                        auto s = newState();
                        batchAdds.push_back(Owned{batch.add(pick(13) - 6, makeChecked(s)), s, Kind::Checked});
                    }
                    std::vector<std::shared_ptr<ChurnState>> batchRemoved;
                    for (std::size_t i = 0; i < owned.size() && batchRemoved.size() < 2;) {
                        if (owned[i].kind == Kind::Checked) {
                            batch.remove(owned[i].id);
                            batchRemoved.push_back(owned[i].state);
                            owned[i] = std::move(owned.back());
                            owned.pop_back();
                        } else {
                            ++i;
                        }
                    }
                    const sigreg::BatchResult r = batch.commit();
                    if (r.added != std::size_t(adds) || r.removed != batchRemoved.size())
                        sh.wrongResults.fetch_add(1);
                    for (auto &s : batchRemoved)
                        s->removed.store(true);
                    for (Owned &o : batchAdds)
                        owned.push_back(std::move(o));
                    break;
                }
                case 8: {
                    // Take a second owner through reg.guard(id), then let it go.
                    if (!owned.empty()) {
                        const std::size_t i = std::size_t(pick(int(owned.size())));
                        if (owned[i].kind == Kind::Checked) {
                            Owned o = std::move(owned[i]);
                            owned[i] = std::move(owned.back());
                            owned.pop_back();
                            {
                                Guard g = reg.guard(o.id);
                            }
                            o.state->removed.store(true);
                        }
                    }
                    break;
                }
                default:
                    // Replace the error handler while failures are reported.
                    reg.setErrorHandler([&sh](const sigreg::HandlerFailure &) { sh.handled.fetch_add(1); });
                    break;
                }
            }
            // Clean up everything this thread still owns.
            while (!owned.empty())
                removeAt(owned.size() - 1);
            while (!guards.empty())
                dropGuardAt(guards.size() - 1, 0);
        });
    }

    start.arrive_and_wait();
    // Churners stop at their deadline; the watchdog catches a deadlock.
    std::atomic<int> churnersDone{0};
    std::thread joiner([&] {
        for (std::thread &t : churners)
            t.join();
        churnersDone.store(1);
    });
    if (!waitFor([&] { return churnersDone.load() == 1; }, churnTime + kWatchdog))
        deadlocked("stress: churn threads");
    joiner.join();
    stop.store(true);
    for (std::thread &t : notifiers)
        t.join();

    qDebug("stress: %llu notifies, %llu churn operations, %llu one-shots fired, %llu failures reported, %llu nested",
           static_cast<unsigned long long>(std::accumulate(std::begin(notifies), std::end(notifies), std::uint64_t(0))),
           static_cast<unsigned long long>(sh.churnOps.load()),
           static_cast<unsigned long long>(sh.oneShotsFired.load()),
           static_cast<unsigned long long>(sh.thrown.load()),
           static_cast<unsigned long long>(sh.relayed.load()));

    // --- invariants ---
    QCOMPARE(sh.violations.load(), std::uint64_t(0)); // (i)
    QCOMPARE(sh.wrongResults.load(), std::uint64_t(0));
    for (std::size_t h = 0; h < stable.size(); ++h) { // (ii)
        for (int t = 0; t < kNotifiers; ++t) {
            const StableSlot &slot = stable[h].slots[t];
            if (slot.count != notifies[t] || slot.disorder != 0)
                QFAIL(qPrintable(QStringLiteral("stable handler %1, notifier %2: %3 calls for %4 notifies, %5 out of order")
                                     .arg(h)
                                     .arg(t)
                                     .arg(slot.count)
                                     .arg(notifies[t])
                                     .arg(slot.disorder)));
        }
    }
    // The test exercised what it claims to.
    for (std::uint64_t n : notifies)
        QVERIFY(n > 0);
    QVERIFY(sh.churnOps.load() > 100);
    QVERIFY(sh.oneShotsFired.load() > 0);
    // Every failure was reported to an error handler, including while it was
    // being replaced.
    QCOMPARE(reg.failureCount(), sh.thrown.load());
    QCOMPARE(sh.handled.load(), sh.thrown.load());
    QCOMPARE(reg.unhandledFailureCount(), std::uint64_t(0));

    // Only the stable handlers are left; once nothing notifies, removing them
    // reclaims every churn handler (and with it its state).
    QCOMPARE(reg.size(), stable.size());
    for (HandlerId id : stableIds)
        QVERIFY(reg.remove(id));
    QVERIFY(reg.empty());
    QCOMPARE(reg.pendingReclamation(), std::size_t(0));
    QCOMPARE(sh.liveStates.load(), 0L);
}

// ===========================================================================
// c. remove() waits for a running call; removeNoWait() does not
// ===========================================================================

namespace {

/// A handler that blocks until released, and whose destructor records
/// whether it ran before the call finished.
struct BlockingHandler {
    struct Flags {
        std::atomic<int> calls{0};
        std::atomic<bool> entered{false};
        std::atomic<bool> release{false};
        std::atomic<bool> finished{false};
        std::atomic<int> destroyed{0};
        std::atomic<bool> destroyedBeforeFinished{false};
    };
    Flags *f;
    explicit BlockingHandler(Flags *flags) : f(flags) {}
    BlockingHandler(BlockingHandler &&o) noexcept : f(std::exchange(o.f, nullptr)) {}
    BlockingHandler(const BlockingHandler &) = delete;
    ~BlockingHandler()
    {
        if (!f)
            return;
        if (f->calls.load() > 0 && !f->finished.load())
            f->destroyedBeforeFinished.store(true);
        f->destroyed.fetch_add(1);
    }
    void operator()(const Event &) const
    {
        f->calls.fetch_add(1);
        f->entered.store(true);
        spinUntilSet(f->release);
        f->finished.store(true);
    }
};

/// Notifies `reg` on a new thread and returns once that call is inside the
/// BlockingHandler of `flags` (blocked there until flags.release is set).
std::thread notifyIntoBlockedHandler(Reg &reg, BlockingHandler::Flags &flags)
{
    std::thread notifier([&reg] { reg.notify(Event{}); });
    if (!waitFor([&flags] { return flags.entered.load(); }))
        deadlocked("notifier entering the handler");
    return notifier;
}

/// What a removal running on its own thread saw of a blocked handler call.
struct RemovalSeen {
    bool returnedWhileBlocked; // returned before the handler was released
    bool finishedAtReturn;     // the handler's call had ended when it returned
    bool result;               // what it returned
};

/// Runs `removal` (returning bool) on a new thread while the handler of
/// `flags` is blocked on another, leaves it time to return wrongly, then
/// releases the handler and waits for the removal to return.
template <class Removal>
RemovalSeen removeWhileBlocked(BlockingHandler::Flags &flags, Removal removal)
{
    std::atomic<bool> started{false}, returned{false}, finishedAtReturn{false}, result{false};
    std::thread remover([&] {
        started.store(true);
        const bool r = removal();
        // Read before announcing the return: if the handler were still
        // running, `finished` would be false here.
        finishedAtReturn.store(flags.finished.load());
        result.store(r);
        returned.store(true);
    });
    if (!waitFor([&] { return started.load(); }))
        deadlocked("remover start");
    // Lets the remover get into its wait. This only makes the interesting
    // interleaving likely; no assertion depends on the sleep being long enough.
    std::this_thread::sleep_for(kUnderTsan ? 50ms : 20ms);
    // Nobody released the handler yet: a remover that returned did not wait.
    const bool returnedWhileBlocked = returned.load();
    flags.release.store(true);
    remover.join();
    return {returnedWhileBlocked, finishedAtReturn.load(), result.load()};
}

} // namespace

void tst_RegistryConcurrency::removeWaitsForRunningHandler_data()
{
    QTest::addColumn<QString>("how");
    QTest::newRow("remove") << "remove";
    QTest::newRow("clear") << "clear";
    QTest::newRow("batch commit") << "batch";
    QTest::newRow("Guard::reset") << "guard reset";
    QTest::newRow("Guard destructor") << "guard destructor";
    QTest::newRow("move-assign over guard") << "guard assign";
}

void tst_RegistryConcurrency::removeWaitsForRunningHandler()
{
    QFETCH(QString, how);
    BlockingHandler::Flags flags;
    Reg reg;
    std::optional<Guard> guard;
    HandlerId id;
    if (how.startsWith("guard")) {
        guard.emplace(reg.addGuarded(BlockingHandler(&flags)));
        id = guard->id();
    } else {
        id = reg.add(BlockingHandler(&flags));
    }
    int others = 0;
    reg.add(-1, [&others](const Event &) { ++others; }); // runs on the notifier thread only

    std::thread notifier = notifyIntoBlockedHandler(reg, flags); // thread A
    const RemovalSeen seen = removeWhileBlocked(flags, [&] { // thread B
        if (how == "remove")
            return reg.remove(id);
        if (how == "clear")
            return reg.clear() == 2;
        if (how == "batch") {
            auto batch = reg.batch();
            batch.remove(id);
            return batch.commit().removed == 1;
        }
        if (how == "guard reset")
            return guard->reset();
        if (how == "guard destructor")
            guard.reset();
        else
            *guard = Guard();
        return false; // a destructor reports nothing: !contains(id) below is the check
    });
    notifier.join();
    QVERIFY2(!seen.returnedWhileBlocked, "removal returned while the handler was still running");
    QVERIFY2(seen.finishedAtReturn, "removal returned before the handler finished");
    if (how != "guard destructor" && how != "guard assign")
        QVERIFY(seen.result);
    QVERIFY(!flags.destroyedBeforeFinished.load());
    QCOMPARE(flags.calls.load(), 1);

    // Never called again.
    reg.notify(Event{});
    QCOMPARE(flags.calls.load(), 1);
    QVERIFY(!reg.contains(id));
    reg.clear();
    QCOMPARE(reg.pendingReclamation(), std::size_t(0));
    QCOMPARE(flags.destroyed.load(), 1);
}

void tst_RegistryConcurrency::laterRemovalWaitsForEarlierOne_data()
{
    QTest::addColumn<QString>("first");
    QTest::addColumn<QString>("second");
    for (const char *first : {"removeNoWait", "remove"}) {
        for (const char *second : {"remove", "batch commit", "Guard::reset", "Guard destructor"})
            QTest::addRow("%s, then %s", first, second) << first << second;
    }
}

// The handler is already removed, by a removeNoWait() or by a remove() still
// waiting on another thread, while a call of it runs on thread A. A later
// waiting removal of the same id returns false, and only once that call ended:
// whichever removal returns, the handler is idle.
void tst_RegistryConcurrency::laterRemovalWaitsForEarlierOne()
{
    QFETCH(QString, first);
    QFETCH(QString, second);
    BlockingHandler::Flags flags;
    Reg reg;
    const HandlerId id = reg.add(BlockingHandler(&flags));
    std::thread notifier = notifyIntoBlockedHandler(reg, flags); // thread A

    // The first removal, on thread C.
    std::atomic<bool> firstWon{false};
    std::thread firstRemover([&] { firstWon.store(first == "remove" ? reg.remove(id) : reg.removeNoWait(id)); });
    if (first == "removeNoWait")
        firstRemover.join();
    if (!waitFor([&] { return !reg.contains(id); }))
        deadlocked("first removal");

    const RemovalSeen seen = removeWhileBlocked(flags, [&] { // thread B
        if (second == "remove")
            return reg.remove(id);
        if (second == "batch commit") {
            auto batch = reg.batch();
            batch.remove(id);
            return batch.commit().removed != 0;
        }
        Guard g = reg.guard(id);
        return second == "Guard::reset" && g.reset(); // else: its destructor removes
    });
    notifier.join();
    if (firstRemover.joinable())
        firstRemover.join();
    QVERIFY2(!seen.returnedWhileBlocked, "the later removal returned while the handler was still running");
    QVERIFY2(seen.finishedAtReturn, "the later removal returned before the handler finished");
    QVERIFY(firstWon.load());
    if (second != "Guard destructor") // a destructor reports nothing
        QVERIFY2(!seen.result, "only the first removal removed the handler");
    QCOMPARE(flags.calls.load(), 1);
    reg.notify(Event{});
    QCOMPARE(flags.calls.load(), 1);
    // Unpinned again: the next removal (nothing runs now) reclaims everything.
    QVERIFY(reg.remove(reg.add([](const Event &) {})));
    QCOMPARE(reg.pendingReclamation(), std::size_t(0));
    QCOMPARE(flags.destroyed.load(), 1);
}

// A thread stays inside a handler (as one running a nested event loop would)
// while another adds and removes handlers: the read holds only the block it
// started on, so handlers added later are destroyed as soon as they are
// removed, and the memory held stays bounded however long the read lasts.
void tst_RegistryConcurrency::churnDuringLongReadIsFreed()
{
    BlockingHandler::Flags flags;
    Reg reg;
    reg.add(BlockingHandler(&flags));
    std::thread reader = notifyIntoBlockedHandler(reg, flags);

    struct Counted {
        std::shared_ptr<int> alive;
        void operator()(const Event &) const {}
    };
    auto token = std::make_shared<int>(0);
    constexpr int kChurn = 200;
    for (int i = 0; i < kChurn; ++i) {
        // Higher priority than the blocked handler: a new block each time,
        // never an append to the block the reader holds.
        const HandlerId id = reg.add(1 + i % 3, Counted{token});
        QVERIFY(reg.remove(id));
        // Only `token` itself and, at most, the handler just removed: every
        // earlier one has been destroyed although the read goes on.
        QVERIFY2(token.use_count() <= 2, qPrintable(QStringLiteral("after %1 removals, %2 handlers still alive")
                                                           .arg(i + 1)
                                                           .arg(token.use_count() - 1)));
    }
    // The reader's block, and little else, is still retained.
    QVERIFY(reg.pendingReclamation() <= 2);
    QVERIFY(!flags.finished.load());

    flags.release.store(true);
    reader.join();
    reg.clear();
    QCOMPARE(token.use_count(), 1L);
    QCOMPARE(reg.pendingReclamation(), std::size_t(0));
}

void tst_RegistryConcurrency::handlerRemovedFromTwoOfItsCalls_data()
{
    QTest::addColumn<QString>("how");
    QTest::newRow("remove") << "remove";
    QTest::newRow("batch commit") << "batch";
    QTest::newRow("Guard::reset") << "guard reset";
}

// A one-shot handler runs on two threads at once and both calls remove it.
// The removal that wins waits for the other call; the one that loses runs
// inside a call of the handler itself, so it must not wait for the winner's
// call in turn (that would deadlock): it returns false at once.
void tst_RegistryConcurrency::handlerRemovedFromTwoOfItsCalls()
{
    QFETCH(QString, how);
    const int kIterations = scaled(200, 40);
    for (int it = 0; it < kIterations; ++it) {
        Reg reg;
        std::latch bothInside(2);
        std::atomic<int> wins{0}, calls{0}, done{0};
        std::atomic<std::uint64_t> id{0};
        auto body = [&](const Event &) {
            calls.fetch_add(1);
            bothInside.arrive_and_wait();
            bool won = false;
            if (how == "remove") {
                won = reg.remove(HandlerId(id.load()));
            } else if (how == "batch") {
                auto batch = reg.batch();
                batch.remove(HandlerId(id.load()));
                won = batch.commit().removed == 1;
            } else {
                Guard g = reg.guard(HandlerId(id.load())); // one guard per call
                won = g.reset();
            }
            wins.fetch_add(won ? 1 : 0);
        };
        id.store(reg.add(body).value());
        std::thread threads[2];
        for (std::thread &t : threads) {
            t = std::thread([&] {
                reg.notify(Event{});
                done.fetch_add(1);
            });
        }
        if (!waitFor([&] { return done.load() == 2; }))
            deadlocked("two calls removing their own handler");
        for (std::thread &t : threads)
            t.join();
        QCOMPARE(calls.load(), 2);
        QCOMPARE(wins.load(), 1);
        QVERIFY(reg.empty());
        reg.notify(Event{});
        QCOMPARE(calls.load(), 2);
    }
}

void tst_RegistryConcurrency::removeNoWaitDoesNotWait_data()
{
    QTest::addColumn<bool>("viaGuard");
    QTest::newRow("removeNoWait") << false;
    QTest::newRow("Guard::resetNoWait") << true;
}

void tst_RegistryConcurrency::removeNoWaitDoesNotWait()
{
    QFETCH(bool, viaGuard);
    BlockingHandler::Flags flags;
    Reg reg;
    std::optional<Guard> guard;
    HandlerId id;
    if (viaGuard) {
        guard.emplace(reg.addGuarded(BlockingHandler(&flags)));
        id = guard->id();
    } else {
        id = reg.add(BlockingHandler(&flags));
    }

    std::thread notifier = notifyIntoBlockedHandler(reg, flags);

    std::atomic<bool> returned{false}, finishedAtReturn{true}, result{false};
    std::thread remover([&] {
        const bool r = viaGuard ? guard->resetNoWait() : reg.removeNoWait(id);
        finishedAtReturn.store(flags.finished.load());
        result.store(r);
        returned.store(true);
    });
    // The handler is released only after the remover returned (or, if the
    // library wrongly waits, after the watchdog): returning while the handler
    // is blocked proves that it did not wait.
    const bool returnedWhileBlocked = waitFor([&] { return returned.load(); }, kUnderTsan ? 20s : 10s);
    const int destroyedWhileRunning = flags.destroyed.load(); // still running: must be 0
    flags.release.store(true);
    remover.join();
    notifier.join();

    QVERIFY2(returnedWhileBlocked, "removeNoWait waited for the running handler");
    QVERIFY(!finishedAtReturn.load());
    QVERIFY(result.load());
    QCOMPARE(destroyedWhileRunning, 0);
    QVERIFY(!flags.destroyedBeforeFinished.load());
    reg.notify(Event{});
    QCOMPARE(flags.calls.load(), 1); // never started again
    // With nothing running any more, the next removal reclaims it.
    QVERIFY(reg.remove(reg.add([](const Event &) {})));
    QCOMPARE(reg.pendingReclamation(), std::size_t(0));
    QCOMPARE(flags.destroyed.load(), 1);
}

// ===========================================================================
// c2. remove(X) waits for calls of X only
// ===========================================================================

void tst_RegistryConcurrency::removeDoesNotWaitForUnrelatedCallbacks_data()
{
    QTest::addColumn<QString>("blocker");
    // Thread A first runs X (in a nested notification), then, in the same
    // outer notify, blocks in a callback that is not X:
    QTest::newRow("a later handler") << "handler";
    QTest::newRow("the error handler") << "error handler";
    QTest::newRow("a handler of a nested notify") << "nested handler";
    // X itself throws, and its own error handler blocks: X's call is over.
    QTest::newRow("X's own error handler") << "X's error handler";
}

void tst_RegistryConcurrency::removeDoesNotWaitForUnrelatedCallbacks()
{
    // X is not running when B removes it; A is busy in another callback until
    // it sees B's remove(X) return (or gives up at a deadline, so that a
    // wrong wait shows up as a failure instead of a hang). remove(X) must
    // return while A is still busy: it may wait for running calls of X only.
    QFETCH(QString, blocker);
    std::atomic<bool> blockerEntered{false}, removeReturned{false}, sawRemoveReturn{false};
    std::atomic<int> xCalls{0};
    const auto patience = kUnderTsan ? 10s : 3s; // spent only if remove() wrongly waits
    auto block = [&] {
        blockerEntered.store(true);
        sawRemoveReturn.store(waitFor([&] { return removeReturned.load(); }, patience));
    };

    sigreg::Registry<int> side; // X lives here and runs nested (level 1)
    Reg reg;                    // A notifies this one (level 0)
    const HandlerId x = side.add([&](const int &) {
        xCalls.fetch_add(1);
        if (blocker == "X's error handler")
            throw std::runtime_error("X fails");
    });
    side.setErrorHandler([&](const sigreg::HandlerFailure &) {
        if (blocker == "X's error handler")
            block();
    });
    sigreg::Registry<int> third;
    third.add([&](const int &) { block(); });
    reg.setErrorHandler([&](const sigreg::HandlerFailure &) {
        if (blocker == "error handler")
            block();
    });
    reg.add(2, [&](const Event &) { side.notify(1); }); // runs X, returns
    reg.add(1, [&](const Event &) {
        if (blocker == "handler")
            block();
        else if (blocker == "nested handler")
            third.notify(3); // the same nesting level X used
        else if (blocker == "error handler")
            throw std::runtime_error("reported to the error handler");
    });

    std::thread a([&] { reg.notify(Event{}); });
    if (!waitFor([&] { return blockerEntered.load(); }))
        deadlocked("thread A reaching the blocking callback");
    QCOMPARE(xCalls.load(), 1); // X ran and returned
    const bool removed = side.remove(x); // thread B (this one)
    removeReturned.store(true);
    a.join();

    QVERIFY(removed);
    QVERIFY2(sawRemoveReturn.load(),
             qPrintable(QStringLiteral("remove(X) waited for %1 on another thread, which is not X").arg(blocker)));
    side.notify(0);
    QCOMPARE(xCalls.load(), 1);
}

void tst_RegistryConcurrency::removeFromErrorHandlerWaitsForOtherCalls()
{
    // X runs on T2 (held there) and on T1, where it throws after a
    // removeNoWait(X). X's error handler, on T1, then calls remove(X): X's
    // call on T1 is over, so this removal is not "from inside X" and must
    // wait for X's call on T2 like any other.
    Reg reg;
    std::atomic<int> inX{0};
    std::atomic<bool> removedNoWait{false}, handlerRemoving{false}, release2{false}, done2{false};
    std::atomic<bool> removeReturned{false}, done2AtReturn{false};
    reg.setErrorHandler([&](const sigreg::HandlerFailure &f) {
        handlerRemoving.store(true);
        reg.remove(f.handler);
        done2AtReturn.store(done2.load());
        removeReturned.store(true);
    });
    const HandlerId x = reg.add([&](const Event &e) {
        inX.fetch_add(1);
        if (e.value == 2) {
            spinUntilSet(release2);
            done2.store(true); // the last thing X's call on T2 does
            return;
        }
        spinUntilSet(removedNoWait);
        throw std::runtime_error("X fails on T1");
    });
    std::thread t2([&] { reg.notify(Event{2}); });
    std::thread t1([&] { reg.notify(Event{1}); });
    if (!waitFor([&] { return inX.load() == 2; }))
        deadlocked("X starting on both threads");
    reg.removeNoWait(x);
    removedNoWait.store(true);
    if (!waitFor([&] { return handlerRemoving.load(); }))
        deadlocked("T1 reaching X's error handler");
    // Lets the removal get into its wait, or return wrongly. This only makes
    // the interesting interleaving likely; the assertions below do not
    // depend on the sleep being long enough.
    std::this_thread::sleep_for(kUnderTsan ? 50ms : 20ms);
    // Nobody released X on T2 yet: a removal that returned did not wait.
    const bool returnedWhileBlocked = removeReturned.load();
    release2.store(true); // a waiting removal returns only after this
    t2.join();
    t1.join();
    QVERIFY(removeReturned.load());
    QVERIFY2(!returnedWhileBlocked, "remove(X) in X's error handler returned before X's call on another thread ended");
    QVERIFY2(done2AtReturn.load(), "remove(X) in X's error handler returned while X still ran on another thread");
}

// ===========================================================================
// d. two handlers removing themselves at the same time on two threads
// ===========================================================================

void tst_RegistryConcurrency::simultaneousSelfRemovalDoesNotDeadlock_data()
{
    QTest::addColumn<QString>("how");
    QTest::newRow("remove") << "remove";
    QTest::newRow("Guard::reset") << "guard reset";
    QTest::newRow("Guard destructor") << "guard destructor";
    QTest::newRow("clear") << "clear"; // both clear at once: one removes both, the other nothing
}

void tst_RegistryConcurrency::simultaneousSelfRemovalDoesNotDeadlock()
{
    // Threads 0 and 1 notify one registry; handler X acts only on thread 0's
    // events, Y only on thread 1's. Both wait on a latch, so both are inside
    // their handler at once, then each removes itself. Each removal waits for
    // other threads to leave *its* handler only; neither thread is in the
    // other's handler, so neither waits for the other.
    QFETCH(QString, how);
    const int kIterations = scaled(200, 40);
    for (int it = 0; it < kIterations; ++it) {
        Reg reg;
        std::latch bothInside(2);
        std::optional<Guard> guards[2];
        HandlerId ids[2];
        std::atomic<int> calls[2] = {0, 0};
        std::atomic<int> removedOk[2] = {0, 0};
        std::atomic<int> done{0};
        for (int me = 0; me < 2; ++me) {
            auto body = [&, me](const Event &e) {
                if (e.value != me)
                    return;
                calls[me].fetch_add(1);
                bothInside.arrive_and_wait();
                bool ok = false;
                if (how == "remove") {
                    ok = reg.remove(ids[me]);
                } else if (how == "guard reset") {
                    ok = guards[me]->reset();
                } else if (how == "guard destructor") {
                    guards[me].reset();
                    ok = true;
                } else {
                    removedOk[me].fetch_add(int(reg.clear())); // counts handlers, not calls
                    return;
                }
                if (ok)
                    removedOk[me].fetch_add(1);
            };
            if (how.startsWith("guard")) {
                guards[me].emplace(reg.addGuarded(body));
                ids[me] = guards[me]->id();
            } else {
                ids[me] = reg.add(body);
            }
        }
        std::thread threads[2];
        for (int me = 0; me < 2; ++me) {
            threads[me] = std::thread([&, me] {
                reg.notify(Event{me});
                done.fetch_add(1);
            });
        }
        if (!waitFor([&] { return done.load() == 2; }))
            deadlocked("simultaneous self-removal");
        for (std::thread &t : threads)
            t.join();

        if (how == "clear") {
            QCOMPARE(removedOk[0].load() + removedOk[1].load(), 2);
        } else {
            QCOMPARE(removedOk[0].load(), 1);
            QCOMPARE(removedOk[1].load(), 1);
        }
        QVERIFY(reg.empty());
        reg.notify(Event{0});
        reg.notify(Event{1});
        QCOMPARE(calls[0].load(), 1); // one-shot: never again
        QCOMPARE(calls[1].load(), 1);
    }
}

// ===========================================================================
// e. guards racing with the destruction of their registry
// ===========================================================================

void tst_RegistryConcurrency::guardRacesWithRegistryDestruction_data()
{
    QTest::addColumn<QString>("how");
    QTest::newRow("destructor") << "destructor";
    QTest::newRow("reset") << "reset";
    QTest::newRow("resetNoWait") << "resetNoWait";
    QTest::newRow("move-assign") << "assign";
}

void tst_RegistryConcurrency::guardRacesWithRegistryDestruction()
{
    // A guard's removal and the registry's destruction start at the same
    // time on two threads. Whatever wins, every handler is destroyed exactly
    // once and nothing touches a dead registry (ASan/TSan watch that).
    QFETCH(QString, how);
    const int kIterations = scaled(2000, 300);
    constexpr int kGuards = 4;

    struct Counter {
        std::atomic<int> *destroyed;
        explicit Counter(std::atomic<int> *d) : destroyed(d) {}
        Counter(Counter &&o) noexcept : destroyed(std::exchange(o.destroyed, nullptr)) {}
        Counter(const Counter &) = delete;
        ~Counter()
        {
            if (destroyed)
                destroyed->fetch_add(1);
        }
        void operator()(const Event &) const {}
    };

    std::atomic<int> destroyed{0};
    std::unique_ptr<Reg> reg;
    std::vector<Guard> guards;
    std::barrier sync(2);
    std::thread worker([&] {
        for (int it = 0; it < kIterations; ++it) {
            sync.arrive_and_wait(); // guards are ready
            for (Guard &g : guards) {
                // Whether a reset removed the handler or found the registry
                // gone depends on the race; the destructor count below is
                // what must hold either way.
                if (how == "reset") {
                    (void)g.reset();
                } else if (how == "resetNoWait") {
                    (void)g.resetNoWait();
                } else if (how == "assign") {
                    g = Guard();
                }
            }
            guards.clear(); // destructors (no-ops for emptied guards)
            sync.arrive_and_wait(); // done
        }
    });
    for (int it = 0; it < kIterations; ++it) {
        reg = std::make_unique<Reg>();
        for (int g = 0; g < kGuards; ++g)
            guards.push_back(reg->addGuarded(Counter(&destroyed)));
        reg->add(Counter(&destroyed)); // one without a guard
        reg->notify(Event{});
        sync.arrive_and_wait();
        reg.reset(); // races with the worker's guard removals
        sync.arrive_and_wait();
    }
    worker.join();
    QCOMPARE(destroyed.load(), kIterations * (kGuards + 1));
}

// ===========================================================================
// h. notifications while a thread exits
// ===========================================================================

namespace {

using sigreg_test::recordsInUse;

/// A thread_local whose destructor notifies: it runs during thread exit, after
/// the thread's other code, where a thread that never notified before takes
/// its hazard record for the first time.
struct NotifyAtExit {
    Reg *reg = nullptr;
    ~NotifyAtExit()
    {
        if (reg)
            reg->notify(Event{2});
    }
};
thread_local NotifyAtExit t_notifyAtExit;

} // namespace

namespace {
/// A registry's owner, counting its destructions: the object a guarded
/// handler keeps alive in the two registry-destroyed-by-its-guard tests.
struct Owner {
    Reg events;
    std::atomic<int> *destroyed;
    explicit Owner(std::atomic<int> *d) : destroyed(d) {}
    ~Owner() { destroyed->fetch_add(1); }
};
} // namespace

// A registry destroyed inside the removal of its own guarded handler (the
// handler holds, through a guard it owns, the handler that keeps the
// registry's owner alive) while another thread removes other handlers of it
// through their guards: the destructor waits for those removals, not for the
// ones further up its own stack. A hang ends in the test's timeout; the
// sanitizer builds check the rest.
void tst_RegistryConcurrency::registryDestroyedByItsGuardWhileAnotherThreadRemoves()
{
    constexpr int kRounds = 300;
    std::atomic<int> destroyed{0};
    int removedByOthers = 0;
    for (int round = 0; round < kRounds; ++round) {
        auto owner = std::make_shared<Owner>(&destroyed);
        // Slow to destroy, so that the other thread's removals are often
        // still running when the registry's destructor starts.
        struct SlowToDestroy {
            bool armed = true;
            SlowToDestroy() = default;
            SlowToDestroy(SlowToDestroy &&o) noexcept : armed(std::exchange(o.armed, false)) {}
            ~SlowToDestroy()
            {
                for (int i = 0; armed && i < 50; ++i)
                    std::this_thread::yield();
            }
        };
        std::vector<Guard> others;
        for (int i = 0; i < 4; ++i)
            others.push_back(owner->events.addGuarded([slow = SlowToDestroy()](const Event &) {}));
        Guard keeper = owner->events.addGuarded([keep = owner](const Event &) {});
        Guard outer = owner->events.addGuarded([g = std::move(keeper)](const Event &) {});
        owner.reset(); // the keeper holds the last reference
        std::latch start(2);
        int removed = 0;
        std::thread other([&] {
            start.arrive_and_wait();
            for (Guard &g : others)
                removed += g.reset() ? 1 : 0; // false once the registry is gone
        });
        start.arrive_and_wait();
        QVERIFY(round % 2 ? outer.reset() : outer.resetNoWait());
        other.join();
        QCOMPARE(destroyed.load(), round + 1);
        removedByOthers += removed;
    }
    // Both orders happened at least once in 300 rounds is likely, not
    // certain: report it rather than assert it.
    qInfo("guard removals by the other thread that found the registry alive: %d of %d", removedByOthers,
          4 * kRounds);
}

// Two registries, each destroyed by the destructor of a guarded handler of
// the other, on two threads at once: handler H1 of R1 holds the last
// reference to R2's owner, H2 of R2 the last reference to R1's owner, and two
// threads reset the two guards together. Each registry's destructor runs on
// one thread while the other thread's guard removal of that registry is
// destroying its handler. That removal is done with the registry before it
// destroys the handler, so neither destructor may wait for it (before the
// fix, each waited for the other's removal to end: a deadlock).
void tst_RegistryConcurrency::twoRegistriesDestroyedByEachOthersGuardedHandlers()
{
    /// Holds an owner; its destructor waits until both handlers are being
    /// destroyed (both guard removals in progress), then lets the owner go.
    struct Keep {
        std::shared_ptr<Owner> owner;
        std::latch *bothDying;
        Keep(std::shared_ptr<Owner> o, std::latch *l) : owner(std::move(o)), bothDying(l) {}
        Keep(Keep &&o) noexcept : owner(std::move(o.owner)), bothDying(std::exchange(o.bothDying, nullptr)) {}
        Keep(const Keep &) = delete;
        ~Keep()
        {
            if (bothDying)
                bothDying->arrive_and_wait();
        }
        void operator()(const Event &) const {}
    };
    constexpr int kRounds = 20;
    std::atomic<int> destroyed{0};
    for (int round = 0; round < kRounds; ++round) {
        std::latch bothDying(2);
        auto o1 = std::make_shared<Owner>(&destroyed);
        auto o2 = std::make_shared<Owner>(&destroyed);
        Guard g1 = o1->events.addGuarded(Keep(o2, &bothDying));
        Guard g2 = o2->events.addGuarded(Keep(o1, &bothDying));
        o1->events.notify(Event{});
        o2->events.notify(Event{});
        o1.reset();
        o2.reset(); // each handler holds the last reference to the other owner
        std::atomic<int> finished{0};
        std::atomic<int> removed{0};
        std::thread a([&] {
            removed.fetch_add(g1.reset() ? 1 : 0);
            finished.fetch_add(1);
        });
        std::thread b([&] {
            removed.fetch_add(g2.reset() ? 1 : 0);
            finished.fetch_add(1);
        });
        if (!waitFor([&] { return finished.load() == 2; }))
            deadlocked("two registries destroyed by each other's guarded handlers");
        a.join();
        b.join();
        QCOMPARE(removed.load(), 2);
        QCOMPARE(destroyed.load(), 2 * (round + 1));
    }
}

void tst_RegistryConcurrency::notifyDuringThreadExit_data()
{
    QTest::addColumn<bool>("notifiedBefore");
    QTest::addRow("first notify at exit") << false;
    QTest::addRow("notified before") << true;
}

// A thread's first notify goes through the placeholder record (see
// tl_record in detail/hazard.h): it must take a record, run every handler,
// nest, and hand the record back when the thread ends, also when that first
// notify comes from a thread_local destructor.
void tst_RegistryConcurrency::notifyDuringThreadExit()
{
    QFETCH(bool, notifiedBefore);
    constexpr int kThreads = 40;
    Reg reg;
    Reg inner;
    std::atomic<int> outerCalls{0};
    std::atomic<int> innerCalls{0};
    std::atomic<int> sum{0};
    Guard g1 = reg.addGuarded([&](const Event &e) {
        outerCalls.fetch_add(1);
        sum.fetch_add(e.value);
        inner.notify(e); // nested, on a level other than level 0
    });
    Guard g2 = inner.addGuarded([&](const Event &e) {
        innerCalls.fetch_add(1);
        sum.fetch_add(e.value);
    });
    reg.notify(Event{0}); // this thread has its record; the count below excludes it
    outerCalls = 0;
    innerCalls = 0;
    const int before = recordsInUse();

    for (int t = 0; t < kThreads; ++t) {
        // One at a time: an exited thread's record must be free again before
        // the next thread starts, so the records in use never grow.
        std::thread th([&] {
            if (notifiedBefore)
                reg.notify(Event{1});
            t_notifyAtExit.reg = &reg;
        });
        th.join();
        QCOMPARE(recordsInUse(), before);
    }
    const int perThread = notifiedBefore ? 2 : 1;
    QCOMPARE(outerCalls.load(), kThreads * perThread);
    QCOMPARE(innerCalls.load(), kThreads * perThread);
    QCOMPARE(sum.load(), kThreads * 2 * (notifiedBefore ? 3 : 2));

    // No exited thread left an announcement behind that a waiting removal
    // would wait for.
    QVERIFY(g1.reset());
    QVERIFY(g2.reset());
}

#if SIGREG_MODULE_RECORDS
namespace {

/// What a thread's copy of its record pointer (detail::tl_moduleRecord, this
/// executable's) looked like at the steps of moduleCopyFollowsTheRecord.
struct CopySeen {
    std::atomic<int> placeholderAfterRelease{-1}; // copy reset before the record went back
    std::atomic<int> recordAfterRelease{-1};      // tl_record reset too
    std::atomic<int> notReattached{-1};           // later reads did not attach the copy again
    std::atomic<int> calls{0};
};
CopySeen g_copySeen;
Reg *g_exitReg = nullptr;

bool copyIsPlaceholder()
{
    return sigreg::detail::moduleRecord() == &sigreg::detail::g_placeholderRecord;
}

/// A pthread key destructor created after Sigreg's own key: glibc runs it
/// after Sigreg's has handed the record back, in the same round.
void notifyAfterRelease(void *) noexcept
{
    g_copySeen.placeholderAfterRelease = copyIsPlaceholder() ? 1 : 0;
    g_copySeen.recordAfterRelease = sigreg::detail::tl_record == &sigreg::detail::g_placeholderRecord ? 1 : 0;
    g_exitReg->notify(Event{5}); // takes a record again (released in a later round)
    g_exitReg->notify(Event{5}); // would attach the copy again, before the thread exited
    // It does not: this round may be glibc's last, and then nothing would
    // unlist it (tst_modulerecords::readInTheLastKeyDestructorRoundListsNoCopy).
    g_copySeen.notReattached = copyIsPlaceholder() && !sigreg::detail::tl_record->isPlaceholder() ? 1 : 0;
}

} // namespace
#endif

// The inline notify path reads this module's copy of the thread's record
// pointer (detail::tl_moduleRecord). It must be the placeholder or the
// thread's current record, never a record handed back: the copy is attached
// after a thread's first read and reset before the record goes back at
// thread exit, so a read from a later exit destructor takes a record anew
// (and, the thread exiting, leaves the copy the placeholder).
void tst_RegistryConcurrency::moduleCopyFollowsTheRecord()
{
#if !SIGREG_MODULE_RECORDS
    QSKIP("module copies of the record pointer are off on this platform");
#else
    // Fresh for every run of this function (QTest may repeat it).
    g_copySeen.placeholderAfterRelease = -1;
    g_copySeen.recordAfterRelease = -1;
    g_copySeen.notReattached = -1;
    g_copySeen.calls = 0;
    Reg reg;
    Reg inner;
    Guard g1 = reg.addGuarded([&](const Event &) {
        g_copySeen.calls.fetch_add(1);
        inner.notify(Event{0}); // nested: the copy stays as it is
    });
    Guard g2 = inner.addGuarded([](const Event &) {});
    reg.notify(Event{0}); // Sigreg's pthread key exists from here on
    pthread_key_t key;
    QCOMPARE(pthread_key_create(&key, notifyAfterRelease), 0);
    g_exitReg = &reg;
    const int before = recordsInUse();

    std::atomic<int> firstSeenPlaceholder{-1};
    std::atomic<int> attachedAfterRead{-1};
    std::atomic<int> listedInRecord{-1};
    std::thread th([&] {
        firstSeenPlaceholder = copyIsPlaceholder() ? 1 : 0;
        reg.notify(Event{1}); // takes the record (out of line), then attaches
        const auto *rec = sigreg::detail::tl_record;
        attachedAfterRead = sigreg::detail::moduleRecord() == rec ? 1 : 0;
        listedInRecord = sigreg_test::listsModuleCopy(rec, &sigreg::detail::tl_moduleRecord) ? 1 : 0;
        reg.notify(Event{1}); // the inline path, nesting
        pthread_setspecific(key, &reg);
    });
    th.join();
    pthread_key_delete(key);

    QCOMPARE(firstSeenPlaceholder.load(), 1);
    QCOMPARE(attachedAfterRead.load(), 1);
    QCOMPARE(listedInRecord.load(), 1);
    QCOMPARE(g_copySeen.placeholderAfterRelease.load(), 1);
    QCOMPARE(g_copySeen.recordAfterRelease.load(), 1);
    QCOMPARE(g_copySeen.notReattached.load(), 1);
    QCOMPARE(g_copySeen.calls.load(), 1 + 2 + 2);
    QCOMPARE(recordsInUse(), before); // handed back again after the late reads
    QVERIFY(g1.reset());
    QVERIFY(g2.reset());
#endif
}

QTEST_GUILESS_MAIN(tst_RegistryConcurrency)
namespace {
// What the notifying thread's handlers saw in its current notify: (priority,
// registration index) per call.
thread_local std::vector<std::pair<int, int>> t_seen;
} // namespace

void tst_RegistryConcurrency::inPlaceAddsAtBothEndsWhileNotifying()
{
    // One writer adds handlers above all others (prepended in place once the
    // snapshot has free cells in front), below all others (appended in place)
    // and at priority 0, between the two (a copy, tying with earlier ones),
    // while readers notify. Each notify must see its handlers in priority
    // order, ties in registration order, each at most once, and at least
    // every handler whose add() returned before the notify began.
    sigreg::Registry<int> reg;
    constexpr int kAdds = 3000;
    constexpr int kReaders = 2;
    std::atomic<int> registered{0};
    std::atomic<bool> done{false};
    std::atomic<int> violations{0};

    const auto check = [&](int before) {
        const auto &seen = t_seen;
        bool ok = int(seen.size()) >= before;
        std::vector<bool> once(std::size_t(kAdds), false);
        for (std::size_t k = 0; k < seen.size() && ok; ++k) {
            const auto [priority, index] = seen[k];
            ok = index >= 0 && index < kAdds && !once[std::size_t(index)];
            if (ok)
                once[std::size_t(index)] = true;
            if (ok && k > 0) {
                const auto [prevPriority, prevIndex] = seen[k - 1];
                ok = prevPriority > priority || (prevPriority == priority && prevIndex < index);
            }
        }
        if (!ok)
            violations.fetch_add(1);
    };
    std::latch running(kReaders); // the adds start once every reader notifies
    std::vector<std::thread> readers;
    for (int r = 0; r < kReaders; ++r) {
        readers.emplace_back([&] {
            t_seen.reserve(std::size_t(kAdds));
            reg.notify(0);
            running.count_down();
            while (!done.load(std::memory_order_acquire)) {
                const int before = registered.load(std::memory_order_acquire);
                t_seen.clear();
                reg.notify(0);
                check(before);
            }
        });
    }
    running.wait();
    int top = 0;
    int bottom = 0;
    for (int i = 0; i < kAdds; ++i) {
        const int priority = i % 3 == 0 ? ++top : i % 3 == 1 ? --bottom : 0;
        reg.add(priority, [priority, i](const int &) { t_seen.emplace_back(priority, i); });
        registered.store(i + 1, std::memory_order_release);
    }
    done.store(true, std::memory_order_release);
    for (std::thread &t : readers)
        t.join();

    QCOMPARE(violations.load(), 0);
    t_seen.clear();
    reg.notify(0);
    check(kAdds);
    QCOMPARE(violations.load(), 0);
    QCOMPARE(int(t_seen.size()), kAdds);
}

#include "tst_concurrency.moc"
