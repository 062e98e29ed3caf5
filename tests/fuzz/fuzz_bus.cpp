// SPDX-License-Identifier: MIT
// libFuzzer target: single-threaded sequences of operations on sigreg::Bus,
// checked step by step against a reference model.
//
// Three event types: EvA (a plain value), EvB (its copy can be made to throw,
// and its move to throw on demand) and sigreg::ShutdownInitiated. Operations:
// emit (directly and through a Sender), subscribe with capacities 1..8, the
// bus's default, or invalid ones, tryReceive, receiveFor(0), receiveUntil(a
// past time point), receive() when something is there, unsubscribe, moving
// and dropping receivers, push handlers (on, onGuarded, remove, guards),
// error handlers, initiateShutdown(), and destroying the bus while receivers
// and guards live. Push handlers record their calls, throw, or, from inside
// the call, emit again (bounded depth), remove handlers (any type's ids,
// stale and unknown ones), unsubscribe or subscribe receivers, reset guards
// and query counts.
//
// Rules the model implements (bus.h, bus_ring.h; registry rules as in
// fuzz_registry.cpp for the push handlers):
//  * A type has a channel once on(), onGuarded(), subscribe() or sender()
//    was called for it; emitting to a type without one does nothing. Channels
//    stay until the bus goes; typeCount() counts them. An invalid capacity
//    (0, above kMaxCapacity) throws before anything is created.
//  * emit(e): first every subscribed receiver of the type gets a copy (in
//    subscription order; a copy that throws is reported to the bus's error
//    handler as a receiver failure and the receiver will see that position
//    as missed), then the push handlers run with registry semantics
//    (priority, snapshot taken when the walk starts). A handler's nested
//    emit is delivered completely (receivers, then handlers) before the
//    outer walk continues.
//  * The ring, per receiver: positions 0, 1, 2, ... in emission order; it
//    retains the last `capacity`. A receive at head h with tail t:
//    t - h > capacity: Lagged(t - capacity - h), head jumps to t - capacity
//    (the oldest retained); else h < t: the event at h (Received) or, if its
//    copy threw, Lagged(1); else Closed when unsubscribed or the bus is gone,
//    Empty otherwise (TimedOut for receiveFor/receiveUntil). missedCount() is
//    the sum of the Lagged counts; pending() is min(t - h, capacity).
//  * A receive whose move of the event throws propagates the exception and
//    leaves the event for the next receive.
//  * unsubscribe(), replacing a receiver (move-assignment) and destroying the
//    bus all stop delivery at once; the events held can still be taken, then
//    Closed. A default-constructed or moved-from receiver reports Closed,
//    capacity 0.
//  * Push handler ids: one counter per type (each channel's own registry),
//    from 1; remove<E>(id) acts on E's handlers only (an id of another type
//    with the same value removes E's handler with that value). Guards of a
//    destroyed bus are inert.
//  * Failures: failureCount() counts handler and receiver-copy failures;
//    unhandledFailureCount() those with no error handler or whose error
//    handler threw. BusFailure carries the type's readable name, `receiver`,
//    the failing handler's id (valid), and the exception.
//  * initiateShutdown() emits ShutdownInitiated the first time only.
//  * Handler objects are destroyed exactly once, never while registered; all
//    of them with the bus; a handler removed at top level (no emit running)
//    has been destroyed when remove returns.
#include "fuzz_common.h"

#include <sigreg/bus.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <climits>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using sigreg::Guard;
using sigreg::HandlerId;
using sigreg::ReceiveStatus;

int g_failMoves = 0;

struct EvA {
    std::uint32_t v;
};
struct EvB {
    std::uint32_t v;
    bool throwOnCopy;
    EvB(std::uint32_t value, bool t) noexcept : v(value), throwOnCopy(t) {}
    EvB(const EvB &o) : v(o.v), throwOnCopy(o.throwOnCopy)
    {
        if (o.throwOnCopy)
            throw std::runtime_error("copy");
    }
    EvB(EvB &&o) : v(o.v), throwOnCopy(o.throwOnCopy)
    {
        if (g_failMoves)
            throw std::runtime_error("move");
    }
    EvB &operator=(const EvB &) = delete;
    ~EvB() = default;
};
using EvC = sigreg::ShutdownInitiated;

template <class E>
struct Tag {
    using type = E;
};
template <class E>
constexpr int typeIndex = std::is_same_v<E, EvA> ? 0 : std::is_same_v<E, EvB> ? 1 : 2;
constexpr int kTypes = 3;
const char *const kTypeNames[kTypes] = {"(anonymous namespace)::EvA", "(anonymous namespace)::EvB",
                                        "sigreg::ShutdownInitiated"};

template <class F>
decltype(auto) withType(int t, F &&f)
{
    switch (t) {
    case 0: return f(Tag<EvA>{});
    case 1: return f(Tag<EvB>{});
    default: return f(Tag<EvC>{});
    }
}

std::uint32_t valueOf(const EvA &e) { return e.v; }
std::uint32_t valueOf(const EvB &e) { return e.v; }
std::uint32_t valueOf(const EvC &) { return 0; }

template <class E>
E makeEvent(std::uint32_t v, bool throwOnCopy)
{
    if constexpr (std::is_same_v<E, EvA>)
        return EvA{v};
    else if constexpr (std::is_same_v<E, EvB>)
        return EvB(v, throwOnCopy);
    else
        return EvC{};
}

constexpr int kMaxDepth = 4;
constexpr int kNestedBudget = 8;
constexpr std::size_t kMaxHandlers = 64;
constexpr std::size_t kMaxReceivers = 64;
constexpr int kSlotsPerType = 2;
constexpr int kSlots = kTypes * kSlotsPerType; // slot s holds a Receiver of type s / 2
constexpr std::size_t kGuardSlots = 3;
constexpr std::uint64_t kNeverIssued = 1000000;

