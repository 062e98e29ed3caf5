// SPDX-License-Identifier: MIT
// libFuzzer target: sequences of operations on sigreg::Registry<E>, checked
// step by step against a reference model (a sorted vector).
//
// Operations: add (priorities with many ties, and the extremes), addGuarded,
// guard(id), guard drop / reset / resetNoWait / release / move, remove and
// removeNoWait (valid, stale, unknown, invalid ids), clear, notify, error
// handlers (recording, throwing, removing the culprit; invalid ones), batches
// (add, remove, commit, drop), invalid handlers, and destroying the registry
// while guards live. Handlers have behaviours: record the call, throw (a
// std::exception or not), and, from inside the call, add a handler, remove
// themselves or any id (stale ones included), notify again (bounded depth),
// clear, reset a guard, replace the error handler, query size/contains.
//
// Rules the model implements (registry.h, handler_id.h, guard.h; where the
// header leaves a detail open, registry_core and tst_registry.cpp decide, as
// noted):
//  * Order: priority descending, ties in registration order. Registration
//    order is the order of add() calls; a batch registers its handlers at
//    commit(), after every handler already present, in the order of the
//    batch's add() calls (tst_registry batchOrdering).
//  * Ids: one counter per registry, starting at 1, +1 for every add() and
//    every Batch::add() (the id is reserved then), never rewound by clear()
//    or anything else. A new registry starts at 1 again. A rejected handler
//    (empty std::function, null pointer) takes no id.
//  * Snapshot: a notify calls the handlers registered when it starts, in
//    order, skipping those removed (by anyone, on this thread) before their
//    turn; handlers added during it are not called by it ("called from the
//    next notify() on"). A nested notify (from inside a handler) takes its
//    own snapshot of the registry as it is then. A handler that removes
//    itself or clears completes its call; removing it again returns false.
//  * remove(id) returns true exactly when id is registered now. clear()
//    returns the number registered. Batch commit: removes are matched
//    against the handlers registered before the commit; duplicates count
//    once; BatchResult{added = queued adds, removed}. batch.remove() of an
//    id the same batch added (not committed yet) takes that add out of the
//    batch at once: the handler is destroyed, never registered, and counted
//    in neither field.
//  * Errors: a throwing handler is counted in failureCount(); the error
//    handler current at that moment is called right after the handler with
//    its id and an exception_ptr holding the thrown object (`what` is
//    std::exception::what() or null); with none installed, or when it
//    throws, unhandledFailureCount() counts it. An error handler may remove
//    the failing handler.
//  * Guards: a guard owns an id (maybe stale). Destroying, reset() or
//    resetNoWait() removes it and empties the guard (reset returns remove's
//    result; false once the registry is gone); release() returns the id and
//    empties it; move-assignment first disposes of the target's handler.
//    Self-move changes nothing. Guards of a destroyed registry are inert.
//  * Lifetime: a handler object is destroyed exactly once, never while it is
//    registered or queued in a batch; a dropped batch destroys its handlers
//    at once; destroying the registry destroys all. Handler destructors may
//    call the registry (this one calls contains()).
//  * Reclamation (ARCHITECTURE.md, "Reclamation runs after every removal"):
//    this target is single-threaded, so outside a notify no hazard is held;
//    after a top-level removal that removed something, pendingReclamation()
//    is 0 and every removed handler has been destroyed.
#include "fuzz_common.h"

#include <sigreg/registry.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

using sigreg::Guard;
using sigreg::HandlerId;

struct Ev {
    int depth;
};
using Reg = sigreg::Registry<Ev>;

constexpr int kMaxDepth = 9;         // nesting beyond eight levels takes the hazard chunk path
constexpr int kNestedBudget = 12;    // nested notifies per top-level step (keeps fan-out bounded)
constexpr std::size_t kMaxHandlers = 64;
constexpr std::size_t kGuardSlots = 4;
constexpr std::uint64_t kNeverIssued = 1000000;

enum Beh : std::uint8_t {
    Record,
    ThrowStd,
    ThrowOther,
    AddNew,
    RemoveSelf,
    RemoveTarget,
    RemoveNoWaitTarget,
    NotifyNested,
    ClearAll,
    GuardResetSlot,
    SetErrorMode,
    Probe,
    BehCount
};
const char *behName(Beh b)
{
    static const char *const names[] = {"record", "throw-std", "throw-other", "add", "remove-self", "remove",
                                        "remove-nowait", "notify", "clear", "guard-reset", "set-error",
                                        "probe"};
    return b < BehCount ? names[b] : "?";
}

struct Spec {
    int prio;
    Beh beh;
    std::uint8_t param;
};

