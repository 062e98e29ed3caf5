// SPDX-License-Identifier: MIT
// sigreg-soak: the core registry, the Qt facade and the typed bus under churn,
// all at once, for a configurable time, checking the invariants of the stress
// tests (tests/core/tst_concurrency.cpp, tests/core/tst_busstress.cpp,
// tests/qt/tst_qtstress.cpp) on every operation.
//
// Usage:
//   sigreg-soak [--seconds N] [--threads N] [--seed N] [--quiet]
//     --seconds N  how long the churn runs (default 10); a short drain follows
//     --threads N  notifying threads: each component gets max(2, N/2) of them
//                  (default max(4, hardware threads)); writers, consumers and
//                  Qt worker threads come on top (a fixed few per component)
//     --seed N     seed of the threads' random choices (default: random; the
//                  seed is printed, though thread timing differs between runs)
//     --quiet      only the final summary (and any violation)
//   Exit code: 0 clean, 1 invariant violations, 2 bad arguments. A watchdog
//   aborts the process with a message if the run, shutdown included, takes
//   longer than --seconds + 60 s (a deadlock).
//
// Under ThreadSanitizer (as CI runs it), with the tests' suppressions:
//   TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp ignore_noninstrumented_modules=1 halt_on_error=1"
//   build/tsan/tests/soak/sigreg-soak --seconds 20
//
// What runs concurrently for the whole duration
// ---------------------------------------------
// core  Two sigreg::Registry<E>. Notifier threads notify both. In A, writer
//       threads add handlers (add, addGuarded, batches; random priorities)
//       and remove them (remove, removeNoWait, guard reset / resetNoWait /
//       destruction, a second guard from guard(id), batches); handlers
//       sometimes throw, relay (a nested, checked notify of A), remove
//       themselves (one-shots) or add and remove a handler reentrantly. In
//       B, one writer adds and removes handlers and clear()s them all.
// qt    A sigreg::QtRegistry<E>. Notifier threads notify (also notifyAsync and
//       notifySequential, waiting for the result). Handlers run inline or in
//       worker QThreads (Direct, Auto, Queued, BlockingQueued), some return
//       QFuture<void> (ready, failed, or finished later by another thread),
//       some throw. A writer adds and removes handlers with stable contexts;
//       a context churner creates context QObjects in the workers, gives them
//       handlers and destroys them (in their thread) while notifies are in
//       flight.
// bus   A sigreg::Bus with three event types (one with a std::string). Emitter
//       threads emit all types (through emit and through Sender); a writer
//       adds and removes push handlers (some throwing); consumer threads own
//       receivers of small capacities, held for the whole run or subscribed
//       and unsubscribed meanwhile, and take events with tryReceive,
//       receiveFor and receive. On the Qt side, QtBusReceivers live in a
//       worker QThread (one per type for the whole run, others subscribed,
//       unsubscribed and destroyed meanwhile; one type also through
//       eventReceived(QVariant)), and a thread asks nextEvent() for the next
//       event over and over, cancelling some of the futures.
//
// Invariants (each violation is counted, described, and fails the run)
// ---------------------------------------------------------------------
// * No handler runs after its waiting removal returned (remove(), guards,
//   batches, clear(), a context's destruction): each handler has a flag set
//   right after that removal returned and checks it on entry. (A call running
//   on the removing thread itself has passed that check before; the flag is
//   not set for removeNoWait(), which does not promise it.)
// * Core, exactly once: every notify of A and B is checked by the notifying
//   thread. Before the notify it reads every handler slot (a slot word says
//   which handler instance is registered there and whether a removal started),
//   and after it reads them again: an instance that was published before and
//   whose removal had not started after must have been called exactly once by
//   that notify; no instance is ever called twice by one notify. Per-notify
//   counters live in a tally the event points to (inline calls run on the
//   notifying thread, nested notifies have their own tally).
// * Core, order: within one notify priorities never increase; among equal
//   priorities, handlers added one by one run in id (= registration) order.
// * Stable handlers (registered for the whole run) of core, Qt (inline and
//   queued to workers) and bus push handlers see every notify/emit of each
//   producer exactly once, in order.
// * Exception isolation: exceptions thrown (and futures failed) == failures
//   reported to the error handler == failureCount(), nothing unhandled.
// * Qt: handlers with a context run in the context's thread (unless Direct);
//   none runs after its context's destruction completed, and the handler is
//   gone then (contains(id) is false).
// * Bus receivers: per producer, events arrive in order without duplicates,
//   the string payload matches, Lagged reports add up to missedCount(); for
//   receivers subscribed throughout, received + lagged == emitted.
// * QtBusReceivers, the same, plus: callbacks run in the receiver's thread,
//   nothing is delivered after closed(), closed() comes once after
//   unsubscribe(), receivedCount()/missedCount() match what the callbacks
//   and lagged() saw, eventReceived() carries the event just delivered.
//   nextEvent(): every future not cancelled gets one event, emitted after
//   the call; cancelled ones leave no handler behind.
// * At the end: only the stable handlers are left, and once removed nothing
//   waits for reclamation and every handler object was destroyed.
//
// The run stops itself after --seconds (plus a drain of a few seconds) and
// prints a one-screen summary with the operation counts per component.

#include <sigreg/bus.h>
#include <sigreg/qt/qtbus.h>
#include <sigreg/qt/qtregistry.h>
#include <sigreg/registry.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QFuture>
#include <QtCore/QPromise>
#include <QtCore/QThread>

#include "qt_test_support.h"
#include "sanitizers.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__unix__)
#include <sys/resource.h>
#endif

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using sigreg::Guard;
using sigreg::HandlerId;
using u64 = std::uint64_t;