enum Beh : std::uint8_t {
    Record,
    ThrowStd,
    ThrowOther,
    EmitNested,
    RemoveTarget,
    UnsubscribeSlot,
    SubscribeSlot,
    GuardResetSlot,
    Probe,
    BehCount
};
const char *behName(Beh b)
{
    static const char *const names[] = {"record", "throw-std", "throw-other", "emit", "remove",
                                        "unsubscribe", "subscribe", "guard-reset", "probe"};
    return b < BehCount ? names[b] : "?";
}

struct Spec {
    int prio;
    Beh beh;
    std::uint8_t param;
};

int decodePrio(std::uint8_t b)
{
    return b >= 250 ? (b & 1 ? INT_MAX : INT_MIN) : int(b % 5) - 2;
}

/// A removal target from a parameter: the type whose handlers are asked,
/// and an id: invalid, never issued, or one issued for some type (maybe
/// another one: ids of different types are unrelated numbers).
struct Target {
    int type;
    std::uint64_t id;
};
Target pickTarget(std::uint8_t p, const std::array<std::vector<std::uint64_t>, kTypes> &issued)
{
    const int type = p % 3;
    const int src = (p / 3) % 3;
    const int k = p / 9; // 0..28
    if (k == 28)
        return {type, 0};
    if (k == 27)
        return {type, kNeverIssued};
    const auto &ids = issued[src];
    return {type, ids.empty() ? 1 : ids[k % ids.size()]};
}

enum Kind : std::uint8_t {
    kCall,      // a: id, b: type | depth << 8, c: value
    kError,     // a: handler id (0 for a receiver), b: type | receiver << 8, c: 1 std, 2 other, 3 copy
    kEmitBegin, // a: type
    kEmitEnd,
    kRemoved,   // a: type, b: id, c: result
    kUnsub,     // a: slot
    kSub,       // a: slot, b: capacity
    kSubSkipped,
    kGuardReset, // a: slot, b: result
    kProbe,      // a: type, b: handlerCount, c: receiverCount
};
const char *kindName(std::uint8_t k)
{
    static const char *const names[] = {"call",  "error", "emit-begin",  "emit-end",    "removed",
                                        "unsub", "sub",   "sub-skipped", "guard-reset", "probe"};
    return k < sizeof names / sizeof names[0] ? names[k] : "?";
}

struct Thrown {
    std::uint64_t id;
};

struct RecvResult {
    ReceiveStatus status;
    std::uint32_t value = 0;
    std::uint64_t lagged = 0;
    friend bool operator==(const RecvResult &a, const RecvResult &b) noexcept
    {
        return a.status == b.status && a.value == b.value && a.lagged == b.lagged;
    }
};

enum class HState : std::uint8_t { Live, Removed, Dead };

class Fuzz;
Fuzz *g_fuzz = nullptr;

struct Tracker {
    int h;
    explicit Tracker(int index) noexcept : h(index) {}
    Tracker(Tracker &&o) noexcept : h(std::exchange(o.h, -1)) {}
    Tracker &operator=(Tracker &&) = delete;
    ~Tracker();
};

template <class E>
struct Handler {
    Tracker tracker;
    void operator()(const E &e) const;
};

struct Sink {
    int mode;
    void operator()(const sigreg::BusFailure &f) const;
};

class Fuzz {
public:
    fuzz::Checker check{"sigreg_fuzz_bus", &kindName};

    void run(const std::uint8_t *data, std::size_t size)
    {
        begin();
        fuzz::Reader in(data, size);
        while (!in.empty())
            step(in);
        check.step("end of input: tear down");
        end();
    }

    // ---- called by handlers, sinks, trackers -------------------------------------

    void onCall(int h, int type, std::uint32_t value)
    {
        const std::uint64_t id = rh[h].id;
        const int depth = rDepth;
        check.actual.push_back({kCall, id, std::uint64_t(type | depth << 8), value});
        const Spec s = rh[h].spec;
        switch (s.beh) {
        case Record: break;
        case ThrowStd: throw std::runtime_error("b" + std::to_string(id));
        case ThrowOther: throw Thrown{id};
        case EmitNested:
            if (depth < kMaxDepth && rBudget > 0) {
                --rBudget;
                const int t = s.param % 3;
                check.actual.push_back({kEmitBegin, std::uint64_t(t)});
                ++rDepth;
                withType(t, [&](auto tag) {
                    using E = typename decltype(tag)::type;
                    bus->emit(makeEvent<E>(s.param, s.param & 8));
                });
                --rDepth;
                check.actual.push_back({kEmitEnd, std::uint64_t(t)});
            }
            break;
        case RemoveTarget: {
            const Target t = pickTarget(s.param, rIssued);
            const bool r = withType(t.type, [&](auto tag) {
                using E = typename decltype(tag)::type;
                return bus->remove<E>(HandlerId(t.id));
            });
            check.actual.push_back({kRemoved, std::uint64_t(t.type), t.id, r});
            break;
        }
        case UnsubscribeSlot: {
            const int slot = s.param % kSlots;
            withSlot(slot, [](auto &rx) { rx.unsubscribe(); });
            check.actual.push_back({kUnsub, std::uint64_t(slot)});
            break;
        }
        case SubscribeSlot: {
            const int slot = s.param % kSlots;
            const std::size_t cap = 1 + (s.param / kSlots) % 8;
            if (rSubscriptions < kMaxReceivers) {
                rSubscribe(slot, cap);
                check.actual.push_back({kSub, std::uint64_t(slot), cap});
            } else {
                check.actual.push_back({kSubSkipped});
            }
            break;
        }
        case GuardResetSlot: {
            const std::size_t slot = s.param % kGuardSlots;
            check.actual.push_back({kGuardReset, slot, guards[slot].reset()});
            break;
        }
        case Probe: {
            const int t = s.param % 3;
            withType(t, [&](auto tag) {
                using E = typename decltype(tag)::type;
                check.actual.push_back({kProbe, std::uint64_t(t), bus->handlerCount<E>(), bus->receiverCount<E>()});
            });
            break;
        }
        case BehCount: break;
        }
    }