int decodePrio(std::uint8_t b)
{
    switch (b) {
    case 255: return INT_MAX;
    case 254: return INT_MIN;
    case 253: return INT_MAX - 1;
    case 252: return INT_MIN + 1;
    default: return int(b % 7) - 3;
    }
}

/// The handler an AddNew handler registers, derived from its parameter.
Spec nestedSpec(std::uint8_t p)
{
    return Spec{int(p % 7) - 3, Beh((p / 7) % BehCount), std::uint8_t(p * 151u + 17u)};
}

/// A target id from a parameter: invalid, never issued, or one of the ids issued so far.
std::uint64_t pick(std::uint8_t k, const std::vector<std::uint64_t> &issued)
{
    if (k == 255)
        return 0;
    if (k == 254)
        return kNeverIssued;
    if (issued.empty())
        return 1;
    return issued[k % issued.size()];
}

// Log entry kinds.
enum Kind : std::uint8_t {
    kCall,       // a: id, b: depth
    kAdded,      // a: id, b: handler index
    kAddSkipped, //
    kRemoved,    // a: id, b: result
    kCleared,    // a: count
    kError,      // a: id, b: 1 std::runtime_error, 2 other
    kNotifyBegin,
    kNotifyEnd,
    kGuardReset, // a: slot, b: result
    kSetErr,     // a: mode
    kProbe,      // a: size, b: contains(self)
};
const char *kindName(std::uint8_t k)
{
    static const char *const names[] = {"call", "added", "add-skipped", "removed", "cleared", "error",
                                        "notify-begin", "notify-end", "guard-reset", "set-error", "probe"};
    return k < sizeof names / sizeof names[0] ? names[k] : "?";
}

struct Thrown {
    std::uint64_t id;
};

enum class HState : std::uint8_t { Pending, Live, Removed, Dropped, Dead };

class Fuzz;
Fuzz *g_fuzz = nullptr;

/// Part of every handler object: tells the fuzzer when the (non-moved-from) object dies.
struct Tracker {
    int h;
    explicit Tracker(int index) noexcept : h(index) {}
    Tracker(Tracker &&o) noexcept : h(std::exchange(o.h, -1)) {}
    Tracker &operator=(Tracker &&) = delete;
    ~Tracker();
};

struct Handler {
    Tracker tracker; // move-only, so the registry's move-only path is used
    void operator()(const Ev &e) const;
};

struct Sink {
    int mode;
    void operator()(const sigreg::HandlerFailure &f) const;
};

class Fuzz {
public:
    fuzz::Checker check{"sigreg_fuzz_registry", &kindName};

    void run(const std::uint8_t *data, std::size_t size)
    {
        begin();
        fuzz::Reader in(data, size);
        while (!in.empty())
            step(in);
        check.step("end of input: tear down");
        checkState(false, true);
        end();
    }

    // ---- called by handlers, sinks, trackers ----------------------------------

    void onCall(int h, int depth)
    {
        const std::uint64_t id = rh[h].id;
        check.actual.push_back({kCall, id, std::uint64_t(depth)});
        const Spec s = rh[h].spec;
        switch (s.beh) {
        case Record: break;
        case ThrowStd: throw std::runtime_error("h" + std::to_string(id));
        case ThrowOther: throw Thrown{id};
        case AddNew:
            if (rh.size() < kMaxHandlers) {
                const Spec ns = nestedSpec(s.param);
                const int nh = rNewHandler(ns);
                const HandlerId nid = reg->add(ns.prio, Handler{Tracker(nh)});
                rRegistered(nh, nid);
                check.actual.push_back({kAdded, nid.value(), std::uint64_t(nh)});
            } else {
                check.actual.push_back({kAddSkipped});
            }
            break;
        case RemoveSelf: check.actual.push_back({kRemoved, id, reg->remove(HandlerId(id))}); break;
        case RemoveTarget: {
            const std::uint64_t t = pick(s.param, rIssued);
            check.actual.push_back({kRemoved, t, reg->remove(HandlerId(t))});
            break;
        }
        case RemoveNoWaitTarget: {
            const std::uint64_t t = pick(s.param, rIssued);
            check.actual.push_back({kRemoved, t, reg->removeNoWait(HandlerId(t))});
            break;
        }
        case NotifyNested:
            if (depth < kMaxDepth && rBudget > 0) {
                --rBudget;
                check.actual.push_back({kNotifyBegin, std::uint64_t(depth + 1)});
                reg->notify(Ev{depth + 1});
                check.actual.push_back({kNotifyEnd, std::uint64_t(depth + 1)});
            }
            break;
        case ClearAll: check.actual.push_back({kCleared, reg->clear()}); break;
        case GuardResetSlot: {
            const std::size_t slot = s.param % kGuardSlots;
            check.actual.push_back({kGuardReset, slot, guards[slot].reset()});
            break;
        }
        case SetErrorMode: {
            const int m = s.param % 4;
            rSetErrorMode(m);
            check.actual.push_back({kSetErr, std::uint64_t(m)});
            break;
        }
        case Probe:
            check.actual.push_back({kProbe, reg->size(), reg->contains(HandlerId(id))});
            break;
        case BehCount: break;
        }
    }