namespace {

// ============================================================================
// Shared infrastructure: violations, randomness, phases, the watchdog
// ============================================================================

/// Collects invariant violations from any thread: a count per kind and the
/// first few descriptions.
class Violations {
public:
    __attribute__((format(printf, 3, 4))) void add(const char *kind, const char *fmt, ...)
    {
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        m_total.fetch_add(1);
        std::lock_guard lock(m_mutex);
        if (++m_kinds[kind] <= 2 && m_samples.size() < 24) // the first two of each kind
            m_samples.push_back(std::string(kind) + ": " + buf);
    }
    u64 total() const { return m_total.load(); }
    void print(FILE *out)
    {
        std::lock_guard lock(m_mutex);
        for (const auto &[kind, n] : m_kinds)
            std::fprintf(out, "  VIOLATION %-34s x%llu\n", kind.c_str(), (unsigned long long)n);
        for (const std::string &s : m_samples)
            std::fprintf(out, "    e.g. %s\n", s.c_str());
    }

private:
    std::atomic<u64> m_total{0};
    std::mutex m_mutex;
    std::map<std::string, u64> m_kinds;
    std::vector<std::string> m_samples;
};
Violations g_violations;

#define VIOLATION(kind, ...) g_violations.add(kind, __VA_ARGS__)

struct Rng {
    std::mt19937_64 g;
    explicit Rng(u64 seed) : g(seed) {}
    int below(int n) { return int(g() % u64(n)); }
    bool chance(int percent) { return below(100) < percent; }
};

u64 g_seed = 0;
/// A thread's seed: the run's seed mixed with a stream number.
u64 seedFor(u64 stream)
{
    u64 z = g_seed + 0x9E3779B97F4A7C15ull * (stream + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

std::atomic<const char *> g_phase{"starting"};

/// Aborts the process when the run takes far longer than asked (a deadlock).
class Watchdog {
public:
    explicit Watchdog(std::chrono::seconds limit)
        : m_thread([this, limit] {
              std::unique_lock lock(m_mutex);
              if (!m_cv.wait_for(lock, limit, [this] { return m_done; })) {
                  std::fprintf(stderr,
                               "sigreg-soak: WATCHDOG: still running after %lld s (phase: %s): deadlock or hang; "
                               "aborting\n",
                               (long long)limit.count(), g_phase.load());
                  std::fflush(stderr);
                  std::abort();
              }
          })
    {
    }
    ~Watchdog()
    {
        {
            std::lock_guard lock(m_mutex);
            m_done = true;
        }
        m_cv.notify_all();
        m_thread.join();
    }

private:
    std::mutex m_mutex;
    std::condition_variable m_cv;
    bool m_done = false;
    std::thread m_thread;
};

/// Polls `pred` until it holds or `timeout` passes.
template <class Pred>
bool waitFor(Pred pred, std::chrono::milliseconds timeout)
{
    const auto deadline = Clock::now() + timeout;
    while (!pred()) {
        if (Clock::now() > deadline)
            return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

/// Relaxed counter, for statistics only.
struct Counter {
    std::atomic<u64> v{0};
    void operator++() { v.fetch_add(1, std::memory_order_relaxed); }
    void operator+=(u64 n) { v.fetch_add(n, std::memory_order_relaxed); }
    u64 get() const { return v.load(std::memory_order_relaxed); }
};

struct Config {
    int seconds = 10;
    int threads = 4;
    bool quiet = false;
    int notifiers() const { return std::max(2, threads / 2); }
};

// ============================================================================
// core: sigreg::Registry<E>
// ============================================================================
namespace core {

constexpr int kSlots = 64;
constexpr int kStable = 3; // slots 0..2 of registry A
constexpr int kMaxDepth = 2;

/// One notify's counters: the handler instance seen per slot and how often,
/// and the last priority / id seen. Only the notifying thread touches it.
struct Tally {
    u64 inst[kSlots];
    std::uint32_t count[kSlots];
    int lastPrio;
    u64 lastId;
};
struct Event {
    Tally *tally;
    int depth;
};

// A slot word: instance << 2 | state; 0 = empty.
enum : u64 { kLive = 0, kRemoving = 1, kSelfRemoving = 2, kSelfRemoved = 3 };
constexpr u64 word(u64 inst, u64 state) { return inst << 2 | state; }

enum class Kind : std::uint8_t { Stable, Checked, Throwing, Relay, OneShot, Reentrant, Temp };

struct Harness;

/// A handler's state, shared by the handler and its owner.
struct HState {
    HState(Harness &h, int slot, u64 inst, int prio, Kind kind, bool ordered);
    ~HState();
    HState(const HState &) = delete;
    HState &operator=(const HState &) = delete;

    Harness &h;
    const int slot; // -1: not tracked per notify
    const u64 inst;
    const int prio;
    const Kind kind;
    const bool ordered;       // added one by one: its id orders it among equal priorities
    std::atomic<u64> id{0};   // known once add() returned
    std::atomic<bool> removed{false};
    std::atomic<u64> calls{0};
};

struct Harness {
    explicit Harness(const char *n) : name(n)
    {
        for (auto &w : words)
            w.store(0);
        installErrorHandler();
    }

    const char *name;
    sigreg::Registry<Event> reg;
    std::array<std::atomic<u64>, kSlots> words;
    std::atomic<u64> nextInst{1};
    std::atomic<long> liveStates{0};

    Counter notifies, nested, adds, removes, noWaitRemoves, guardDrops, batches, clears, oneShots, reentrant,
        thrown, handled, checkedCalls;

    void installErrorHandler()
    {
        reg.setErrorHandler([this](const sigreg::HandlerFailure &) { ++handled; });
    }

    std::shared_ptr<HState> newState(int slot, int prio, Kind kind, bool ordered)
    {
        return std::make_shared<HState>(*this, slot, nextInst.fetch_add(1), prio, kind, ordered);
    }

    auto handlerFor(std::shared_ptr<HState> s)
    {
        return [s = std::move(s)](const Event &e) { s->h.call(*s, e); };
    }

    /// A notify checked for exactly-once delivery (see the header).
    void checkedNotify(int depth)
    {
        Tally t;
        std::memset(&t, 0, sizeof t);
        t.lastPrio = INT_MAX;
        u64 before[kSlots];
        for (int s = 0; s < kSlots; ++s)
            before[s] = words[std::size_t(s)].load();
        reg.notify(Event{&t, depth});
        ++(depth == 0 ? notifies : nested);
        for (int s = 0; s < kSlots; ++s) {
            if (t.count[s] > 1)
                VIOLATION("core.duplicateCall", "registry %s: handler instance %llu (slot %d) called %u times by "
                          "one notify", name, (unsigned long long)t.inst[s], s, t.count[s]);
            const u64 w = before[s];
            if (w == 0 || (w & 3) != kLive)
                continue;
            if (words[std::size_t(s)].load() != w)
                continue; // removed (or its removal started) meanwhile: may or may not be called
            ++checkedCalls;
            if (t.inst[s] != (w >> 2) || t.count[s] != 1)
                VIOLATION("core.missedCall",
                          "registry %s: handler instance %llu (slot %d), registered for the whole notify, was "
                          "called %u times (slot saw instance %llu)",
                          name, (unsigned long long)(w >> 2), s, t.inst[s] == (w >> 2) ? t.count[s] : 0u,
                          (unsigned long long)t.inst[s]);
        }
    }

    /// Every handler's body.
    void call(HState &s, const Event &e)
    {
        if (s.removed.load())
            VIOLATION("core.callAfterRemove", "registry %s: handler instance %llu called after its removal returned",
                      name, (unsigned long long)s.inst);
        Tally &t = *e.tally;
        if (s.slot >= 0) {
            const std::size_t i = std::size_t(s.slot);
            if (t.inst[i] == s.inst) {
                ++t.count[i];
            } else if (t.inst[i] == 0) {
                t.inst[i] = s.inst;
                t.count[i] = 1;
            } else {
                VIOLATION("core.twoInstancesOneNotify",
                          "registry %s: slot %d: instances %llu and %llu both called by one notify (one was "
                          "removed before the other was added)",
                          name, s.slot, (unsigned long long)t.inst[i], (unsigned long long)s.inst);
            }
        }
        const u64 id = s.ordered ? s.id.load() : 0;
        if (s.prio > t.lastPrio) {
            VIOLATION("core.priorityOrder", "registry %s: priority %d ran after priority %d in one notify", name,
                      s.prio, t.lastPrio);
        } else if (s.prio == t.lastPrio) {
            if (id != 0 && t.lastId != 0 && id < t.lastId)
                VIOLATION("core.tieOrder", "registry %s: equal priority %d: id %llu ran after id %llu", name, s.prio,
                          (unsigned long long)id, (unsigned long long)t.lastId);
            if (id != 0)
                t.lastId = id;
        } else {
            t.lastPrio = s.prio;
            t.lastId = id;
        }
        const u64 n = s.calls.fetch_add(1, std::memory_order_relaxed);
        switch (s.kind) {
        case Kind::Throwing:
            if ((n & 7) == 0) {
                ++thrown;
                throw std::runtime_error("soak: core handler failure");
            }
            break;
        case Kind::Relay:
            if (e.depth < kMaxDepth && (n & 3) == 0)
                checkedNotify(e.depth + 1);
            break;
        case Kind::OneShot:
            selfRemove(s);
            break;
        case Kind::Reentrant:
            if ((n & 3) == 0) {
                // Add a handler from inside a handler, then remove it again.
                auto temp = newState(-1, int(n % 7) - 3, Kind::Temp, true);
                const HandlerId tid = reg.add(temp->prio, handlerFor(temp));
                temp->id.store(tid.value());
                if (!reg.remove(tid))
                    VIOLATION("core.removeResult", "registry %s: reentrant remove of a fresh handler returned false",
                              name);
                temp->removed.store(true);
                ++reentrant;
            }
            break;
        default:
            break;
        }
    }

    void selfRemove(HState &s)
    {
        const u64 id = s.id.load();
        if (id == 0)
            return; // add() has not returned yet
        u64 live = word(s.inst, kLive);
        auto &w = words[std::size_t(s.slot)];
        if (!w.compare_exchange_strong(live, word(s.inst, kSelfRemoving)))
            return; // another call (or the owner) is removing it
        if (reg.remove(HandlerId(id))) {
            s.removed.store(true);
            ++oneShots;
        } else {
            VIOLATION("core.removeResult", "registry %s: one-shot %llu: remove() of itself returned false", name,
                      (unsigned long long)s.inst);
        }
        w.store(word(s.inst, kSelfRemoved));
    }
};

HState::HState(Harness &harness, int sl, u64 in, int pr, Kind k, bool ord)
    : h(harness), slot(sl), inst(in), prio(pr), kind(k), ordered(ord)
{
    h.liveStates.fetch_add(1);
}
HState::~HState() { h.liveStates.fetch_sub(1); }

/// A handler a writer owns, in one of its slots.
struct Owned {
    std::shared_ptr<HState> state;
    HandlerId id;
    std::optional<Guard> guard;
};

class Soak {
public:
    explicit Soak(const Config &c) : m_cfg(c) {}

    void start()
    {
        // Stable handlers of A: slots 0..2, for the whole run.
        const int prios[kStable] = {3, 0, -3};
        for (int s = 0; s < kStable; ++s) {
            auto st = m_a.newState(s, prios[s], Kind::Stable, true);
            const HandlerId id = m_a.reg.add(st->prio, m_a.handlerFor(st));
            st->id.store(id.value());
            m_a.words[std::size_t(s)].store(word(st->inst, kLive));
            m_stable.push_back({st, id, std::nullopt});
        }
        const int notifiers = m_cfg.notifiers();
        for (int t = 0; t < notifiers; ++t) {
            m_threads.emplace_back([this, t] {
                Rng rng(seedFor(100 + u64(t)));
                while (!m_stopNotify.load(std::memory_order_relaxed))
                    (rng.below(4) == 0 ? m_b : m_a).checkedNotify(0);
            });
        }
        constexpr int kWriters = 2;
        constexpr int per = (kSlots - kStable) / kWriters;
        for (int w = 0; w < kWriters; ++w)
            m_writers.emplace_back([this, w] { writerA(w, kStable + w * per, per); });
        m_writers.emplace_back([this] { writerB(); });
    }

    void stop()
    {
        m_stopWrite.store(true);
        for (auto &t : m_writers)
            t.join();
        m_stopNotify.store(true);
        for (auto &t : m_threads)
            t.join();
    }

    void check()
    {
        for (Harness *h : {&m_a, &m_b}) {
            if (h->thrown.get() != h->handled.get() || h->reg.failureCount() != h->thrown.get()
                || h->reg.unhandledFailureCount() != 0)
                VIOLATION("core.exceptionIsolation",
                          "registry %s: %llu thrown, %llu reported to the error handler, failureCount %llu, "
                          "unhandled %llu",
                          h->name, (unsigned long long)h->thrown.get(), (unsigned long long)h->handled.get(),
                          (unsigned long long)h->reg.failureCount(), (unsigned long long)h->reg.unhandledFailureCount());
        }
        if (m_a.reg.size() != std::size_t(kStable) || m_b.reg.size() != 0)
            VIOLATION("core.leftover", "registry A has %zu handlers (expected %d), B has %zu (expected 0)",
                      m_a.reg.size(), kStable, m_b.reg.size());
        for (Owned &o : m_stable)
            if (!m_a.reg.remove(o.id))
                VIOLATION("core.removeResult", "stable handler %llu: remove() returned false",
                          (unsigned long long)o.state->inst);
        for (Owned &o : m_stable)
            o.state->removed.store(true);
        m_stable.clear();
        // Nothing notifies any more: a removal reclaims everything.
        for (Harness *h : {&m_a, &m_b}) {
            const HandlerId probe = h->reg.add([](const Event &) {});
            h->reg.remove(probe);
            if (h->reg.pendingReclamation() != 0 || h->liveStates.load() != 0)
                VIOLATION("core.reclamation", "registry %s: %zu objects await reclamation, %ld handler objects alive",
                          h->name, h->reg.pendingReclamation(), h->liveStates.load());
        }
    }

    void summary(FILE *out) const
    {
        for (const Harness *h : {&m_a, &m_b}) {
            std::fprintf(out,
                         "core %s notifies %llu (+%llu nested), checked calls %llu | adds %llu, removes %llu (noWait "
                         "%llu), guard drops %llu, batches %llu, clears %llu, one-shots %llu, reentrant add+remove "
                         "%llu | thrown %llu = reported %llu\n",
                         h->name, (unsigned long long)h->notifies.get(), (unsigned long long)h->nested.get(),
                         (unsigned long long)h->checkedCalls.get(), (unsigned long long)h->adds.get(),
                         (unsigned long long)h->removes.get(), (unsigned long long)h->noWaitRemoves.get(),
                         (unsigned long long)h->guardDrops.get(), (unsigned long long)h->batches.get(),
                         (unsigned long long)h->clears.get(), (unsigned long long)h->oneShots.get(),
                         (unsigned long long)h->reentrant.get(), (unsigned long long)h->thrown.get(),
                         (unsigned long long)h->handled.get());
        }
    }

private:
    /// Publishes a handler: its slot says "registered" from now on.
    static void published(Harness &h, Owned &o)
    {
        h.words[std::size_t(o.state->slot)].store(word(o.state->inst, kLive));
        ++h.adds;
    }

    static Kind randomKind(Rng &rng)
    {
        const int r = rng.below(100);
        if (r < 35)
            return Kind::Checked;
        if (r < 50)
            return Kind::Throwing;
        if (r < 65)
            return Kind::Relay;
        if (r < 85)
            return Kind::OneShot;
        return Kind::Reentrant;
    }

    /// A writer of A: owns slots [first, first + n).
    void writerA(int w, int first, int n)
    {
        Rng rng(seedFor(200 + u64(w)));
        Harness &h = m_a;
        auto mine = std::vector<std::optional<Owned>>(std::size_t(n));
        auto freeSlot = [&]() -> int {
            const int start = rng.below(n);
            for (int k = 0; k < n; ++k) {
                const int i = (start + k) % n;
                if (!mine[std::size_t(i)])
                    return i;
            }
            return -1;
        };
        auto addOne = [&](int i, int how, std::optional<sigreg::Registry<Event>::Batch> &batch,
                          std::vector<int> &batchSlots) {
            const int slot = first + i;
            const int prio = rng.below(7) - 3;
            auto st = h.newState(slot, prio, randomKind(rng), how != 2);
            Owned o{st, {}, std::nullopt};
            if (how == 0) {
                o.id = h.reg.add(prio, h.handlerFor(st));
            } else if (how == 1) {
                o.guard.emplace(h.reg.addGuarded(prio, h.handlerFor(st)));
                o.id = o.guard->id();
            } else {
                o.id = batch->add(prio, h.handlerFor(st));
                batchSlots.push_back(i);
            }
            st->id.store(o.id.value());
            mine[std::size_t(i)] = std::move(o);
            if (how != 2)
                published(h, *mine[std::size_t(i)]);
        };
        // Starts the removal of slot i; false if a one-shot is removing itself.
        auto claim = [&](int i) -> bool {
            Owned &o = *mine[std::size_t(i)];
            auto &word_ = h.words[std::size_t(first + i)];
            u64 live = word(o.state->inst, kLive);
            if (word_.compare_exchange_strong(live, word(o.state->inst, kRemoving)))
                return true;
            if (live == word(o.state->inst, kSelfRemoved)) {
                // It removed itself: its guard (if any) finds nothing to do.
                if (o.guard && o.guard->reset())
                    VIOLATION("core.removeResult", "guard of a self-removed one-shot removed it again");
                mine[std::size_t(i)].reset();
                word_.store(0);
            }
            return false;
        };
        auto release = [&](int i) {
            h.words[std::size_t(first + i)].store(0);
            mine[std::size_t(i)].reset();
            ++h.removes;
        };
        auto removeOne = [&](int i, bool allowNoWait) {
            if (!claim(i))
                return;
            Owned &o = *mine[std::size_t(i)];
            bool ok = true, waited = true;
            const int how = allowNoWait ? rng.below(4) : 0;
            if (o.guard) {
                switch (how) {
                case 1:
                    ok = o.guard->resetNoWait();
                    waited = false;
                    ++h.noWaitRemoves;
                    break;
                case 2:
                    o.guard.reset(); // the destructor removes, waiting
                    ++h.guardDrops;
                    break;
                default:
                    ok = o.guard->reset();
                    ++h.guardDrops;
                    break;
                }
            } else {
                switch (how) {
                case 1:
                    ok = h.reg.removeNoWait(o.id);
                    waited = false;
                    ++h.noWaitRemoves;
                    break;
                case 2: {
                    Guard g = h.reg.guard(o.id); // a second owner, dropped at once
                    ++h.guardDrops;
                    break;
                }
                default:
                    ok = h.reg.remove(o.id);
                    break;
                }
            }
            if (!ok)
                VIOLATION("core.removeResult", "registry A: removal of owned handler %llu returned false",
                          (unsigned long long)o.state->inst);
            if (waited)
                o.state->removed.store(true);
            release(i);
        };

        while (!m_stopWrite.load(std::memory_order_relaxed)) {
            const int op = rng.below(100);
            std::optional<sigreg::Registry<Event>::Batch> none;
            std::vector<int> unused;
            if (op < 40) {
                const int i = freeSlot();
                if (i >= 0)
                    addOne(i, rng.below(2), none, unused);
            } else if (op < 80) {
                const int i = rng.below(n);
                if (mine[std::size_t(i)])
                    removeOne(i, true);
            } else if (op < 95) {
                // A batch: a few adds and up to two removals, published at once.
                std::optional<sigreg::Registry<Event>::Batch> batch(h.reg.batch());
                std::vector<int> added, removed;
                const int adds = 1 + rng.below(3);
                for (int k = 0; k < adds; ++k) {
                    const int i = freeSlot();
                    if (i >= 0)
                        addOne(i, 2, batch, added);
                }
                for (int k = 0; k < 2; ++k) {
                    const int i = rng.below(n);
                    if (mine[std::size_t(i)] && !mine[std::size_t(i)]->guard
                        && std::find(added.begin(), added.end(), i) == added.end()
                        && std::find(removed.begin(), removed.end(), i) == removed.end() && claim(i)) {
                        batch->remove(mine[std::size_t(i)]->id);
                        removed.push_back(i);
                    }
                }
                const sigreg::BatchResult r = batch->commit();
                if (r.added != added.size() || r.removed != removed.size())
                    VIOLATION("core.batchResult", "batch: %zu/%zu added, %zu/%zu removed", r.added, added.size(),
                              r.removed, removed.size());
                for (int i : removed) {
                    mine[std::size_t(i)]->state->removed.store(true);
                    release(i);
                }
                for (int i : added)
                    published(h, *mine[std::size_t(i)]);
                ++h.batches;
            } else if (op < 97) {
                h.installErrorHandler(); // replaced while failures are reported
            } else {
                std::this_thread::yield();
            }
        }
        // Clean up: everything this writer still owns goes.
        for (int i = 0; i < n; ++i) {
            while (mine[std::size_t(i)]) {
                removeOne(i, false);
                if (mine[std::size_t(i)])
                    std::this_thread::yield(); // a one-shot is removing itself
            }
        }
    }

    /// The writer of B: adds, removes, and clear()s everything now and then.
    void writerB()
    {
        Rng rng(seedFor(300));
        Harness &h = m_b;
        std::vector<std::optional<Owned>> mine(kSlots);
        auto clearAll = [&] {
            std::size_t live = 0;
            for (int i = 0; i < kSlots; ++i) {
                if (mine[std::size_t(i)]) {
                    h.words[std::size_t(i)].store(word(mine[std::size_t(i)]->state->inst, kRemoving));
                    ++live;
                }
            }
            const std::size_t n = h.reg.clear();
            if (n != live)
                VIOLATION("core.clearResult", "registry B: clear() removed %zu handlers, %zu were registered", n,
                          live);
            for (int i = 0; i < kSlots; ++i) {
                if (mine[std::size_t(i)]) {
                    mine[std::size_t(i)]->state->removed.store(true);
                    mine[std::size_t(i)].reset();
                    h.words[std::size_t(i)].store(0);
                    ++h.removes;
                }
            }
            ++h.clears;
        };
        while (!m_stopWrite.load(std::memory_order_relaxed)) {
            const int op = rng.below(100);
            const int i = rng.below(kSlots);
            auto &slot = mine[std::size_t(i)];
            if (op < 55) {
                if (!slot) {
                    const int prio = rng.below(7) - 3;
                    auto st = h.newState(i, prio, rng.chance(25) ? Kind::Throwing : Kind::Checked, true);
                    const HandlerId id = h.reg.add(prio, h.handlerFor(st));
                    st->id.store(id.value());
                    slot = Owned{st, id, std::nullopt};
                    published(h, *slot);
                }
            } else if (op < 95) {
                if (slot) {
                    h.words[std::size_t(i)].store(word(slot->state->inst, kRemoving));
                    if (!h.reg.remove(slot->id))
                        VIOLATION("core.removeResult", "registry B: remove() of an owned handler returned false");
                    slot->state->removed.store(true);
                    slot.reset();
                    h.words[std::size_t(i)].store(0);
                    ++h.removes;
                }
            } else {
                clearAll();
            }
            if (rng.chance(20))
                std::this_thread::sleep_for(50us); // leave the cores to registry A's writers too
        }
        clearAll();
    }

    const Config &m_cfg;
    Harness m_a{"A"};
    Harness m_b{"B"};
    std::vector<Owned> m_stable;
    std::atomic<bool> m_stopNotify{false}, m_stopWrite{false};
    std::vector<std::thread> m_threads, m_writers;
};

} // namespace core

// ============================================================================
// qt: sigreg::QtRegistry<E>
// ============================================================================
namespace qt {

struct Event {
    int producer;
    u64 seq;
};
constexpr int kMaxProducers = 64;
constexpr int kWorkers = 3;
constexpr u64 kMaxBacklog = sigreg_test::kUnderSanitizer ? 2000 : 20000; // queued events not yet delivered

/// Finishes the promises of "later" async handlers on its own thread.
class Completer {
public:
    Completer()
        : m_thread([this] { run(); })
    {
    }
    ~Completer() { stop(); }

    QFuture<void> make(bool fail)
    {
        auto p = std::make_shared<QPromise<void>>();
        p->start();
        QFuture<void> f = p->future();
        {
            std::lock_guard lock(m_mutex);
            m_queue.push_back({std::move(p), fail});
        }
        m_cv.notify_one();
        return f;
    }
    void stop()
    {
        {
            std::lock_guard lock(m_mutex);
            if (m_stop)
                return;
            m_stop = true;
        }
        m_cv.notify_one();
        m_thread.join();
    }
    Counter finished;

private:
    struct Item {
        std::shared_ptr<QPromise<void>> promise;
        bool fail;
    };
    void run()
    {
        std::unique_lock lock(m_mutex);
        for (;;) {
            m_cv.wait(lock, [this] { return m_stop || !m_queue.empty(); });
            if (m_queue.empty())
                return; // stopped and drained
            Item it = std::move(m_queue.front());
            m_queue.pop_front();
            lock.unlock();
            if (it.fail)
                it.promise->setException(std::make_exception_ptr(std::runtime_error("soak: future failure")));
            it.promise->finish();
            ++finished;
            it.promise.reset();
            lock.lock();
        }
    }

    std::mutex m_mutex;
    std::condition_variable m_cv;
    std::deque<Item> m_queue;
    bool m_stop = false;
    std::thread m_thread;
};

/// A churned handler's state.
struct HState {
    std::atomic<bool> removed{false}; // its waiting removal returned
    std::atomic<bool> dead{false};    // its context's destruction completed
    QThread *expect = nullptr;        // the thread it must run in (null: any)
    bool throws = false;
    int asyncMode = 0; // for async handlers: 0 ready, 1 failed, 2 finished later, 3 finished later, failed
    std::atomic<u64> calls{0};
};

class Soak {
public:
    explicit Soak(const Config &c) : m_cfg(c)
    {
        for (int i = 0; i < kWorkers; ++i)
            m_workers.push_back(std::make_unique<sigreg_test::Worker>("soak-worker"));
        m_reg.setErrorHandler([this](const sigreg::HandlerFailure &) { ++m_reported; });
        for (auto &s : m_sent)
            s.store(0);
    }

    void start()
    {
        // Stable handlers: one inline, one per worker (Queued, Auto, Queued).
        m_reg.add(1, [this](const Event &e) {
            std::uint64_t &next = m_inlineNext[std::size_t(e.producer)].v; // written by that producer only
            if (e.seq != next)
                VIOLATION("qt.stableInline", "producer %d: inline handler got seq %llu, expected %llu", e.producer,
                          (unsigned long long)e.seq, (unsigned long long)next);
            next = e.seq + 1;
        });
        for (int w = 0; w < kWorkers; ++w) {
            Stable &st = m_stableQueued[std::size_t(w)];
            st.thread = m_workers[std::size_t(w)]->thread();
            st.last.fill(-1);
            m_reg.add(0, m_workers[std::size_t(w)]->context, [&st](const Event &e) {
                if (QThread::currentThread() != st.thread)
                    VIOLATION("qt.wrongThread", "stable queued handler ran outside its context's thread");
                std::int64_t &last = st.last[std::size_t(e.producer)];
                if (std::int64_t(e.seq) != last + 1)
                    VIOLATION("qt.stableQueued", "producer %d: queued handler got seq %llu after %lld", e.producer,
                              (unsigned long long)e.seq, (long long)last);
                last = std::int64_t(e.seq);
                st.received.fetch_add(1, std::memory_order_release);
            }, w == 1 ? Qt::AutoConnection : Qt::QueuedConnection);
        }
        m_stableCount = m_reg.size();

        const int producers = std::min(m_cfg.notifiers(), kMaxProducers);
        m_producers = producers;
        for (int p = 0; p < producers; ++p)
            m_notifiers.emplace_back([this, p] { notifier(p); });
        m_churners.emplace_back([this] { writer(); });
        m_churners.emplace_back([this] { contextChurner(); });
    }

    void stop()
    {
        m_stopChurn.store(true);
        for (auto &t : m_churners)
            t.join();
        m_stopNotify.store(true);
        for (auto &t : m_notifiers)
            t.join();
        // Drain: everything queued to the workers is delivered.
        for (auto &w : m_workers)
            w->sync();
        u64 total = 0;
        for (int p = 0; p < m_producers; ++p)
            total += m_sent[std::size_t(p)].load();
        m_total = total;
        waitFor([&] {
            for (auto &w : m_workers)
                w->sync();
            for (auto &st : m_stableQueued)
                if (st.received.load(std::memory_order_acquire) != total)
                    return false;
            return true;
        }, 20s);
        m_completer.stop();
        waitFor([&] { return m_reported.get() == m_thrown.get() + m_futureFailures.get(); }, 20s);
    }

    void check()
    {
        for (int p = 0; p < m_producers; ++p) {
            if (m_inlineNext[std::size_t(p)].v != m_sent[std::size_t(p)].load())
                VIOLATION("qt.stableInline", "producer %d: inline stable handler saw %llu of %llu notifies", p,
                          (unsigned long long)m_inlineNext[std::size_t(p)].v,
                          (unsigned long long)m_sent[std::size_t(p)].load());
        }
        for (int w = 0; w < kWorkers; ++w) {
            const u64 got = m_stableQueued[std::size_t(w)].received.load();
            if (got != m_total)
                VIOLATION("qt.stableQueued", "worker %d: stable queued handler got %llu of %llu events", w,
                          (unsigned long long)got, (unsigned long long)m_total);
        }
        const u64 failures = m_thrown.get() + m_futureFailures.get();
        if (m_reported.get() != failures || m_reg.failureCount() != failures)
            VIOLATION("qt.exceptionIsolation",
                      "%llu thrown + %llu failed futures, %llu reported to the error handler, failureCount %llu",
                      (unsigned long long)m_thrown.get(), (unsigned long long)m_futureFailures.get(),
                      (unsigned long long)m_reported.get(), (unsigned long long)m_reg.failureCount());
        if (m_reg.size() != m_stableCount)
            VIOLATION("qt.leftover", "%zu handlers left, expected the %zu stable ones", m_reg.size(), m_stableCount);
        m_reg.clear();
        for (auto &w : m_workers)
            w->stop();
    }

    void summary(FILE *out) const
    {
        std::fprintf(out,
                     "qt     notifies %llu (async %llu, sequential %llu), queued deliveries %llu | adds %llu, "
                     "removes %llu, contexts destroyed %llu (handlers %llu) | async started %llu | thrown %llu + "
                     "failed futures %llu = reported %llu\n",
                     (unsigned long long)m_total, (unsigned long long)m_async.get(),
                     (unsigned long long)m_sequential.get(), (unsigned long long)(m_total * kWorkers),
                     (unsigned long long)m_adds.get(), (unsigned long long)m_removes.get(),
                     (unsigned long long)m_contexts.get(), (unsigned long long)m_contextHandlers.get(),
                     (unsigned long long)m_asyncCalls.get(), (unsigned long long)m_thrown.get(),
                     (unsigned long long)m_futureFailures.get(), (unsigned long long)m_reported.get());
    }

private:
    struct alignas(64) Next {
        u64 v = 0;
    };
    struct Stable {
        QThread *thread = nullptr;
        std::array<std::int64_t, kMaxProducers> last{}; // written in the worker thread only
        std::atomic<u64> received{0};
    };

    u64 minDelivered() const
    {
        u64 m = UINT64_MAX;
        for (const auto &st : m_stableQueued)
            m = std::min(m, st.received.load(std::memory_order_relaxed));
        return m;
    }

    void notifier(int p)
    {
        Rng rng(seedFor(400 + u64(p)));
        u64 seq = 0;
        while (!m_stopNotify.load(std::memory_order_relaxed)) {
            // Let the workers keep up: bounded backlog.
            while (m_sentTotal.load(std::memory_order_relaxed) - minDelivered() > kMaxBacklog
                   && !m_stopNotify.load(std::memory_order_relaxed))
                std::this_thread::sleep_for(200us);
            const Event e{p, seq++};
            m_sentTotal.fetch_add(1, std::memory_order_relaxed);
            const int r = rng.below(200);
            if (r == 0) {
                QFuture<void> f = m_reg.notifyAsync(e);
                f.waitForFinished();
                ++m_async;
            } else if (r == 1) {
                QFuture<void> f = m_reg.notifySequential(e);
                f.waitForFinished();
                ++m_sequential;
            } else {
                m_reg.notify(e);
            }
            m_sent[std::size_t(p)].store(seq, std::memory_order_relaxed);
        }
    }

    /// The checks every churned handler makes on entry; then it may throw.
    void enter(HState &s)
    {
        if (s.removed.load())
            VIOLATION("qt.callAfterRemove", "a handler ran after its removal returned");
        if (s.dead.load())
            VIOLATION("qt.callAfterContextDeath", "a handler ran after its context's destruction completed");
        if (s.expect && QThread::currentThread() != s.expect)
            VIOLATION("qt.wrongThread", "a handler with a context ran outside the context's thread");
        const u64 n = s.calls.fetch_add(1, std::memory_order_relaxed);
        if (s.throws && (n & 7) == 0) {
            ++m_thrown;
            throw std::runtime_error("soak: qt handler failure");
        }
    }

    auto syncHandler(std::shared_ptr<HState> s)
    {
        return [this, s = std::move(s)](const Event &) { enter(*s); };
    }
    auto asyncHandler(std::shared_ptr<HState> s)
    {
        return [this, s = std::move(s)](const Event &) -> QFuture<void> {
            enter(*s);
            ++m_asyncCalls;
            switch (s->asyncMode) {
            case 1:
                ++m_futureFailures;
                return QtFuture::makeExceptionalFuture<void>(
                    std::make_exception_ptr(std::runtime_error("soak: failed future")));
            case 2:
                return m_completer.make(false);
            case 3:
                ++m_futureFailures;
                return m_completer.make(true);
            default:
                return QtFuture::makeReadyFuture();
            }
        };
    }

    /// Adds and removes handlers with stable contexts (or none).
    void writer()
    {
        Rng rng(seedFor(500));
        struct Owned {
            std::shared_ptr<HState> s;
            HandlerId id;
            std::optional<Guard> guard;
        };
        std::vector<Owned> owned;
        auto removeAt = [&](std::size_t i) {
            Owned o = std::move(owned[i]);
            owned[i] = std::move(owned.back());
            owned.pop_back();
            bool ok = true, waited = true;
            const int how = rng.below(4);
            if (o.guard) {
                if (how == 0) {
                    ok = o.guard->resetNoWait();
                    waited = false;
                } else if (how == 1) {
                    o.guard.reset();
                } else {
                    ok = o.guard->reset();
                }
            } else if (how == 0) {
                ok = m_reg.removeNoWait(o.id);
                waited = false;
            } else {
                ok = m_reg.remove(o.id);
            }
            if (!ok)
                VIOLATION("qt.removeResult", "removal of an owned handler returned false");
            if (waited)
                o.s->removed.store(true);
            ++m_removes;
        };
        const Qt::ConnectionType types[] = {Qt::DirectConnection, Qt::AutoConnection, Qt::QueuedConnection,
                                            Qt::BlockingQueuedConnection};
        while (!m_stopChurn.load(std::memory_order_relaxed)) {
            if (owned.size() < 24 && rng.chance(50)) {
                auto s = std::make_shared<HState>();
                s->throws = rng.chance(20);
                const int prio = rng.below(5) - 2;
                const int kind = rng.below(6); // 0 inline, 1 async, 2..5 a connection type with a worker's context
                Owned o{s, {}, std::nullopt};
                auto addIt = [&](auto &&...args) {
                    if (rng.chance(30)) {
                        o.guard.emplace(m_reg.addGuarded(args...));
                        o.id = o.guard->id();
                    } else {
                        o.id = m_reg.add(args...);
                    }
                };
                if (kind == 0) {
                    addIt(prio, syncHandler(s));
                } else if (kind == 1) {
                    s->asyncMode = rng.below(4);
                    addIt(prio, asyncHandler(s));
                } else {
                    const Qt::ConnectionType type = types[kind - 2];
                    sigreg_test::Worker &w = *m_workers[std::size_t(rng.below(kWorkers))];
                    s->expect = type == Qt::DirectConnection ? nullptr : w.thread();
                    addIt(prio, w.context, syncHandler(s), type);
                }
                owned.push_back(std::move(o));
                ++m_adds;
            } else if (!owned.empty()) {
                removeAt(std::size_t(rng.below(int(owned.size()))));
            }
            if (rng.chance(10))
                std::this_thread::sleep_for(100us);
        }
        while (!owned.empty())
            removeAt(owned.size() - 1);
    }

    /// Creates contexts in the workers, gives them handlers and destroys
    /// them (in their thread) while notifies run.
    void contextChurner()
    {
        Rng rng(seedFor(600));
        const Qt::ConnectionType types[] = {Qt::DirectConnection, Qt::AutoConnection, Qt::QueuedConnection,
                                            Qt::BlockingQueuedConnection};
        while (!m_stopChurn.load(std::memory_order_relaxed)) {
            sigreg_test::Worker &w = *m_workers[std::size_t(rng.below(kWorkers))];
            QObject *ctx = nullptr;
            w.run([&ctx] { ctx = new QObject; });
            const int n = 1 + rng.below(3);
            std::vector<std::shared_ptr<HState>> states;
            std::vector<HandlerId> ids;
            for (int k = 0; k < n; ++k) {
                auto s = std::make_shared<HState>();
                const Qt::ConnectionType type = types[rng.below(4)];
                s->expect = type == Qt::DirectConnection ? nullptr : w.thread();
                s->throws = rng.chance(20);
                ids.push_back(m_reg.add(rng.below(5) - 2, ctx, syncHandler(s), type));
                states.push_back(std::move(s));
                ++m_contextHandlers;
            }
            std::this_thread::sleep_for(std::chrono::microseconds(rng.below(2000)));
            // Marked dead in the context's thread right after the delete:
            // a queued call delivered there after the death runs after this.
            w.run([ctx, &states] {
                delete ctx;
                for (auto &s : states)
                    s->dead.store(true);
            });
            for (HandlerId id : ids)
                if (m_reg.contains(id))
                    VIOLATION("qt.contextHandlerSurvived", "a handler is still registered after its context died");
            ++m_contexts;
        }
    }

    const Config &m_cfg;
    std::vector<std::unique_ptr<sigreg_test::Worker>> m_workers;
    Completer m_completer;
    sigreg::QtRegistry<Event> m_reg;
    std::array<Stable, kWorkers> m_stableQueued;
    std::array<Next, kMaxProducers> m_inlineNext;
    std::array<std::atomic<u64>, kMaxProducers> m_sent;
    std::atomic<u64> m_sentTotal{0};
    std::size_t m_stableCount = 0;
    int m_producers = 0;
    u64 m_total = 0;
    std::atomic<bool> m_stopNotify{false}, m_stopChurn{false};
    std::vector<std::thread> m_notifiers, m_churners;
    Counter m_async, m_sequential, m_adds, m_removes, m_contexts, m_contextHandlers, m_asyncCalls, m_thrown,
        m_futureFailures, m_reported;
};

} // namespace qt

// ============================================================================
// bus: sigreg::Bus
// ============================================================================
namespace bus {

constexpr int kMaxProducers = 64;
constexpr int kTypes = 3;
constexpr int kConsumers = 2;

template <int K>
struct Plain {
    int producer; // -1: the final event of the run
    u64 seq;
};
struct Tagged {
    int producer;
    u64 seq;
    std::string tag; // "p<producer>/<seq>", long enough to be allocated
};
using T0 = Plain<0>;
using T1 = Plain<1>;
using T2 = Tagged;

std::string tagFor(int producer, u64 seq)
{
    return "producer " + std::to_string(producer) + " / event " + std::to_string(seq);
}
template <class E>
E make(int producer, u64 seq)
{
    if constexpr (std::is_same_v<E, Tagged>)
        return E{producer, seq, tagFor(producer, seq)};
    else
        return E{producer, seq};
}
template <class E>
bool intact(const E &e)
{
    if constexpr (std::is_same_v<E, Tagged>)
        return e.tag == tagFor(e.producer, e.seq);
    else
        return true;
}
template <class E>
constexpr int typeIndex()
{
    if constexpr (std::is_same_v<E, T0>)
        return 0;
    else if constexpr (std::is_same_v<E, T1>)
        return 1;
    else
        return 2;
}
const char *const kTypeNames[kTypes] = {"Plain<0>", "Plain<1>", "Tagged"};

struct Stats {
    Counter emits, received, lagReports, lagged, subscribes, unsubscribes, handlerAdds, handlerRemoves, handlerCalls,
        thrown, reported, receiverFailures;
    // The Qt side: QtBusReceivers in a worker thread, nextEvent() futures.
    Counter qtReceived, qtLagged, qtVariants, qtSubscribes, qtDestroyed, qtClosed, nextEvents, nextCancelled;
};

/// A receiver and what its consumer saw.
struct TrackedBase {
    virtual ~TrackedBase() = default;
    /// Takes some events; returns false once done (throughout receivers:
    /// after the final event and an empty ring).
    virtual bool step(Rng &rng, bool mayBlock) = 0;
    virtual void finalCheck(const u64 *emittedPerType) = 0;
    bool throughout = false;
    bool fin = false;
    int life = 0; // churned receivers: steps left
};

template <class E>
struct Tracked final : TrackedBase {
    Tracked(sigreg::Receiver<E> r, Stats &s) : rx(std::move(r)), st(s) { last.fill(-1); }

    sigreg::Receiver<E> rx;
    Stats &st;
    std::array<std::int64_t, kMaxProducers> last;
    u64 received = 0, lagged = 0;

    /// Accounts one result; returns false for Empty / TimedOut / Closed.
    bool account(const sigreg::ReceiveResult<E> &r)
    {
        switch (r.status()) {
        case sigreg::ReceiveStatus::Received: {
            if (fin)
                VIOLATION("bus.afterFinal", "%s: an event arrived after the run's final event", kTypeNames[typeIndex<E>()]);
            if (!intact(*r))
                VIOLATION("bus.corrupt", "%s: event payload does not match its producer/seq", kTypeNames[typeIndex<E>()]);
            if (r->producer < 0) {
                fin = true;
                return true;
            }
            std::int64_t &prev = last[std::size_t(r->producer)];
            if (std::int64_t(r->seq) <= prev)
                VIOLATION("bus.disorder", "%s, producer %d: seq %llu after %lld (duplicate or out of order)",
                          kTypeNames[typeIndex<E>()], r->producer, (unsigned long long)r->seq, (long long)prev);
            prev = std::int64_t(r->seq);
            ++received;
            ++st.received;
            return true;
        }
        case sigreg::ReceiveStatus::Lagged:
            if (r.lagged() == 0)
                VIOLATION("bus.lagZero", "%s: Lagged reported with 0 missed events", kTypeNames[typeIndex<E>()]);
            lagged += r.lagged();
            ++st.lagReports;
            st.lagged += r.lagged();
            return true;
        case sigreg::ReceiveStatus::Closed:
            VIOLATION("bus.closed", "%s: a subscribed receiver reported Closed", kTypeNames[typeIndex<E>()]);
            return false;
        default:
            return false;
        }
    }

    bool step(Rng &rng, bool mayBlock) override
    {
        const int how = rng.below(10);
        if (how < 6) {
            for (int k = 0; k < 64 && account(rx.tryReceive()); ++k) {
            }
        } else if (how < 9 || !throughout || fin || !mayBlock) {
            account(rx.receiveFor(std::chrono::microseconds(rng.below(1000))));
        } else {
            // Blocks: the final event of the run wakes it at the latest.
            const auto r = rx.receive();
            if (r.status() == sigreg::ReceiveStatus::Empty || r.status() == sigreg::ReceiveStatus::TimedOut)
                VIOLATION("bus.receiveStatus", "receive() returned %s", std::string(toString(r.status())).c_str());
            account(r);
        }
        if (rx.missedCount() != lagged)
            VIOLATION("bus.missedCount", "%s: missedCount() %llu, Lagged reports add up to %llu",
                      kTypeNames[typeIndex<E>()], (unsigned long long)rx.missedCount(), (unsigned long long)lagged);
        if (throughout && fin) {
            // Done once nothing follows the final event.
            const auto r = rx.tryReceive();
            if (r.status() != sigreg::ReceiveStatus::Empty) {
                account(r);
                return true;
            }
            return false;
        }
        return true;
    }

    void finalCheck(const u64 *emittedPerType) override
    {
        if (!throughout)
            return;
        const u64 emitted = emittedPerType[typeIndex<E>()];
        if (!fin || received + lagged != emitted)
            VIOLATION("bus.accounting",
                      "%s, capacity %zu: received %llu + lagged %llu != emitted %llu (final event %s)",
                      kTypeNames[typeIndex<E>()], rx.capacity(), (unsigned long long)received,
                      (unsigned long long)lagged, (unsigned long long)emitted, fin ? "seen" : "missing");
    }
};

/// A churned push handler's state.
struct HState {
    std::atomic<bool> removed{false};
    bool throws = false;
    std::atomic<u64> calls{0};
};

/// A QtBusReceiver<E> living in the Qt receivers' worker thread, and what its
/// callbacks saw there. Created, used and destroyed in that thread; what the
/// other threads read is atomic (the hand-over through Qt's event queue is
/// invisible to TSan).
struct QtTrackedBase {
    virtual ~QtTrackedBase() = default;
    /// In the worker thread: unsubscribe() (closed() follows), checked.
    virtual void unsubscribe() = 0;
    /// In the worker thread: the receiver's own counts agree with its callbacks'.
    virtual void checkCounts() = 0;
    virtual int type() const = 0;
    virtual std::size_t capacity() const = 0;

    std::atomic<u64> received{0}, lagged{0};
    std::atomic<bool> fin{false};
    std::atomic<int> closedCount{0};
};

template <class E>
struct QtTracked final : QtTrackedBase {
    /// In the worker thread.
    QtTracked(sigreg::Bus &bus, std::size_t capacity, Stats &s)
        : st(s), thread(QThread::currentThread()), cap(capacity)
    {
        last.fill(-1);
        rx = std::make_unique<sigreg::QtBusReceiver<E>>(bus, cap);
        rx->onEvent([this](const E &e) { onEvent(e); });
        QObject::connect(rx.get(), &sigreg::QtBusReceiverBase::lagged, rx.get(), [this](quint64 n) { onLagged(n); });
        QObject::connect(rx.get(), &sigreg::QtBusReceiverBase::closed, rx.get(), [this] {
            const int n = closedCount.fetch_add(1) + 1;
            if (n > 1)
                VIOLATION("qtbus.closedTwice", "%s: closed() emitted %d times", kTypeNames[typeIndex<E>()], n);
            ++st.qtClosed;
        });
        if constexpr (std::is_same_v<E, T0>) {
            // One type also goes through eventReceived(QVariant): the copy must be the event just delivered.
            QObject::connect(rx.get(), &sigreg::QtBusReceiverBase::eventReceived, rx.get(), [this](const QVariant &v) {
                if (!v.canConvert<E>() || v.value<E>().producer != lastProducer || v.value<E>().seq != lastSeq)
                    VIOLATION("qtbus.variant", "eventReceived() carried another event than the callbacks got");
                ++variants;
                ++st.qtVariants;
            });
        }
    }

    void onEvent(const E &e)
    {
        const char *name = kTypeNames[typeIndex<E>()];
        if (QThread::currentThread() != thread)
            VIOLATION("qtbus.wrongThread", "%s: a QtBusReceiver callback ran outside the receiver's thread", name);
        if (closedCount.load() > 0)
            VIOLATION("qtbus.afterClosed", "%s: an event was delivered after closed()", name);
        if (fin.load(std::memory_order_relaxed))
            VIOLATION("qtbus.afterFinal", "%s: an event arrived after the run's final event", name);
        if (!intact(e))
            VIOLATION("qtbus.corrupt", "%s: event payload does not match its producer/seq", name);
        lastProducer = e.producer;
        lastSeq = e.seq;
        ++deliveries;
        if (e.producer < 0) {
            fin.store(true, std::memory_order_release);
            return;
        }
        std::int64_t &prev = last[std::size_t(e.producer)];
        if (std::int64_t(e.seq) <= prev)
            VIOLATION("qtbus.disorder", "%s, producer %d: seq %llu after %lld (duplicate or out of order)", name,
                      e.producer, (unsigned long long)e.seq, (long long)prev);
        prev = std::int64_t(e.seq);
        received.fetch_add(1, std::memory_order_relaxed);
        ++st.qtReceived;
    }

    void onLagged(quint64 n)
    {
        if (n == 0)
            VIOLATION("qtbus.lagZero", "%s: lagged(0)", kTypeNames[typeIndex<E>()]);
        const u64 total = lagged.fetch_add(n, std::memory_order_relaxed) + n;
        if (rx->missedCount() != total)
            VIOLATION("qtbus.missedCount", "%s: missedCount() %llu, lagged() signals add up to %llu",
                      kTypeNames[typeIndex<E>()], (unsigned long long)rx->missedCount(), (unsigned long long)total);
        st.qtLagged += n;
    }

    void unsubscribe() override
    {
        rx->unsubscribe();
        if (rx->isSubscribed())
            VIOLATION("qtbus.unsubscribe", "%s: isSubscribed() after unsubscribe()", kTypeNames[typeIndex<E>()]);
    }

    void checkCounts() override
    {
        if (rx->receivedCount() != deliveries || rx->missedCount() != lagged.load(std::memory_order_relaxed))
            VIOLATION("qtbus.counts", "%s: receivedCount() %llu / missedCount() %llu, the callbacks saw %llu / %llu",
                      kTypeNames[typeIndex<E>()], (unsigned long long)rx->receivedCount(),
                      (unsigned long long)rx->missedCount(), (unsigned long long)deliveries,
                      (unsigned long long)lagged.load(std::memory_order_relaxed));
        if constexpr (std::is_same_v<E, T0>) {
            if (variants != deliveries)
                VIOLATION("qtbus.variant", "eventReceived() %llu times for %llu deliveries",
                          (unsigned long long)variants, (unsigned long long)deliveries);
        }
    }

    int type() const override { return typeIndex<E>(); }
    std::size_t capacity() const override { return cap; }

    Stats &st;
    QThread *const thread;
    const std::size_t cap;
    // The worker thread's own (the callbacks run there).
    std::array<std::int64_t, kMaxProducers> last;
    int lastProducer = 0;
    u64 lastSeq = 0, deliveries = 0, variants = 0;
    std::unique_ptr<sigreg::QtBusReceiver<E>> rx; // last: destroyed first, before what its callbacks use
};

class Soak {
public:
    explicit Soak(const Config &c) : m_cfg(c), m_bus(16)
    {
        m_bus.setErrorHandler([this](const sigreg::BusFailure &f) {
            ++m_st.reported;
            if (f.receiver)
                ++m_st.receiverFailures;
        });
    }

    void start()
    {
        m_producers = std::min(m_cfg.notifiers(), kMaxProducers);
        for (auto &per : m_stableNext)
            for (auto &n : per)
                n.v = 0;
        addStable<T0>();
        addStable<T1>();
        addStable<T2>();
        // Receivers for the whole run, before anything is emitted.
        const std::size_t caps[] = {1, 2, 4, 8, 16};
        for (int c = 0; c < kConsumers; ++c) {
            m_owned.emplace_back();
            auto &mine = m_owned.back();
            Rng rng(seedFor(700 + u64(c)));
            mine.push_back(subscribe<T0>(caps[rng.below(5)], true));
            mine.push_back(subscribe<T1>(caps[rng.below(5)], true));
            mine.push_back(subscribe<T2>(caps[rng.below(5)], true));
        }
        // QtBusReceivers for the whole run, one per type, in the Qt worker.
        Rng qrng(seedFor(1100));
        const std::size_t qtCaps[] = {2, 8, 64};
        for (int k = 0; k < kTypes; ++k)
            m_qtThroughout.push_back(makeQt(k, qtCaps[qrng.below(3)]));
        for (int c = 0; c < kConsumers; ++c)
            m_consumers.emplace_back([this, c] { consumer(c); });
        for (int p = 0; p < m_producers; ++p)
            m_emitters.emplace_back([this, p] { emitter(p); });
        m_writer = std::thread([this] { writer(); });
        m_qtChurner = std::thread([this] { qtChurner(); });
        m_nextEventer = std::thread([this] { nextEventer(); });
    }

    void stop()
    {
        m_stopEmit.store(true);
        for (auto &t : m_emitters)
            t.join();
        m_qtChurner.join();
        {
            // The final event of each type: wakes blocked consumers, ends their
            // run, and fulfils the future nextEventer() may be waiting for (it
            // asks for no other once the finals are out).
            std::lock_guard lock(m_finalMutex);
            m_bus.publish(make<T0>(-1, 0));
            m_bus.publish(make<T1>(-1, 0));
            m_bus.publish(make<T2>(-1, 0));
            m_finalsPublished = true;
        }
        m_nextEventer.join();
        for (auto &t : m_consumers)
            t.join();
        m_stopWrite.store(true);
        m_writer.join();
        // The Qt receivers: each gets to the final event, then their counts
        // are checked and they are destroyed (in their thread).
        for (auto &t : m_qtThroughout) {
            QtTrackedBase *q = t.get();
            if (!waitFor([&] { return q->fin.load(std::memory_order_acquire); }, 20s))
                VIOLATION("qtbus.finalMissing", "%s QtBusReceiver: the final event did not arrive within 20 s",
                          kTypeNames[q->type()]);
            const u64 emitted = m_emitted[std::size_t(q->type())];
            const u64 received = q->received.load(), lagged = q->lagged.load();
            if (received + lagged != emitted)
                VIOLATION("qtbus.accounting", "%s QtBusReceiver, capacity %zu: received %llu + lagged %llu != emitted %llu",
                          kTypeNames[q->type()], q->capacity(), (unsigned long long)received,
                          (unsigned long long)lagged, (unsigned long long)emitted);
            inQtWorker([q] { q->checkCounts(); });
            destroyQt(std::move(t));
        }
        m_qtThroughout.clear();
        m_qtWorker.stop();
    }

    void check()
    {
        for (auto &mine : m_owned)
            for (auto &t : mine)
                t->finalCheck(m_emitted.data());
        for (int k = 0; k < kTypes; ++k) {
            for (int p = 0; p < m_producers; ++p) {
                const u64 seen = m_stableNext[std::size_t(k)][std::size_t(p)].v;
                if (seen != m_emittedBy[std::size_t(k)][std::size_t(p)])
                    VIOLATION("bus.stableHandler", "%s, producer %d: stable push handler saw %llu of %llu events",
                              kTypeNames[k], p, (unsigned long long)seen,
                              (unsigned long long)m_emittedBy[std::size_t(k)][std::size_t(p)]);
            }
        }
        if (m_st.thrown.get() != m_st.reported.get() || m_bus.failureCount() != m_st.thrown.get()
            || m_bus.unhandledFailureCount() != 0 || m_st.receiverFailures.get() != 0)
            VIOLATION("bus.exceptionIsolation",
                      "%llu thrown, %llu reported (%llu receiver copies), failureCount %llu, unhandled %llu",
                      (unsigned long long)m_st.thrown.get(), (unsigned long long)m_st.reported.get(),
                      (unsigned long long)m_st.receiverFailures.get(), (unsigned long long)m_bus.failureCount(),
                      (unsigned long long)m_bus.unhandledFailureCount());
        if (m_bus.handlerCount<T0>() != 1 || m_bus.handlerCount<T1>() != 1 || m_bus.handlerCount<T2>() != 1)
            VIOLATION("bus.leftover", "push handlers left: %zu/%zu/%zu, expected 1 each (the stable ones)",
                      m_bus.handlerCount<T0>(), m_bus.handlerCount<T1>(), m_bus.handlerCount<T2>());
        const std::size_t receivers = m_bus.receiverCount<T0>() + m_bus.receiverCount<T1>() + m_bus.receiverCount<T2>();
        if (receivers != std::size_t(kConsumers * kTypes))
            VIOLATION("bus.leftover", "%zu receivers subscribed, expected %d", receivers, kConsumers * kTypes);
        m_owned.clear();
        if (m_bus.receiverCount<T0>() + m_bus.receiverCount<T1>() + m_bus.receiverCount<T2>() != 0)
            VIOLATION("bus.leftover", "receivers still subscribed after all were destroyed");
    }

    void summary(FILE *out) const
    {
        u64 emitted = 0;
        for (u64 e : m_emitted)
            emitted += e;
        std::fprintf(out,
                     "bus    emits %llu (%d types), received %llu, lagged %llu in %llu reports | receivers "
                     "subscribed %llu, unsubscribed %llu | push handlers added %llu, removed %llu, calls %llu | "
                     "thrown %llu = reported %llu\n"
                     "qtbus  QtBusReceivers: received %llu (as QVariant %llu), lagged %llu, subscribed %llu, "
                     "destroyed %llu, closed() %llu | nextEvent: fulfilled %llu, cancelled %llu\n",
                     (unsigned long long)emitted, kTypes, (unsigned long long)m_st.received.get(),
                     (unsigned long long)m_st.lagged.get(), (unsigned long long)m_st.lagReports.get(),
                     (unsigned long long)m_st.subscribes.get(), (unsigned long long)m_st.unsubscribes.get(),
                     (unsigned long long)m_st.handlerAdds.get(), (unsigned long long)m_st.handlerRemoves.get(),
                     (unsigned long long)m_st.handlerCalls.get(), (unsigned long long)m_st.thrown.get(),
                     (unsigned long long)m_st.reported.get(), (unsigned long long)m_st.qtReceived.get(),
                     (unsigned long long)m_st.qtVariants.get(), (unsigned long long)m_st.qtLagged.get(),
                     (unsigned long long)m_st.qtSubscribes.get(), (unsigned long long)m_st.qtDestroyed.get(),
                     (unsigned long long)m_st.qtClosed.get(), (unsigned long long)m_st.nextEvents.get(),
                     (unsigned long long)m_st.nextCancelled.get());
    }

private:
    struct alignas(64) Next {
        u64 v = 0;
    };

    template <class E>
    void addStable()
    {
        auto &per = m_stableNext[std::size_t(typeIndex<E>())];
        m_bus.on<E>(0, [&per](const E &e) {
            if (e.producer < 0)
                return;
            u64 &next = per[std::size_t(e.producer)].v; // written by that producer's thread only
            if (e.seq != next)
                VIOLATION("bus.stableHandler", "%s, producer %d: push handler got seq %llu, expected %llu",
                          kTypeNames[typeIndex<E>()], e.producer, (unsigned long long)e.seq, (unsigned long long)next);
            next = e.seq + 1;
        });
    }

    template <class E>
    std::unique_ptr<TrackedBase> subscribe(std::size_t capacity, bool throughout)
    {
        auto t = std::make_unique<Tracked<E>>(m_bus.subscribe<E>(capacity), m_st);
        t->throughout = throughout;
        ++m_st.subscribes;
        return t;
    }

    void emitter(int p)
    {
        Rng rng(seedFor(800 + u64(p)));
        const sigreg::Sender<T0> s0 = m_bus.sender<T0>();
        const sigreg::Sender<T2> s2 = m_bus.sender<T2>();
        std::array<u64, kTypes> seq{};
        for (u64 i = 0; !m_stopEmit.load(std::memory_order_relaxed); ++i) {
            const bool viaSender = rng.chance(50);
            switch (i % kTypes) {
            case 0:
                if (viaSender)
                    s0.publish(make<T0>(p, seq[0]++));
                else
                    m_bus.publish(make<T0>(p, seq[0]++));
                break;
            case 1:
                m_bus.publish(make<T1>(p, seq[1]++));
                m_progress1[std::size_t(p)].v.store(seq[1], std::memory_order_release);
                break;
            default:
                if (viaSender)
                    s2.publish(make<T2>(p, seq[2]++));
                else
                    m_bus.publish(make<T2>(p, seq[2]++));
                break;
            }
            ++m_st.emits;
            if ((i & 255) == 0)
                std::this_thread::yield();
        }
        std::lock_guard lock(m_mutex);
        for (int k = 0; k < kTypes; ++k) {
            m_emittedBy[std::size_t(k)][std::size_t(p)] = seq[std::size_t(k)];
            m_emitted[std::size_t(k)] += seq[std::size_t(k)];
        }
    }

    void consumer(int c)
    {
        Rng rng(seedFor(900 + u64(c)));
        auto &mine = m_owned[std::size_t(c)];
        const std::size_t throughout = mine.size();
        std::vector<bool> done(throughout, false);
        std::vector<std::unique_ptr<TrackedBase>> churned;
        for (;;) {
            const bool emitting = !m_stopEmit.load(std::memory_order_relaxed);
            // Churn receivers while events flow.
            if (emitting && churned.size() < 3 && rng.chance(5)) {
                const std::size_t cap = std::size_t(1 + rng.below(8));
                std::unique_ptr<TrackedBase> t;
                switch (rng.below(kTypes)) {
                case 0:
                    t = subscribe<T0>(cap, false);
                    break;
                case 1:
                    t = subscribe<T1>(cap, false);
                    break;
                default:
                    t = subscribe<T2>(cap, false);
                    break;
                }
                t->life = 1 + rng.below(200);
                churned.push_back(std::move(t));
            }
            for (std::size_t i = 0; i < churned.size();) {
                churned[i]->step(rng, false);
                if (--churned[i]->life <= 0 || !emitting) {
                    churned[i] = std::move(churned.back());
                    churned.pop_back();
                    ++m_st.unsubscribes;
                } else {
                    ++i;
                }
            }
            bool all = true;
            for (std::size_t i = 0; i < throughout; ++i) {
                if (!done[i])
                    done[i] = !mine[i]->step(rng, true);
                all = all && done[i];
            }
            if (all)
                break;
        }
    }

    template <class E>
    std::pair<HandlerId, std::optional<Guard>> addHandler(std::shared_ptr<HState> s, int prio, bool guarded)
    {
        auto f = [this, s](const E &) {
            if (s->removed.load())
                VIOLATION("bus.callAfterRemove", "%s: push handler ran after its removal returned",
                          kTypeNames[typeIndex<E>()]);
            ++m_st.handlerCalls;
            if (s->throws && (s->calls.fetch_add(1, std::memory_order_relaxed) & 7) == 0) {
                ++m_st.thrown;
                throw std::runtime_error("soak: bus handler failure");
            }
        };
        if (guarded) {
            Guard g = m_bus.onGuarded<E>(prio, std::move(f));
            const HandlerId id = g.id();
            return {id, std::move(g)};
        }
        return {m_bus.on<E>(prio, std::move(f)), std::nullopt};
    }

    /// Runs `f` in the Qt worker thread and waits for it.
    template <class F>
    void inQtWorker(F f)
    {
        if (!m_qtWorker.run(std::move(f)))
            VIOLATION("qtbus.worker", "a function run in the Qt worker did not complete");
    }

    /// A QtBusReceiver of the type with index `type`, made in the Qt worker.
    std::unique_ptr<QtTrackedBase> makeQt(int type, std::size_t capacity)
    {
        QtTrackedBase *made = nullptr;
        inQtWorker([&] {
            switch (type) {
            case 0:
                made = new QtTracked<T0>(m_bus, capacity, m_st);
                break;
            case 1:
                made = new QtTracked<T1>(m_bus, capacity, m_st);
                break;
            default:
                made = new QtTracked<T2>(m_bus, capacity, m_st);
                break;
            }
        });
        ++m_st.qtSubscribes;
        return std::unique_ptr<QtTrackedBase>(made);
    }

    void destroyQt(std::unique_ptr<QtTrackedBase> t)
    {
        QtTrackedBase *q = t.release();
        inQtWorker([q] { delete q; });
        ++m_st.qtDestroyed;
    }

    /// Subscribes QtBusReceivers in the Qt worker and ends them (unsubscribe()
    /// then destruction, or destruction alone) while events flow.
    void qtChurner()
    {
        Rng rng(seedFor(1200));
        struct Churned {
            std::unique_ptr<QtTrackedBase> t;
            bool unsubscribed;
            int life;
        };
        std::vector<Churned> live;
        auto end = [&](Churned &c) {
            QtTrackedBase *q = c.t.get();
            // closed() follows unsubscribe(), once the buffered events are delivered.
            if (c.unsubscribed && !waitFor([q] { return q->closedCount.load() >= 1; }, 10s))
                VIOLATION("qtbus.notClosed", "%s: no closed() within 10 s of unsubscribe()", kTypeNames[q->type()]);
            destroyQt(std::move(c.t));
        };
        while (!m_stopEmit.load(std::memory_order_relaxed)) {
            if (live.size() < 4 && rng.chance(30))
                live.push_back({makeQt(rng.below(kTypes), std::size_t(1 + rng.below(8))), false,
                                1 + rng.below(50)});
            for (std::size_t i = 0; i < live.size();) {
                Churned &c = live[i];
                if (--c.life > 0) {
                    ++i;
                } else if (!c.unsubscribed && rng.chance(50)) {
                    QtTrackedBase *q = c.t.get();
                    inQtWorker([q] { q->unsubscribe(); });
                    c.unsubscribed = true;
                    c.life = 1 + rng.below(10);
                    ++i;
                } else {
                    end(c);
                    live[i] = std::move(live.back());
                    live.pop_back();
                }
            }
            std::this_thread::sleep_for(std::chrono::microseconds(rng.below(1000)));
        }
        for (Churned &c : live)
            end(c);
    }

    /// Asks for the next T1 over and over (nextEvent()), sometimes cancelling
    /// the future: the event it gets must have been emitted after the call.
    void nextEventer()
    {
        Rng rng(seedFor(1300));
        std::array<u64, kMaxProducers> before{};
        while (!m_stopEmit.load(std::memory_order_relaxed)) {
            for (int p = 0; p < m_producers; ++p)
                before[std::size_t(p)] = m_progress1[std::size_t(p)].v.load(std::memory_order_acquire);
            QFuture<T1> f;
            {
                std::lock_guard lock(m_finalMutex);
                if (m_finalsPublished)
                    break;
                f = sigreg::nextEvent<T1>(m_bus);
            }
            if (rng.chance(10)) {
                f.cancel(); // its handler goes with the next T1
                ++m_st.nextCancelled;
                continue;
            }
            f.waitForFinished();
            if (f.isCanceled() || f.resultCount() != 1) {
                VIOLATION("qtbus.nextEvent", "a nextEvent() future finished without an event");
                continue;
            }
            const T1 e = f.result();
            if (e.producer >= 0 && e.seq < before[std::size_t(e.producer)])
                VIOLATION("qtbus.nextEventOld", "nextEvent() got producer %d's seq %llu, emitted before the call "
                          "(%llu of its events were out then)", e.producer, (unsigned long long)e.seq,
                          (unsigned long long)before[std::size_t(e.producer)]);
            ++m_st.nextEvents;
        }
    }

    void writer()
    {
        Rng rng(seedFor(1000));
        struct Owned {
            std::shared_ptr<HState> s;
            int type;
            HandlerId id;
            std::optional<Guard> guard;
        };
        std::vector<Owned> owned;
        auto removeAt = [&](std::size_t i) {
            Owned o = std::move(owned[i]);
            owned[i] = std::move(owned.back());
            owned.pop_back();
            bool ok = true;
            if (o.guard) {
                if (rng.chance(50))
                    ok = o.guard->reset();
                else
                    o.guard.reset();
            } else {
                switch (o.type) {
                case 0:
                    ok = m_bus.remove<T0>(o.id);
                    break;
                case 1:
                    ok = m_bus.remove<T1>(o.id);
                    break;
                default:
                    ok = m_bus.remove<T2>(o.id);
                    break;
                }
            }
            if (!ok)
                VIOLATION("bus.removeResult", "removal of an owned push handler returned false");
            o.s->removed.store(true);
            ++m_st.handlerRemoves;
        };
        while (!m_stopWrite.load(std::memory_order_relaxed)) {
            if (owned.size() < 16 && rng.chance(50)) {
                auto s = std::make_shared<HState>();
                s->throws = rng.chance(25);
                const int type = rng.below(kTypes);
                const int prio = rng.below(5) - 2;
                const bool guarded = rng.chance(40);
                std::pair<HandlerId, std::optional<Guard>> r;
                switch (type) {
                case 0:
                    r = addHandler<T0>(s, prio, guarded);
                    break;
                case 1:
                    r = addHandler<T1>(s, prio, guarded);
                    break;
                default:
                    r = addHandler<T2>(s, prio, guarded);
                    break;
                }
                owned.push_back(Owned{s, type, r.first, std::move(r.second)});
                ++m_st.handlerAdds;
            } else if (!owned.empty()) {
                removeAt(std::size_t(rng.below(int(owned.size()))));
            }
            if (rng.chance(10))
                std::this_thread::sleep_for(100us);
        }
        while (!owned.empty())
            removeAt(owned.size() - 1);
    }

    const Config &m_cfg;
    sigreg::Bus m_bus;
    Stats m_st;
    int m_producers = 0;
    std::array<std::array<Next, kMaxProducers>, kTypes> m_stableNext;
    std::mutex m_mutex;
    std::array<std::array<u64, kMaxProducers>, kTypes> m_emittedBy{};
    std::array<u64, kTypes> m_emitted{};
    std::vector<std::vector<std::unique_ptr<TrackedBase>>> m_owned; // per consumer: the throughout receivers
    std::atomic<bool> m_stopEmit{false}, m_stopWrite{false};
    std::vector<std::thread> m_emitters, m_consumers;
    std::thread m_writer;
    // The Qt side.
    struct alignas(64) AtomicNext {
        std::atomic<u64> v{0};
    };
    std::array<AtomicNext, kMaxProducers> m_progress1; // T1 events each producer has emitted
    sigreg_test::Worker m_qtWorker{"soak-bus-qt"};
    std::vector<std::unique_ptr<QtTrackedBase>> m_qtThroughout;
    std::mutex m_finalMutex;
    bool m_finalsPublished = false; // guarded by m_finalMutex
    std::thread m_qtChurner, m_nextEventer;
};

} // namespace bus

// ============================================================================
// main
// ============================================================================

[[noreturn]] void usage(const char *argv0, const char *problem)
{
    if (problem)
        std::fprintf(stderr, "sigreg-soak: %s\n", problem);
    std::fprintf(stderr,
                 "usage: %s [--seconds N] [--threads N] [--seed N] [--quiet]\n"
                 "  --seconds N  churn for N seconds (1..86400, default 10), then drain and check\n"
                 "  --threads N  notifying threads, max(2, N/2) per component (1..128, default max(4, cores))\n"
                 "  --seed N     seed for the threads' random choices (default: random, printed)\n"
                 "  --quiet      print only the summary\n"
                 "exit code: 0 clean, 1 invariant violations, 2 bad arguments\n",
                 argv0);
    std::exit(problem ? 2 : 0);
}

bool parseNumber(const char *s, u64 max, u64 &out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return false;
    char *end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return false;
    out = v;
    return true;
}

} // namespace

int main(int argc, char **argv)
{
    Config cfg;
    cfg.threads = std::clamp(int(std::thread::hardware_concurrency()), 4, 128);
    bool seeded = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        u64 v = 0;
        auto value = [&](u64 lo, u64 hi) {
            if (i + 1 >= argc)
                usage(argv[0], (a + " needs a value").c_str());
            if (!parseNumber(argv[++i], hi, v) || v < lo)
                usage(argv[0], ("bad value for " + a + ": " + argv[i]).c_str());
            return v;
        };
        if (a == "--seconds") {
            cfg.seconds = int(value(1, 86400));
        } else if (a == "--threads") {
            cfg.threads = int(value(1, 128));
        } else if (a == "--seed") {
            g_seed = value(0, UINT64_MAX);
            seeded = true;
        } else if (a == "--quiet") {
            cfg.quiet = true;
        } else if (a == "--help" || a == "-h") {
            usage(argv[0], nullptr);
        } else {
            usage(argv[0], ("unknown argument: " + a).c_str());
        }
    }
    if (!seeded)
        g_seed = (u64(std::random_device{}()) << 32) ^ std::random_device{}();

    int qargc = 1;
    QCoreApplication app(qargc, argv);
    Watchdog watchdog(std::chrono::seconds(cfg.seconds + 60));

    std::printf("sigreg-soak: %d s, %d notifying threads per component, seed %llu%s\n", cfg.seconds,
                cfg.notifiers(), (unsigned long long)g_seed, sigreg_test::kUnderTsan ? " (ThreadSanitizer)" : "");
    std::fflush(stdout);

    const auto t0 = Clock::now();
    {
        // Declared in this order: destroyed after the threads stopped.
        core::Soak coreSoak(cfg);
        qt::Soak qtSoak(cfg);
        bus::Soak busSoak(cfg);

        g_phase = "running";
        coreSoak.start();
        qtSoak.start();
        busSoak.start();

        const auto end = t0 + std::chrono::seconds(cfg.seconds);
        auto nextReport = t0 + 10s;
        while (Clock::now() < end) {
            std::this_thread::sleep_for(std::min<Clock::duration>(100ms, end - Clock::now()));
            if (!cfg.quiet && Clock::now() >= nextReport) {
                nextReport += 10s;
                std::printf("  ... %lld s, %llu violations so far\n",
                            (long long)std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - t0).count(),
                            (unsigned long long)g_violations.total());
                std::fflush(stdout);
            }
        }

        const auto stopStart = Clock::now();
        g_phase = "stopping core";
        coreSoak.stop();
        g_phase = "stopping qt (draining workers)";
        qtSoak.stop();
        g_phase = "stopping bus (draining receivers)";
        busSoak.stop();
        g_phase = "final checks";
        coreSoak.check();
        qtSoak.check();
        busSoak.check();
        const double drain = std::chrono::duration<double>(Clock::now() - stopStart).count();

        const double total = std::chrono::duration<double>(Clock::now() - t0).count();
        long maxRssKiB = 0;
#if defined(__unix__)
        struct rusage ru {};
        if (getrusage(RUSAGE_SELF, &ru) == 0)
            maxRssKiB = ru.ru_maxrss;
#endif
        std::printf("sigreg-soak summary (%.1f s, drain and checks %.1f s, seed %llu, peak RSS %ld MiB)\n", total,
                    drain, (unsigned long long)g_seed, maxRssKiB / 1024);
        coreSoak.summary(stdout);
        qtSoak.summary(stdout);
        busSoak.summary(stdout);
        g_phase = "destroying";
    }
    const u64 violations = g_violations.total();
    std::printf("violations = %llu\n", (unsigned long long)violations);
    g_violations.print(stdout);
    std::fflush(stdout);
    return violations == 0 ? 0 : 1;
}