    void onFailure(int mode, const sigreg::BusFailure &f)
    {
        int type = -1;
        for (int t = 0; t < kTypes; ++t) {
            if (f.eventType == kTypeNames[t])
                type = t;
        }
        FUZZ_CHECK(check, type >= 0, "error handler: unexpected eventType \"%.*s\"", int(f.eventType.size()),
                   f.eventType.data());
        FUZZ_CHECK(check, f.handler.isValid(), "error handler: invalid handler id");
        FUZZ_CHECK(check, f.exception != nullptr, "error handler: null exception_ptr");
        const std::uint64_t id = f.handler.value();
        std::uint64_t kind = 0;
        try {
            std::rethrow_exception(f.exception);
        } catch (const std::runtime_error &e) {
            const std::string msg = e.what();
            if (f.receiver) {
                kind = 3;
                FUZZ_CHECK(check, msg == "copy", "error handler: a receiver's failure is \"%s\"", e.what());
            } else {
                kind = 1;
                FUZZ_CHECK(check, msg == "b" + std::to_string(id), "error handler: handler %llu reported, \"%s\" thrown",
                           (unsigned long long)id, e.what());
            }
            FUZZ_CHECK(check, f.what && msg == f.what, "error handler: `what` is not what() of the exception");
        } catch (const Thrown &t) {
            kind = 2;
            FUZZ_CHECK(check, !f.receiver && t.id == id, "error handler: handler %llu reported, handler %llu threw",
                       (unsigned long long)id, (unsigned long long)t.id);
            FUZZ_CHECK(check, f.what == nullptr, "error handler: `what` set for a non-std exception");
        } catch (...) {
            check.fail("error handler: the exception_ptr holds an unexpected type");
        }
        check.actual.push_back({kError, f.receiver ? 0 : id, std::uint64_t(type | int(f.receiver) << 8), kind});
        if (mode == 2)
            throw Thrown{~std::uint64_t(0)};
    }

    void onDestroyed(int h)
    {
        FUZZ_CHECK(check, !rh[h].destroyed, "handler #%d (id %llu) destroyed twice", h, (unsigned long long)rh[h].id);
        rh[h].destroyed = true;
    }

private:
    // ---- the real side ---------------------------------------------------------------

    struct RHandler {
        Spec spec;
        int type;
        std::uint64_t id = 0;
        bool destroyed = false;
    };

    std::unique_ptr<sigreg::Bus> bus;
    std::tuple<std::array<sigreg::Receiver<EvA>, kSlotsPerType>, std::array<sigreg::Receiver<EvB>, kSlotsPerType>,
               std::array<sigreg::Receiver<EvC>, kSlotsPerType>>
        m_rx;
    std::array<Guard, kGuardSlots> guards;
    std::vector<RHandler> rh;
    std::array<std::vector<std::uint64_t>, kTypes> rIssued;
    std::size_t rSubscriptions = 0;
    int rBudget = 0;
    int rDepth = 0;

    template <class E>
    std::array<sigreg::Receiver<E>, kSlotsPerType> &slotsOf()
    {
        return std::get<std::array<sigreg::Receiver<E>, kSlotsPerType>>(m_rx);
    }
    template <class F>
    auto withSlot(int slot, F &&f) -> decltype(f(std::declval<sigreg::Receiver<EvA> &>()))
    {
        return withType(slot / kSlotsPerType, [&](auto tag) -> decltype(auto) {
            using E = typename decltype(tag)::type;
            return f(slotsOf<E>()[slot % kSlotsPerType]);
        });
    }
    void rSubscribe(int slot, std::size_t cap)
    {
        withType(slot / kSlotsPerType, [&](auto tag) {
            using E = typename decltype(tag)::type;
            slotsOf<E>()[slot % kSlotsPerType] = bus->subscribe<E>(cap);
        });
        ++rSubscriptions;
    }
    template <class E>
    static RecvResult toResult(sigreg::ReceiveResult<E> &r, fuzz::Checker &check)
    {
        RecvResult out{r.status()};
        FUZZ_CHECK(check, r.hasValue() == (r.status() == ReceiveStatus::Received) && bool(r) == r.hasValue(),
                   "ReceiveResult: hasValue() disagrees with status()");
        FUZZ_CHECK(check, r.status() == ReceiveStatus::Lagged || r.lagged() == 0, "ReceiveResult: lagged() %llu for %s",
                   (unsigned long long)r.lagged(), std::string(sigreg::toString(r.status())).c_str());
        if (r.hasValue()) {
            out.value = valueOf(*r);
            if constexpr (std::is_same_v<E, EvB>)
                FUZZ_CHECK(check, !r->throwOnCopy, "received an event whose copy threw");
        }
        if (r.status() == ReceiveStatus::Lagged)
            out.lagged = r.lagged();
        return out;
    }

    // ---- the model -----------------------------------------------------------------------