    void onFailure(int mode, const sigreg::HandlerFailure &f)
    {
        const std::uint64_t id = f.handler.value();
        FUZZ_CHECK(check, f.handler.isValid(), "error handler: invalid handler id");
        FUZZ_CHECK(check, f.exception != nullptr, "error handler: null exception_ptr for handler %llu",
                   (unsigned long long)id);
        std::uint64_t kind = 0;
        try {
            std::rethrow_exception(f.exception);
        } catch (const std::runtime_error &e) {
            kind = 1;
            const std::string want = "h" + std::to_string(id);
            FUZZ_CHECK(check, want == e.what(), "error handler: exception of handler %llu says \"%s\"",
                       (unsigned long long)id, e.what());
            FUZZ_CHECK(check, f.what && std::strcmp(f.what, e.what()) == 0,
                       "error handler: HandlerFailure::what is not what() of the exception");
            FUZZ_CHECK(check, f.message() == want, "error handler: message() is not what()");
        } catch (const Thrown &t) {
            kind = 2;
            FUZZ_CHECK(check, t.id == id, "error handler: handler %llu reported, but handler %llu threw",
                       (unsigned long long)id, (unsigned long long)t.id);
            FUZZ_CHECK(check, f.what == nullptr, "error handler: `what` set for a non-std exception");
            FUZZ_CHECK(check, f.message() == "unknown exception (not derived from std::exception)",
                       "error handler: wrong message() for a non-std exception");
        } catch (...) {
            check.fail("error handler: the exception_ptr holds an unexpected type");
        }
        check.actual.push_back({kError, id, kind});
        if (mode == 2)
            throw Thrown{~std::uint64_t(0)};
        if (mode == 3)
            check.actual.push_back({kRemoved, id, reg->remove(f.handler)});
    }

    void onDestroyed(int h)
    {
        FUZZ_CHECK(check, !rh[h].destroyed, "handler #%d (id %llu) destroyed twice", h,
                   (unsigned long long)rh[h].id);
        rh[h].destroyed = true;
        // Destructors run outside the registry's mutex: calling it must not deadlock.
        if (!dying && reg && rh[h].gen == rGen && rh[h].id != 0) {
            FUZZ_CHECK(check, !reg->contains(HandlerId(rh[h].id)), "handler #%d (id %llu) destroyed while registered",
                       h, (unsigned long long)rh[h].id);
        }
    }

private:
    // ---- the real side ----------------------------------------------------------

    struct RHandler {
        Spec spec;
        std::uint64_t id = 0;
        int gen = 0;
        bool destroyed = false;
    };

    std::unique_ptr<Reg> reg;
    int rGen = 0;
    bool dying = false;
    std::vector<RHandler> rh;
    std::vector<std::uint64_t> rIssued;
    std::array<Guard, kGuardSlots> guards;
    std::optional<Reg::Batch> batch;
    int rBudget = 0;

    int rNewHandler(const Spec &s)
    {
        rh.push_back(RHandler{s, 0, rGen, false});
        return int(rh.size() - 1);
    }
    void rRegistered(int h, HandlerId id)
    {
        rh[h].id = id.value();
        rIssued.push_back(id.value());
    }
    void rSetErrorMode(int m)
    {
        if (m == 0)
            reg->resetErrorHandler();
        else
            reg->setErrorHandler(Sink{m});
    }

    // ---- the model ----------------------------------------------------------------

    struct MLive {
        std::uint64_t id;
        int prio;
        std::uint64_t seq;
        int h;
    };
    struct MHandler {
        Spec spec;
        std::uint64_t id = 0;
        HState state = HState::Pending;
    };
    struct MGuard {
        std::uint64_t id = 0; // 0: empty
        int gen = 0;
    };
    struct MBatch {
        std::vector<int> adds; // handler indices, in add order
        std::vector<std::uint64_t> removes;
    };

    std::vector<MLive> live; // priority descending, then seq ascending
    std::uint64_t mLastId = 0;
    std::uint64_t mSeq = 0;
    int mGen = 0;
    std::vector<std::uint64_t> mIssued;
    std::vector<MHandler> mh;
    std::array<MGuard, kGuardSlots> mg{};
    std::optional<MBatch> mbatch;
    int mErrMode = 0;
    std::uint64_t mFailures = 0;
    std::uint64_t mUnhandled = 0;
    int mBudget = 0;
    std::vector<bool> m_scratch;
    unsigned m_quietSteps = 0;

    MLive *mFind(std::uint64_t id)
    {
        for (MLive &e : live) {
            if (e.id == id)
                return &e;
        }
        return nullptr;
    }
    int mNewHandler(const Spec &s)
    {
        mh.push_back(MHandler{s, 0, HState::Pending});
        return int(mh.size() - 1);
    }
    std::uint64_t mReserveId(int h)
    {
        const std::uint64_t id = ++mLastId;
        mIssued.push_back(id);
        mh[h].id = id;
        return id;
    }
    void mInsert(int h)
    {
        const int p = mh[h].spec.prio;
        auto pos = std::find_if(live.begin(), live.end(), [p](const MLive &e) { return e.prio < p; });
        live.insert(pos, MLive{mh[h].id, p, ++mSeq, h});
        mh[h].state = HState::Live;
    }
    std::uint64_t mAdd(int h)
    {
        const std::uint64_t id = mReserveId(h);
        mInsert(h);
        return id;
    }
    bool mRemove(std::uint64_t id)
    {
        for (auto it = live.begin(); it != live.end(); ++it) {
            if (it->id == id) {
                mh[it->h].state = HState::Removed;
                live.erase(it);
                return true;
            }
        }
        return false;
    }
    std::size_t mClear()
    {
        for (const MLive &e : live)
            mh[e.h].state = HState::Removed;
        const std::size_t n = live.size();
        live.clear();
        return n;
    }
    bool mGuardDispose(std::size_t slot)
    {
        const MGuard g = std::exchange(mg[slot], MGuard{});
        return g.id != 0 && g.gen == mGen && mRemove(g.id);
    }
    void mDropBatch()
    {
        if (!mbatch)
            return;
        for (int h : mbatch->adds)
            mh[h].state = HState::Dropped;
        mbatch.reset();
    }

    void mNotify(int depth)
    {
        std::vector<std::uint64_t> snapshot;
        snapshot.reserve(live.size());
        for (const MLive &e : live)
            snapshot.push_back(e.id);
        for (std::uint64_t id : snapshot) {
            if (const MLive *e = mFind(id))
                mCall(e->h, id, depth);
        }
    }
    void mCall(int h, std::uint64_t id, int depth)
    {
        auto &exp = check.expected;
        exp.push_back({kCall, id, std::uint64_t(depth)});
        const Spec s = mh[h].spec;
        switch (s.beh) {
        case Record: break;
        case ThrowStd: mFailure(id, 1); break;
        case ThrowOther: mFailure(id, 2); break;
        case AddNew:
            if (mh.size() < kMaxHandlers) {
                const int nh = mNewHandler(nestedSpec(s.param));
                exp.push_back({kAdded, mAdd(nh), std::uint64_t(nh)});
            } else {
                exp.push_back({kAddSkipped});
            }
            break;
        case RemoveSelf: exp.push_back({kRemoved, id, mRemove(id)}); break;
        case RemoveTarget:
        case RemoveNoWaitTarget: {
            const std::uint64_t t = pick(s.param, mIssued);
            exp.push_back({kRemoved, t, mRemove(t)});
            break;
        }
        case NotifyNested:
            if (depth < kMaxDepth && mBudget > 0) {
                --mBudget;
                exp.push_back({kNotifyBegin, std::uint64_t(depth + 1)});
                mNotify(depth + 1);
                exp.push_back({kNotifyEnd, std::uint64_t(depth + 1)});
            }
            break;
        case ClearAll: exp.push_back({kCleared, mClear()}); break;
        case GuardResetSlot: {
            const std::size_t slot = s.param % kGuardSlots;
            exp.push_back({kGuardReset, slot, mGuardDispose(slot)});
            break;
        }
        case SetErrorMode:
            mErrMode = s.param % 4;
            exp.push_back({kSetErr, std::uint64_t(mErrMode)});
            break;
        case Probe: exp.push_back({kProbe, live.size(), mFind(id) != nullptr}); break;
        case BehCount: break;
        }
    }
    void mFailure(std::uint64_t id, std::uint64_t kind)
    {
        ++mFailures;
        if (mErrMode == 0) {
            ++mUnhandled;
            return;
        }
        check.expected.push_back({kError, id, kind});
        if (mErrMode == 2)
            ++mUnhandled;
        else if (mErrMode == 3)
            check.expected.push_back({kRemoved, id, mRemove(id)});
    }