    struct MLive {
        std::uint64_t id;
        int prio;
        std::uint64_t seq;
        int h;
    };
    struct MType {
        bool channel = false;
        std::uint64_t lastId = 0;
        std::uint64_t seq = 0;
        std::vector<MLive> live;
        std::vector<int> receivers; // subscribed receivers, in subscription order
    };
    struct MRecv {
        int type;
        std::size_t cap;
        bool closed = false;
        std::uint64_t head = 0;
        std::vector<std::pair<std::uint32_t, bool>> pos; // value, missed (its copy threw)
        std::uint64_t missed = 0;
    };
    struct MHandler {
        Spec spec;
        int type;
        std::uint64_t id = 0;
        HState state = HState::Live;
    };
    struct MGuard {
        int type = 0;
        std::uint64_t id = 0;
        int gen = 0;
    };

    std::array<MType, kTypes> mt;
    std::array<std::vector<std::uint64_t>, kTypes> mIssued;
    std::vector<MRecv> mr;
    std::array<int, kSlots> mslot{};
    std::vector<MHandler> mh;
    std::array<MGuard, kGuardSlots> mg{};
    int mGen = 0;
    int mErrMode = 0;
    std::uint64_t mFailures = 0;
    std::uint64_t mUnhandled = 0;
    bool mShutting = false;
    std::size_t mDefaultCap = 4;
    int mBudget = 0;

    MLive *mFind(int type, std::uint64_t id)
    {
        for (MLive &e : mt[type].live) {
            if (e.id == id)
                return &e;
        }
        return nullptr;
    }
    std::uint64_t mOn(int h)
    {
        MType &t = mt[mh[h].type];
        t.channel = true;
        const std::uint64_t id = ++t.lastId;
        mIssued[mh[h].type].push_back(id);
        mh[h].id = id;
        const int p = mh[h].spec.prio;
        auto pos = std::find_if(t.live.begin(), t.live.end(), [p](const MLive &e) { return e.prio < p; });
        t.live.insert(pos, MLive{id, p, ++t.seq, h});
        return id;
    }
    bool mRemove(int type, std::uint64_t id)
    {
        MType &t = mt[type];
        for (auto it = t.live.begin(); it != t.live.end(); ++it) {
            if (it->id == id) {
                mh[it->h].state = HState::Removed;
                t.live.erase(it);
                return true;
            }
        }
        return false;
    }
    void mUnsubscribe(int r)
    {
        if (r < 0 || mr[r].closed)
            return;
        mr[r].closed = true;
        auto &list = mt[mr[r].type].receivers;
        list.erase(std::find(list.begin(), list.end(), r));
    }
    void mSubscribe(int slot, std::size_t cap)
    {
        const int type = slot / kSlotsPerType;
        mt[type].channel = true;
        mr.push_back(MRecv{type, cap, false, 0, {}, 0});
        const int r = int(mr.size() - 1);
        mt[type].receivers.push_back(r);
        const int old = std::exchange(mslot[slot], r);
        mUnsubscribe(old);
    }
    bool mGuardDispose(std::size_t slot)
    {
        const MGuard g = std::exchange(mg[slot], MGuard{});
        return g.id != 0 && g.gen == mGen && mt[g.type].channel && mRemove(g.type, g.id);
    }
    void mFailure(int type, bool receiver, std::uint64_t id, std::uint64_t kind)
    {
        ++mFailures;
        if (mErrMode == 0) {
            ++mUnhandled;
            return;
        }
        check.expected.push_back({kError, receiver ? 0 : id, std::uint64_t(type | int(receiver) << 8), kind});
        if (mErrMode == 2)
            ++mUnhandled;
    }
    void mEmit(int type, std::uint32_t value, bool throwOnCopy, int depth)
    {
        MType &t = mt[type];
        if (!t.channel)
            return;
        for (int r : t.receivers) {
            mr[r].pos.emplace_back(value, throwOnCopy);
            if (throwOnCopy)
                mFailure(type, true, 0, 3);
        }
        std::vector<std::uint64_t> snapshot;
        snapshot.reserve(t.live.size());
        for (const MLive &e : t.live)
            snapshot.push_back(e.id);
        for (std::uint64_t id : snapshot) {
            if (const MLive *e = mFind(type, id))
                mCall(e->h, type, id, depth, value);
        }
    }
    void mCall(int h, int type, std::uint64_t id, int depth, std::uint32_t value)
    {
        auto &exp = check.expected;
        exp.push_back({kCall, id, std::uint64_t(type | depth << 8), value});
        const Spec s = mh[h].spec;
        switch (s.beh) {
        case Record: break;
        case ThrowStd: mFailure(type, false, id, 1); break;
        case ThrowOther: mFailure(type, false, id, 2); break;
        case EmitNested:
            if (depth < kMaxDepth && mBudget > 0) {
                --mBudget;
                const int t = s.param % 3;
                exp.push_back({kEmitBegin, std::uint64_t(t)});
                mEmit(t, t == 2 ? 0 : s.param, t == 1 && (s.param & 8), depth + 1);
                exp.push_back({kEmitEnd, std::uint64_t(t)});
            }
            break;
        case RemoveTarget: {
            const Target t = pickTarget(s.param, mIssued);
            exp.push_back({kRemoved, std::uint64_t(t.type), t.id, mt[t.type].channel && mRemove(t.type, t.id)});
            break;
        }
        case UnsubscribeSlot: {
            const int slot = s.param % kSlots;
            mUnsubscribe(mslot[slot]);
            exp.push_back({kUnsub, std::uint64_t(slot)});
            break;
        }
        case SubscribeSlot: {
            const int slot = s.param % kSlots;
            const std::size_t cap = 1 + (s.param / kSlots) % 8;
            if (mr.size() < kMaxReceivers) {
                mSubscribe(slot, cap);
                exp.push_back({kSub, std::uint64_t(slot), cap});
            } else {
                exp.push_back({kSubSkipped});
            }
            break;
        }
        case GuardResetSlot: {
            const std::size_t slot = s.param % kGuardSlots;
            exp.push_back({kGuardReset, slot, mGuardDispose(slot)});
            break;
        }
        case Probe: {
            const int t = s.param % 3;
            exp.push_back({kProbe, std::uint64_t(t), mt[t].live.size(), mt[t].receivers.size()});
            break;
        }
        case BehCount: break;
        }
    }

    /// What a receive at `slot` returns; `consume` false leaves the model as it is.
    RecvResult mReceive(int slot, bool consume)
    {
        const int r = mslot[slot];
        if (r < 0)
            return {ReceiveStatus::Closed};
        MRecv tmp = consume ? MRecv{} : mr[r];
        MRecv &m = consume ? mr[r] : tmp;
        const std::uint64_t tail = m.pos.size();
        if (tail - m.head > m.cap) {
            const std::uint64_t n = tail - m.cap - m.head;
            m.head = tail - m.cap;
            m.missed += n;
            return {ReceiveStatus::Lagged, 0, n};
        }
        if (m.head < tail) {
            const auto p = m.pos[m.head++];
            if (p.second) {
                ++m.missed;
                return {ReceiveStatus::Lagged, 0, 1};
            }
            return {ReceiveStatus::Received, p.first, 0};
        }
        return {m.closed ? ReceiveStatus::Closed : ReceiveStatus::Empty};
    }
    /// True when a receive would not wait (an event, a lag report, or Closed).
    bool mReady(int slot) const
    {
        const int r = mslot[slot];
        return r < 0 || mr[r].closed || mr[r].head < mr[r].pos.size();
    }

    // ---- driving -----------------------------------------------------------------------------

    void begin()
    {
        check.reset();
        rh.clear();
        mh.clear();
        for (auto &v : rIssued)
            v.clear();
        rSubscriptions = 0;
        mr.clear();
        mslot.fill(-1);
        mg.fill(MGuard{});
        mGen = 0;
        mDefaultCap = 4;
        bus = std::make_unique<sigreg::Bus>(mDefaultCap);
        resetModelBus();
    }
    void resetModelBus()
    {
        for (MType &t : mt)
            t = MType{};
        for (auto &v : mIssued)
            v.clear();
        mErrMode = 0;
        mFailures = 0;
        mUnhandled = 0;
        mShutting = false;
    }
    void destroyBus()
    {
        bus.reset();
        for (std::size_t r = 0; r < mr.size(); ++r)
            mUnsubscribe(int(r));
        for (MHandler &m : mh)
            m.state = HState::Dead;
        for (std::size_t h = 0; h < rh.size(); ++h) {
            FUZZ_CHECK(check, rh[h].destroyed, "handler #%zu (type %d, id %llu) outlived its bus", h, rh[h].type,
                       (unsigned long long)rh[h].id);
        }
    }
    void end()
    {
        destroyBus();
        // Receivers outlive the bus: they drain, then report Closed.
        for (int slot = 0; slot < kSlots; ++slot) {
            for (;;) {
                const RecvResult want = mReceive(slot, true);
                const RecvResult got = withSlot(slot, [&](auto &rx) {
                    auto r = rx.tryReceive();
                    return toResult(r, check);
                });
                FUZZ_CHECK(check, got == want, "draining slot %d after the bus's end: status %s value %u lagged %llu; the model expects %s %u %llu",
                           slot, std::string(sigreg::toString(got.status)).c_str(), got.value,
                           (unsigned long long)got.lagged, std::string(sigreg::toString(want.status)).c_str(), want.value,
                           (unsigned long long)want.lagged);
                if (got.status == ReceiveStatus::Closed)
                    break;
            }
        }
        m_rx = {};
        for (Guard &g : guards)
            FUZZ_CHECK(check, !g.reset(), "a guard removed something after its bus was destroyed");
    }

    void compareReceive(int slot, const RecvResult &got, const RecvResult &want, const char *what)
    {
        check.note("%s value %u lagged %llu", std::string(sigreg::toString(got.status)).c_str(), got.value,
                   (unsigned long long)got.lagged);
        FUZZ_CHECK(check, got == want, "%s on slot %d: %s value %u lagged %llu; the model expects %s value %u lagged %llu",
                   what, slot, std::string(sigreg::toString(got.status)).c_str(), got.value,
                   (unsigned long long)got.lagged, std::string(sigreg::toString(want.status)).c_str(), want.value,
                   (unsigned long long)want.lagged);
    }