    // ---- driving --------------------------------------------------------------------

    void begin()
    {
        check.reset();
        rh.clear();
        mh.clear();
        reg = std::make_unique<Reg>();
        rGen = mGen = 0;
        m_quietSteps = 0; // the same input runs the same checks
        rIssued.clear();
        resetModelRegistry();
        mg.fill(MGuard{});
        // guards are empty (end() emptied them)
    }
    void resetModelRegistry()
    {
        live.clear();
        mLastId = 0;
        mSeq = 0;
        mIssued.clear();
        mbatch.reset();
        mErrMode = 0;
        mFailures = 0;
        mUnhandled = 0;
    }

    void destroyRegistry()
    {
        // Real: a batch refers to its registry, so it goes first.
        batch.reset();
        dying = true;
        reg.reset();
        dying = false;
        // Model.
        mDropBatch();
        for (MHandler &m : mh) {
            if (m.state == HState::Live || m.state == HState::Removed)
                m.state = HState::Dead;
        }
    }

    void end()
    {
        destroyRegistry();
        for (Guard &g : guards) {
            FUZZ_CHECK(check, !g.reset(), "a guard removed something after its registry was destroyed");
        }
        for (std::size_t h = 0; h < rh.size(); ++h) {
            FUZZ_CHECK(check, rh[h].destroyed, "handler #%zu (id %llu) outlived its registry", h,
                       (unsigned long long)rh[h].id);
        }
    }