    void step(fuzz::Reader &in)
    {
        check.expected.clear();
        check.actual.clear();
        rBudget = mBudget = kNestedBudget;
        rDepth = 0;
        int removalType = -1; // a top-level removal happened in this type's handlers
        const std::uint8_t op = in.byte() % 19;
        switch (op) {
        case 0:
        case 1:
        case 2: { // emit, or emit through a Sender (which creates the channel)
            const int type = in.byte() % 3;
            const std::uint8_t b = in.byte();
            const std::uint32_t value = type == 2 ? 0 : b;
            const bool throwOnCopy = type == 1 && (b & 8);
            const bool viaSender = op == 2;
            check.step("%s<%d>(%u%s)", viaSender ? "sender().emit" : "emit", type, value,
                       throwOnCopy ? ", throwing copy" : "");
            if (viaSender)
                mt[type].channel = true;
            mEmit(type, value, throwOnCopy, 0);
            withType(type, [&](auto tag) {
                using E = typename decltype(tag)::type;
                const E e = makeEvent<E>(value, throwOnCopy);
                if (viaSender)
                    bus->sender<E>().emit(e);
                else
                    bus->emit(e);
            });
            break;
        }
        case 3: { // subscribe
            const int slot = in.byte() % kSlots;
            const std::uint8_t c = in.byte();
            check.step("slot %d = subscribe(capacity byte %u)", slot, c);
            const int type = slot / kSlotsPerType;
            if (c == 254 || c == 253) {
                const std::size_t bad = c == 254 ? 0 : sigreg::Bus::kMaxCapacity + 1;
                bool threw = false;
                withType(type, [&](auto tag) {
                    using E = typename decltype(tag)::type;
                    try {
                        (void)bus->subscribe<E>(bad);
                    } catch (const std::invalid_argument &) {
                        threw = c == 254;
                    } catch (const std::length_error &) {
                        threw = c == 253;
                    }
                });
                FUZZ_CHECK(check, threw, "subscribe(%zu) did not throw the documented exception", bad);
                break;
            }
            if (mr.size() >= kMaxReceivers) {
                check.note("skipped: receiver cap");
                break;
            }
            const std::size_t cap = c == 255 ? mDefaultCap : 1 + c % 8;
            mSubscribe(slot, cap);
            if (c == 255) {
                withType(type, [&](auto tag) {
                    using E = typename decltype(tag)::type;
                    slotsOf<E>()[slot % kSlotsPerType] = bus->subscribe<E>();
                });
                ++rSubscriptions;
            } else {
                rSubscribe(slot, cap);
            }
            break;
        }
        case 4:
        case 5: { // tryReceive
            const int slot = in.byte() % kSlots;
            check.step("slot %d.tryReceive()", slot);
            const RecvResult want = mReceive(slot, true);
            const RecvResult got = withSlot(slot, [&](auto &rx) {
                auto r = rx.tryReceive();
                return toResult(r, check);
            });
            compareReceive(slot, got, want, "tryReceive");
            break;
        }
        case 6: { // receiveFor(0) / receiveUntil(the past)
            const int slot = in.byte() % kSlots;
            const int how = in.byte() % 3;
            check.step("slot %d.%s", slot, how == 0 ? "receiveFor(0)" : how == 1 ? "receiveUntil(steady past)" : "receiveUntil(system past)");
            const RecvResult want = mReady(slot) ? mReceive(slot, true) : RecvResult{ReceiveStatus::TimedOut};
            const RecvResult got = withSlot(slot, [&](auto &rx) {
                auto r = how == 0 ? rx.receiveFor(std::chrono::milliseconds(0))
                    : how == 1    ? rx.receiveUntil(std::chrono::steady_clock::now() - std::chrono::seconds(1))
                                  : rx.receiveUntil(std::chrono::system_clock::now() - std::chrono::seconds(1));
                if (!r.hasValue()) {
                    bool threw = false;
                    try {
                        (void)r.value();
                    } catch (const std::logic_error &) {
                        threw = true;
                    }
                    FUZZ_CHECK(check, threw, "ReceiveResult::value() without an event did not throw");
                }
                return toResult(r, check);
            });
            compareReceive(slot, got, want, "receiveFor/Until");
            break;
        }
        case 7: { // receive() (blocking) when the model says it will not block
            const int slot = in.byte() % kSlots;
            const bool ready = mReady(slot);
            check.step("slot %d.%s", slot, ready ? "receive()" : "tryReceive() (receive() would block)");
            const RecvResult want = mReceive(slot, true);
            const RecvResult got = withSlot(slot, [&](auto &rx) {
                auto r = ready ? rx.receive() : rx.tryReceive();
                return toResult(r, check);
            });
            compareReceive(slot, got, want, "receive");
            break;
        }
        case 8: { // unsubscribe
            const int slot = in.byte() % kSlots;
            check.step("slot %d.unsubscribe()", slot);
            mUnsubscribe(mslot[slot]);
            withSlot(slot, [](auto &rx) { rx.unsubscribe(); });
            break;
        }
        case 9: { // move one receiver onto another of its type (maybe itself)
            const int type = in.byte() % 3;
            const std::uint8_t ab = in.byte();
            const int a = type * kSlotsPerType + (ab & 1);
            const int b = type * kSlotsPerType + ((ab >> 1) & 1);
            check.step("slot %d = move(slot %d)", b, a);
            if (a == b) {
                check.note("skipped: self-move (state unspecified)");
                break;
            }
            mUnsubscribe(std::exchange(mslot[b], std::exchange(mslot[a], -1)));
            withType(type, [&](auto tag) {
                using E = typename decltype(tag)::type;
                auto &s = slotsOf<E>();
                auto &src = s[a % kSlotsPerType];
                s[b % kSlotsPerType] = std::move(src);
            });
            break;
        }
        case 10: { // replace a receiver with a default-constructed one
            const int slot = in.byte() % kSlots;
            check.step("slot %d = Receiver()", slot);
            mUnsubscribe(std::exchange(mslot[slot], -1));
            withType(slot / kSlotsPerType, [&](auto tag) {
                using E = typename decltype(tag)::type;
                slotsOf<E>()[slot % kSlotsPerType] = sigreg::Receiver<E>();
            });
            break;
        }
        case 11:
        case 12: { // on<E>(prio, f), or guard = onGuarded<E>(prio, f)
            const int type = in.byte() % 3;
            const std::size_t gslot = op == 12 ? in.byte() % kGuardSlots : 0;
            const Spec s{decodePrio(in.byte()), Beh(in.byte() % BehCount), in.byte()};
            check.step("%s<%d>(prio %d, %s/%u)%s", op == 12 ? "onGuarded" : "on", type, s.prio, behName(s.beh),
                       s.param, op == 12 ? " into a guard" : "");
            if (mh.size() >= kMaxHandlers) {
                check.note("skipped: handler cap");
                break;
            }
            mh.push_back(MHandler{s, type});
            const std::uint64_t want = mOn(int(mh.size() - 1));
            if (op == 12) {
                // The new guard replaces the slot's: that one's handler is removed.
                const int oldType = mg[gslot].type;
                if (mGuardDispose(gslot))
                    removalType = oldType;
                mg[gslot] = MGuard{type, want, mGen};
            }
            rh.push_back(RHandler{s, type});
            const int h = int(rh.size() - 1);
            HandlerId id;
            withType(type, [&](auto tag) {
                using E = typename decltype(tag)::type;
                if (op == 12) {
                    guards[gslot] = bus->onGuarded<E>(s.prio, Handler<E>{Tracker(h)});
                    id = guards[gslot].id();
                } else {
                    id = bus->on<E>(s.prio, Handler<E>{Tracker(h)});
                }
            });
            rh[h].id = id.value();
            rIssued[type].push_back(id.value());
            check.note("id %llu", (unsigned long long)id.value());
            FUZZ_CHECK(check, id.value() == want, "on<%d> returned id %llu, the model expects %llu", type,
                       (unsigned long long)id.value(), (unsigned long long)want);
            break;
        }
        case 13: { // remove<E>(id)
            const std::uint8_t p = in.byte();
            const Target mtg = pickTarget(p, mIssued);
            const Target rtg = pickTarget(p, rIssued);
            check.step("remove<%d>(%llu)", rtg.type, (unsigned long long)rtg.id);
            const bool want = mt[mtg.type].channel && mRemove(mtg.type, mtg.id);
            const bool got = withType(rtg.type, [&](auto tag) {
                using E = typename decltype(tag)::type;
                return bus->remove<E>(HandlerId(rtg.id));
            });
            check.note("%d", got);
            FUZZ_CHECK(check, got == want, "remove returned %d, the model expects %d", got, want);
            if (got)
                removalType = rtg.type;
            break;
        }
        case 14: { // guard: reset / resetNoWait / drop / release
            const std::size_t gslot = in.byte() % kGuardSlots;
            const int how = in.byte() % 4;
            static const char *const hows[] = {"reset()", "resetNoWait()", "drop", "release()"};
            check.step("guard[%zu].%s (id %llu)", gslot, hows[how], (unsigned long long)guards[gslot].id().value());
            const int type = mg[gslot].type;
            if (how == 3) {
                const std::uint64_t want = std::exchange(mg[gslot], MGuard{}).id;
                const HandlerId got = guards[gslot].release();
                FUZZ_CHECK(check, got.value() == want, "release returned %llu, the model expects %llu",
                           (unsigned long long)got.value(), (unsigned long long)want);
                break;
            }
            const bool want = mGuardDispose(gslot);
            bool got = false;
            if (how == 0)
                got = guards[gslot].reset();
            else if (how == 1)
                got = guards[gslot].resetNoWait();
            else {
                Guard doomed = std::move(guards[gslot]);
                got = want; // the destructor reports nothing; the model's checks below decide
            }
            check.note("%d", got);
            FUZZ_CHECK(check, got == want, "guard reset returned %d, the model expects %d", got, want);
            if (want)
                removalType = type;
            break;
        }
        case 15: { // error handler
            const int mode = in.byte() % 4;
            check.step("error handler mode %d", mode);
            bool threw = false;
            try {
                if (mode == 3)
                    bus->setErrorHandler(std::function<void(const sigreg::BusFailure &)>());
                else if (mode == 0)
                    bus->resetErrorHandler();
                else
                    bus->setErrorHandler(Sink{mode});
            } catch (const std::invalid_argument &) {
                threw = true;
            }
            FUZZ_CHECK(check, threw == (mode == 3), "setErrorHandler: invalid_argument %s",
                       threw ? "for a valid handler" : "not thrown for an empty one");
            if (mode != 3)
                mErrMode = mode;
            break;
        }
        case 16: { // initiateShutdown
            check.step("initiateShutdown()");
            const bool want = !mShutting;
            if (want) {
                mShutting = true;
                mEmit(2, 0, false, 0);
            }
            const bool got = bus->initiateShutdown();
            check.note("%d", got);
            FUZZ_CHECK(check, got == want, "initiateShutdown returned %d, the model expects %d", got, want);
            break;
        }
        case 17: { // destroy the bus (receivers and guards live on), make a new one
            const std::uint8_t c = in.byte();
            check.step("destroy the bus, make a new one (default capacity byte %u)", c);
            destroyBus();
            if (c == 255) {
                bool threw0 = false, threwMax = false;
                try {
                    sigreg::Bus b(0);
                } catch (const std::invalid_argument &) {
                    threw0 = true;
                }
                try {
                    sigreg::Bus b(sigreg::Bus::kMaxCapacity + 1);
                } catch (const std::length_error &) {
                    threwMax = true;
                }
                FUZZ_CHECK(check, threw0 && threwMax, "Bus(0) / Bus(kMaxCapacity + 1) did not throw");
            }
            ++mGen;
            mDefaultCap = 1 + c % 8;
            bus = std::make_unique<sigreg::Bus>(mDefaultCap);
            resetModelBus();
            for (auto &v : rIssued)
                v.clear();
            break;
        }
        case 18: { // tryReceive on an EvB receiver whose move throws
            const int slot = kSlotsPerType + in.byte() % kSlotsPerType;
            check.step("slot %d.tryReceive() with a throwing move", slot);
            const RecvResult predicted = mReceive(slot, false);
            bool threw = false;
            RecvResult got{ReceiveStatus::Empty};
            g_failMoves = 1;
            try {
                auto r = slotsOf<EvB>()[slot % kSlotsPerType].tryReceive();
                g_failMoves = 0;
                got = toResult(r, check);
            } catch (const std::runtime_error &e) {
                threw = std::strcmp(e.what(), "move") == 0;
            }
            g_failMoves = 0;
            if (predicted.status == ReceiveStatus::Received) {
                check.note("threw %d", threw);
                FUZZ_CHECK(check, threw, "a receive whose move throws did not propagate the exception");
            } else {
                compareReceive(slot, got, mReceive(slot, true), "tryReceive (throwing move armed)");
            }
            break;
        }
        }
        check.compareLogs();
        checkState(removalType);
    }

    void checkState(int removalType)
    {
        FUZZ_CHECK(check, rh.size() == mh.size(), "%zu handlers created, the model created %zu", rh.size(), mh.size());
        FUZZ_CHECK(check, rSubscriptions == mr.size(), "%zu subscriptions, the model has %zu", rSubscriptions,
                   mr.size());
        FUZZ_CHECK(check, rIssued == mIssued, "the handler ids issued differ from the model's");
        for (std::size_t h = 0; h < rh.size(); ++h) {
            const HState st = mh[h].state;
            FUZZ_CHECK(check, rh[h].id == mh[h].id && rh[h].type == mh[h].type,
                       "handler #%zu: id %llu, the model has %llu", h, (unsigned long long)rh[h].id,
                       (unsigned long long)mh[h].id);
            FUZZ_CHECK(check, !(rh[h].destroyed && st == HState::Live), "handler #%zu (type %d, id %llu) destroyed while registered",
                       h, rh[h].type, (unsigned long long)rh[h].id);
            FUZZ_CHECK(check, rh[h].destroyed || st != HState::Dead, "handler #%zu not destroyed with its bus", h);
            if (removalType == mh[h].type)
                FUZZ_CHECK(check, rh[h].destroyed || st != HState::Removed,
                           "handler #%zu (type %d, id %llu) removed but not destroyed after a top-level removal", h,
                           rh[h].type, (unsigned long long)rh[h].id);
        }
        std::size_t channels = 0;
        for (int t = 0; t < kTypes; ++t) {
            channels += mt[t].channel;
            withType(t, [&](auto tag) {
                using E = typename decltype(tag)::type;
                FUZZ_CHECK(check, bus->hasChannel<E>() == mt[t].channel, "hasChannel<%d>() is %d", t,
                           bus->hasChannel<E>());
                FUZZ_CHECK(check, bus->handlerCount<E>() == mt[t].live.size(), "handlerCount<%d>() is %zu, the model has %zu",
                           t, bus->handlerCount<E>(), mt[t].live.size());
                FUZZ_CHECK(check, bus->receiverCount<E>() == mt[t].receivers.size(),
                           "receiverCount<%d>() is %zu, the model has %zu", t, bus->receiverCount<E>(),
                           mt[t].receivers.size());
            });
        }
        FUZZ_CHECK(check, bus->typeCount() == channels, "typeCount() is %zu, the model has %zu", bus->typeCount(),
                   channels);
        FUZZ_CHECK(check, bus->failureCount() == mFailures, "failureCount() is %llu, the model has %llu",
                   (unsigned long long)bus->failureCount(), (unsigned long long)mFailures);
        FUZZ_CHECK(check, bus->unhandledFailureCount() == mUnhandled, "unhandledFailureCount() is %llu, the model has %llu",
                   (unsigned long long)bus->unhandledFailureCount(), (unsigned long long)mUnhandled);
        FUZZ_CHECK(check, bus->isShuttingDown() == mShutting, "isShuttingDown() disagrees with the model");
        FUZZ_CHECK(check, bus->defaultCapacity() == mDefaultCap, "defaultCapacity() is %zu", bus->defaultCapacity());
        for (int slot = 0; slot < kSlots; ++slot) {
            const int r = mslot[slot];
            const bool subscribed = r >= 0 && !mr[r].closed;
            const std::size_t cap = r >= 0 ? mr[r].cap : 0;
            const std::size_t pending = r >= 0 ? std::size_t(std::min<std::uint64_t>(mr[r].pos.size() - mr[r].head, cap)) : 0;
            const std::uint64_t missed = r >= 0 ? mr[r].missed : 0;
            withSlot(slot, [&](auto &rx) {
                FUZZ_CHECK(check, rx.isSubscribed() == subscribed, "slot %d: isSubscribed() is %d", slot,
                           rx.isSubscribed());
                FUZZ_CHECK(check, rx.capacity() == cap, "slot %d: capacity() is %zu, the model has %zu", slot,
                           rx.capacity(), cap);
                FUZZ_CHECK(check, rx.pending() == pending, "slot %d: pending() is %zu, the model has %zu", slot,
                           rx.pending(), pending);
                FUZZ_CHECK(check, rx.missedCount() == missed, "slot %d: missedCount() is %llu, the model has %llu",
                           slot, (unsigned long long)rx.missedCount(), (unsigned long long)missed);
            });
        }
        for (std::size_t g = 0; g < kGuardSlots; ++g) {
            FUZZ_CHECK(check, guards[g].id().value() == mg[g].id && guards[g].isActive() == (mg[g].id != 0),
                       "guard[%zu]: id %llu, the model has %llu", g, (unsigned long long)guards[g].id().value(),
                       (unsigned long long)mg[g].id);
        }
    }

};

Tracker::~Tracker()
{
    if (h >= 0)
        g_fuzz->onDestroyed(h);
}

template <class E>
void Handler<E>::operator()(const E &e) const
{
    g_fuzz->onCall(tracker.h, typeIndex<E>, valueOf(e));
}

void Sink::operator()(const sigreg::BusFailure &f) const
{
    g_fuzz->onFailure(mode, f);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    static Fuzz *fuzz = new Fuzz; // never destroyed: receivers and guards must not outlive it at exit
    g_fuzz = fuzz;
    fuzz->run(data, size);
    return 0;
}