    void step(fuzz::Reader &in)
    {
        check.expected.clear();
        check.actual.clear();
        rBudget = mBudget = kNestedBudget;
        bool topRemoval = false;
        const std::uint64_t liveBefore = liveHash();
        const std::uint8_t op = in.byte() % 20;
        switch (op) {
        case 0:
        case 1: { // add
            const Spec s{decodePrio(in.byte()), Beh(in.byte() % BehCount), in.byte()};
            check.step("add(prio %d, %s/%u)", s.prio, behName(s.beh), s.param);
            if (mh.size() >= kMaxHandlers || rh.size() >= kMaxHandlers) {
                check.note("skipped: handler cap");
                break;
            }
            const int mhIdx = mNewHandler(s);
            const std::uint64_t want = mAdd(mhIdx);
            const int h = rNewHandler(s);
            const HandlerId id = reg->add(s.prio, Handler{Tracker(h)});
            rRegistered(h, id);
            check.note("id %llu", (unsigned long long)id.value());
            FUZZ_CHECK(check, id.value() == want, "add returned id %llu, the model expects %llu",
                       (unsigned long long)id.value(), (unsigned long long)want);
            break;
        }
        case 2:
        case 3: { // notify
            check.step("notify");
            mNotify(0);
            reg->notify(Ev{0});
            break;
        }
        case 4: { // remove / removeNoWait
            const std::uint8_t k = in.byte();
            const bool noWait = in.byte() & 1;
            const std::uint64_t mt = pick(k, mIssued);
            const std::uint64_t rt = pick(k, rIssued);
            check.step("%s(%llu)", noWait ? "removeNoWait" : "remove", (unsigned long long)rt);
            const bool want = mRemove(mt);
            const bool got = noWait ? reg->removeNoWait(HandlerId(rt)) : reg->remove(HandlerId(rt));
            check.note("%d", got);
            FUZZ_CHECK(check, got == want, "remove(%llu) returned %d, the model expects %d",
                       (unsigned long long)rt, got, want);
            topRemoval = got;
            break;
        }
        case 5: { // clear
            check.step("clear");
            const std::size_t want = mClear();
            const std::size_t got = reg->clear();
            check.note("%zu", got);
            FUZZ_CHECK(check, got == want, "clear returned %zu, the model expects %zu", got, want);
            topRemoval = got != 0;
            break;
        }
        case 6: { // slot = addGuarded(prio, f)
            const std::size_t slot = in.byte() % kGuardSlots;
            const Spec s{decodePrio(in.byte()), Beh(in.byte() % BehCount), in.byte()};
            check.step("guard[%zu] = addGuarded(prio %d, %s/%u)", slot, s.prio, behName(s.beh), s.param);
            if (mh.size() >= kMaxHandlers || rh.size() >= kMaxHandlers) {
                check.note("skipped: handler cap");
                break;
            }
            const int mhIdx = mNewHandler(s);
            const std::uint64_t want = mAdd(mhIdx);
            topRemoval = mGuardDispose(slot);
            mg[slot] = MGuard{want, mGen};
            const int h = rNewHandler(s);
            guards[slot] = reg->addGuarded(s.prio, Handler{Tracker(h)});
            rRegistered(h, guards[slot].id());
            check.note("id %llu", (unsigned long long)guards[slot].id().value());
            FUZZ_CHECK(check, guards[slot].id().value() == want, "addGuarded: id %llu, the model expects %llu",
                       (unsigned long long)guards[slot].id().value(), (unsigned long long)want);
            break;
        }
        case 7: { // slot = guard(id)
            const std::size_t slot = in.byte() % kGuardSlots;
            const std::uint8_t k = in.byte();
            const std::uint64_t mt = pick(k, mIssued);
            const std::uint64_t rt = pick(k, rIssued);
            check.step("guard[%zu] = guard(%llu)", slot, (unsigned long long)rt);
            topRemoval = mGuardDispose(slot);
            mg[slot] = MGuard{mt, mGen};
            guards[slot] = reg->guard(HandlerId(rt));
            break;
        }
        case 8: { // drop a guard (destructor)
            const std::size_t slot = in.byte() % kGuardSlots;
            check.step("drop guard[%zu] (id %llu)", slot, (unsigned long long)guards[slot].id().value());
            topRemoval = mGuardDispose(slot);
            { Guard doomed = std::move(guards[slot]); }
            break;
        }
        case 9: { // reset / resetNoWait
            const std::size_t slot = in.byte() % kGuardSlots;
            const bool noWait = in.byte() & 1;
            check.step("guard[%zu].%s() (id %llu)", slot, noWait ? "resetNoWait" : "reset",
                       (unsigned long long)guards[slot].id().value());
            const bool want = mGuardDispose(slot);
            const bool got = noWait ? guards[slot].resetNoWait() : guards[slot].reset();
            check.note("%d", got);
            FUZZ_CHECK(check, got == want, "guard reset returned %d, the model expects %d", got, want);
            topRemoval = got;
            break;
        }
        case 10: { // release
            const std::size_t slot = in.byte() % kGuardSlots;
            check.step("guard[%zu].release()", slot);
            const std::uint64_t want = std::exchange(mg[slot], MGuard{}).id;
            const HandlerId got = guards[slot].release();
            check.note("%llu", (unsigned long long)got.value());
            FUZZ_CHECK(check, got.value() == want, "release returned %llu, the model expects %llu",
                       (unsigned long long)got.value(), (unsigned long long)want);
            break;
        }
        case 11: { // move-assign one guard to another (possibly itself)
            const std::size_t a = in.byte() % kGuardSlots;
            const std::size_t b = in.byte() % kGuardSlots;
            check.step("guard[%zu] = move(guard[%zu])", b, a);
            if (a != b) {
                topRemoval = mGuardDispose(b);
                mg[b] = std::exchange(mg[a], MGuard{});
            }
            Guard &src = guards[a];
            guards[b] = std::move(src);
            break;
        }
        case 12: { // error handler
            const int mode = in.byte() % 6;
            check.step("error handler mode %d", mode);
            bool threw = false;
            try {
                if (mode == 4) {
                    reg->setErrorHandler(std::function<void(const sigreg::HandlerFailure &)>());
                } else if (mode == 5) {
                    void (*none)(const sigreg::HandlerFailure &) = nullptr;
                    reg->setErrorHandler(none);
                } else {
                    rSetErrorMode(mode);
                }
            } catch (const std::invalid_argument &) {
                threw = true;
            }
            FUZZ_CHECK(check, threw == (mode >= 4), "setErrorHandler: invalid_argument %s",
                       threw ? "thrown for a valid handler" : "not thrown for an empty handler");
            if (mode < 4)
                mErrMode = mode;
            break;
        }
        case 13: { // batch.add
            const Spec s{decodePrio(in.byte()), Beh(in.byte() % BehCount), in.byte()};
            check.step("batch.add(prio %d, %s/%u)", s.prio, behName(s.beh), s.param);
            if (!mbatch)
                mbatch.emplace();
            if (!batch)
                batch.emplace(reg->batch());
            if (mh.size() >= kMaxHandlers || rh.size() >= kMaxHandlers) {
                check.note("skipped: handler cap");
                break;
            }
            const int mhIdx = mNewHandler(s);
            const std::uint64_t want = mReserveId(mhIdx);
            mbatch->adds.push_back(mhIdx);
            const int h = rNewHandler(s);
            const HandlerId id = batch->add(s.prio, Handler{Tracker(h)});
            rRegistered(h, id);
            check.note("id %llu", (unsigned long long)id.value());
            FUZZ_CHECK(check, id.value() == want, "batch.add returned id %llu, the model expects %llu",
                       (unsigned long long)id.value(), (unsigned long long)want);
            break;
        }
        case 14: { // batch.remove
            const std::uint8_t k = in.byte();
            const std::uint64_t mt = pick(k, mIssued);
            const std::uint64_t rt = pick(k, rIssued);
            check.step("batch.remove(%llu)", (unsigned long long)rt);
            if (!mbatch)
                mbatch.emplace();
            if (!batch)
                batch.emplace(reg->batch());
            const auto queued = std::find_if(mbatch->adds.begin(), mbatch->adds.end(),
                                             [&](int h) { return mh[h].id == mt; });
            if (queued != mbatch->adds.end()) {
                mh[*queued].state = HState::Dropped;
                mbatch->adds.erase(queued);
            } else {
                mbatch->removes.push_back(mt);
            }
            batch->remove(HandlerId(rt));
            break;
        }
        case 15: { // batch.commit
            check.step("batch.commit");
            if (!mbatch || !batch) {
                FUZZ_CHECK(check, !mbatch && !batch, "batch presence differs");
                check.note("no batch");
                break;
            }
            std::sort(mbatch->removes.begin(), mbatch->removes.end());
            mbatch->removes.erase(std::unique(mbatch->removes.begin(), mbatch->removes.end()),
                                  mbatch->removes.end());
            std::size_t wantRemoved = 0;
            for (std::uint64_t id : mbatch->removes)
                wantRemoved += mRemove(id);
            for (int h : mbatch->adds)
                mInsert(h);
            const std::size_t wantAdded = mbatch->adds.size();
            mbatch->adds.clear();
            mbatch->removes.clear();
            const sigreg::BatchResult r = batch->commit();
            check.note("added %zu removed %zu", r.added, r.removed);
            FUZZ_CHECK(check, r.added == wantAdded && r.removed == wantRemoved,
                       "commit returned {added %zu, removed %zu}, the model expects {%zu, %zu}", r.added, r.removed,
                       wantAdded, wantRemoved);
            topRemoval = r.removed != 0;
            break;
        }
        case 16: { // drop the batch, or start a fresh one
            const bool fresh = in.byte() & 1;
            check.step(fresh ? "batch = registry.batch()" : "drop batch");
            mDropBatch();
            batch.reset();
            if (fresh) {
                mbatch.emplace();
                batch.emplace(reg->batch());
            }
            break;
        }
        case 17: { // invalid handlers are rejected and take no id
            const std::uint8_t how = in.byte() % 4;
            const int prio = decodePrio(in.byte());
            check.step("add an empty handler (%u)", how);
            bool threw = false;
            try {
                if (how == 0) {
                    (void)reg->add(prio, std::function<void(const Ev &)>());
                } else if (how == 1) {
                    void (*none)(const Ev &) = nullptr;
                    (void)reg->add(prio, none);
                } else if (how == 2) {
                    Guard g = reg->addGuarded(prio, std::function<void(const Ev &)>());
                } else {
                    if (!mbatch)
                        mbatch.emplace();
                    if (!batch)
                        batch.emplace(reg->batch());
                    (void)batch->add(prio, std::function<void(const Ev &)>());
                }
            } catch (const std::invalid_argument &) {
                threw = true;
            }
            FUZZ_CHECK(check, threw, "an empty handler was accepted");
            break;
        }
        case 18: { // destroy the registry (guards outlive it) and start a new one
            check.step("destroy the registry, make a new one");
            destroyRegistry();
            for (std::size_t h = 0; h < rh.size(); ++h) {
                FUZZ_CHECK(check, rh[h].destroyed, "handler #%zu (id %llu) outlived its registry", h,
                           (unsigned long long)rh[h].id);
            }
            ++rGen;
            ++mGen;
            reg = std::make_unique<Reg>();
            rIssued.clear();
            resetModelRegistry();
            break;
        }
        case 19: { // queries from the top level, and a removal of the newest id twice
            check.step("remove(newest) twice");
            const std::uint64_t mt = mIssued.empty() ? 1 : mIssued.back();
            const std::uint64_t rt = rIssued.empty() ? 1 : rIssued.back();
            const bool w1 = mRemove(mt);
            const bool w2 = mRemove(mt);
            const bool g1 = reg->remove(HandlerId(rt));
            const bool g2 = reg->remove(HandlerId(rt));
            check.note("%d %d", g1, g2);
            FUZZ_CHECK(check, g1 == w1 && g2 == w2 && !g2, "remove(%llu) twice returned %d, %d; the model expects %d, %d",
                       (unsigned long long)rt, g1, g2, w1, w2);
            topRemoval = g1;
            break;
        }
        }
        check.compareLogs();
        // contains() for every id is the costliest check: after every step
        // that changed the set of registered handlers, else every 8th step
        // (size() is compared after every step).
        checkState(topRemoval, liveHash() != liveBefore || ++m_quietSteps % 8 == 0);
    }

    /// Order-insensitive hash of the model's registered ids.
    std::uint64_t liveHash() const
    {
        std::uint64_t h = live.size();
        for (const MLive &e : live) {
            std::uint64_t x = e.id * 0x9E3779B97F4A7C15ull;
            x ^= x >> 31;
            h += x * 0xBF58476D1CE4E5B9ull;
        }
        return h;
    }

    void checkState(bool afterTopRemoval, bool everyId)
    {
        FUZZ_CHECK(check, rh.size() == mh.size(), "%zu handlers created, the model created %zu", rh.size(),
                   mh.size());
        FUZZ_CHECK(check, rIssued == mIssued, "the ids issued differ from the model's");
        for (std::size_t h = 0; h < rh.size(); ++h) {
            const HState st = mh[h].state;
            const bool d = rh[h].destroyed;
            FUZZ_CHECK(check, rh[h].id == mh[h].id, "handler #%zu has id %llu, the model says %llu", h,
                       (unsigned long long)rh[h].id, (unsigned long long)mh[h].id);
            FUZZ_CHECK(check, !(d && (st == HState::Live || st == HState::Pending)),
                       "handler #%zu (id %llu) was destroyed while %s", h, (unsigned long long)rh[h].id,
                       st == HState::Live ? "registered" : "queued in a batch");
            FUZZ_CHECK(check, d || !(st == HState::Dropped || st == HState::Dead),
                       "handler #%zu (id %llu) was not destroyed with its %s", h, (unsigned long long)rh[h].id,
                       st == HState::Dropped ? "batch" : "registry");
            if (afterTopRemoval) {
                FUZZ_CHECK(check, d || st != HState::Removed,
                           "handler #%zu (id %llu) removed, but not reclaimed after a top-level removal", h,
                           (unsigned long long)rh[h].id);
            }
        }
        if (afterTopRemoval) {
            FUZZ_CHECK(check, reg->pendingReclamation() == 0,
                       "pendingReclamation() is %zu after a removal with no notify in flight",
                       reg->pendingReclamation());
        }
        FUZZ_CHECK(check, reg->size() == live.size(), "size() is %zu, the model has %zu", reg->size(), live.size());
        FUZZ_CHECK(check, reg->empty() == live.empty(), "empty() disagrees with the model");
        FUZZ_CHECK(check, !reg->contains(HandlerId()), "contains(invalid id)");
        FUZZ_CHECK(check, !reg->contains(HandlerId(mLastId + 1)), "contains(an id not issued yet)");
        std::vector<bool> &isLive = m_scratch;
        isLive.assign(mLastId + 1, false);
        for (const MLive &e : live)
            isLive[e.id] = true;
        for (std::uint64_t id = 1; everyId && id <= mLastId; ++id) {
            const bool want = isLive[id];
            FUZZ_CHECK(check, reg->contains(HandlerId(id)) == want, "contains(%llu) is %d, the model says %d",
                       (unsigned long long)id, !want, want);
        }
        FUZZ_CHECK(check, reg->failureCount() == mFailures, "failureCount() is %llu, the model has %llu",
                   (unsigned long long)reg->failureCount(), (unsigned long long)mFailures);
        FUZZ_CHECK(check, reg->unhandledFailureCount() == mUnhandled,
                   "unhandledFailureCount() is %llu, the model has %llu",
                   (unsigned long long)reg->unhandledFailureCount(), (unsigned long long)mUnhandled);
        for (std::size_t s = 0; s < kGuardSlots; ++s) {
            const Guard &g = guards[s];
            FUZZ_CHECK(check, g.id().value() == mg[s].id && g.isActive() == (mg[s].id != 0)
                           && bool(g) == g.isActive(),
                       "guard[%zu]: id %llu active %d, the model has id %llu", s,
                       (unsigned long long)g.id().value(), g.isActive(), (unsigned long long)mg[s].id);
        }
        FUZZ_CHECK(check, batch.has_value() == mbatch.has_value(), "batch presence differs from the model");
    }
};

Tracker::~Tracker()
{
    if (h >= 0)
        g_fuzz->onDestroyed(h);
}

void Handler::operator()(const Ev &e) const
{
    g_fuzz->onCall(tracker.h, e.depth);
}

void Sink::operator()(const sigreg::HandlerFailure &f) const
{
    g_fuzz->onFailure(mode, f);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    static Fuzz *fuzz = new Fuzz; // never destroyed: guards must not outlive it at exit
    g_fuzz = fuzz;
    fuzz->run(data, size);
    return 0;
}
