// SPDX-License-Identifier: MIT
// Sigreg Qt — mailboxes, pooling, gating and async joins.
#include "dispatch_p.h"

#include <sigreg/detail/hazard.h>
#include <sigreg/qt/qtregistry.h>

#include <QtCore/QAbstractEventDispatcher>
#include <QtCore/QCoreApplication>
#include <QtCore/QHash>
#include <QtCore/QFutureWatcher>
#include <QtCore/QPromise>
#include <QtCore/QThread>

#ifdef SIGREG_ASAN
#include <sanitizer/lsan_interface.h>
#endif

#include <algorithm>
#include <array>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

namespace sigreg::qtdetail {

// ====================================================================== pool
namespace {

constexpr std::size_t kClassCount = 5; // 64, 128, 256, 512, 1024 bytes

int sizeClass(std::size_t bytes) noexcept
{
    std::size_t size = 64;
    for (int c = 0; c < int(kClassCount); ++c, size <<= 1) {
        if (bytes <= size)
            return c;
    }
    return -1;
}

struct FreeBlock {
    FreeBlock *next;
};

/// Blocks freed by any thread. Pushed one at a time (a CAS push is immune to
/// ABA), taken all at once with an exchange (so is that).
struct alignas(64) ReturnStack {
    std::atomic<FreeBlock *> head{nullptr};

    void push(FreeBlock *b) noexcept
    {
        FreeBlock *h = head.load(std::memory_order_relaxed);
        do {
            b->next = h;
        } while (!head.compare_exchange_weak(h, b, std::memory_order_release, std::memory_order_relaxed));
    }
};

// Constant-initialised and trivially destructible: nothing to allocate on
// first use (which could fail under a noexcept caller) and nothing destroyed
// at exit, so blocks stay reachable (and reusable) until the process ends.
constinit std::array<ReturnStack, kClassCount> g_returnStacks{};
static_assert(std::is_trivially_destructible_v<std::array<ReturnStack, kClassCount>>);

std::array<ReturnStack, kClassCount> &returnStacks() noexcept
{
    return g_returnStacks;
}

/// Blocks this thread took from a return stack and has not used yet.
struct Cache {
    std::array<FreeBlock *, kClassCount> lists{};
    ~Cache()
    {
        for (std::size_t c = 0; c < kClassCount; ++c) {
            while (FreeBlock *b = lists[c]) {
                lists[c] = b->next;
                returnStacks()[c].push(b);
            }
        }
    }
};
thread_local Cache t_cache;

} // namespace

void *poolAllocate(std::size_t bytes)
{
    const int c = sizeClass(bytes);
    if (c < 0)
        return ::operator new(bytes, std::align_val_t(kPoolAlign));
    FreeBlock *&list = t_cache.lists[std::size_t(c)];
    if (!list)
        list = returnStacks()[std::size_t(c)].head.exchange(nullptr, std::memory_order_acquire);
    if (FreeBlock *b = list) {
        list = b->next;
        return b;
    }
    return ::operator new(std::size_t(64) << c, std::align_val_t(kPoolAlign));
}

void poolFree(void *block, std::size_t bytes) noexcept
{
    const int c = sizeClass(bytes);
    if (c < 0) {
        ::operator delete(block, std::align_val_t(kPoolAlign));
        return;
    }
    returnStacks()[std::size_t(c)].push(static_cast<FreeBlock *>(block));
}

namespace {

Task *newTask(HandlerState *state, Parcel *parcel, const void *event, Completion *completion)
{
    static_assert(sizeof(Task) <= 64);
    auto *t = new (poolAllocate(sizeof(Task))) Task;
    state->ref();
    if (parcel)
        parcel->ref();
    t->state = state;
    t->parcel = parcel;
    t->event = parcel ? parcel->event : event;
    t->completion = completion;
    return t;
}

} // namespace

Task *newCallbackTask(void (*callback)(void *, bool) noexcept, void *arg)
{
    auto *t = new (poolAllocate(sizeof(Task))) Task;
    t->callback = callback;
    t->arg = arg;
    return t;
}

namespace {
void freeTask(Task *t) noexcept
{
    t->~Task();
    poolFree(t, sizeof(Task));
}

/// Ends a callback task: frees it, then calls back (which may take long).
void finishCallbackTask(Task *t, bool run) noexcept
{
    const auto callback = t->callback;
    void *const arg = t->arg;
    freeTask(t);
    callback(arg, run);
}
} // namespace

void dropTask(Task *t) noexcept
{
    if (t->callback) {
        finishCallbackTask(t, false);
        return;
    }
    if (t->completion)
        t->completion->signal();
    if (t->parcel)
        t->parcel->deref();
    t->state->deref();
    freeTask(t);
}

// ====================================================================== reporting
void Reporter::report(HandlerId id, std::exception_ptr error) noexcept
{
    failures.fetch_add(1, std::memory_order_relaxed);
    deliver(id, error);
}

namespace {

/// Reports the outcome of a finished handler future, if it is a failure.
void reportOutcome(const QFuture<void> &f, HandlerId id, Reporter &reporter) noexcept
{
    if (!f.isCanceled())
        return;
    std::exception_ptr error;
    try {
        QFuture<void> copy = f;
        copy.waitForFinished(); // rethrows a stored exception
        error = std::make_exception_ptr(HandlerCanceled());
    } catch (...) {
        error = detail::currentException();
    }
    reporter.report(id, error);
}

void reportCurrent(HandlerState *state) noexcept
{
    state->reporter->report(state->id, detail::currentException());
}

} // namespace

// ====================================================================== handler state
namespace {

/// The marshalled or async calls running on this thread, innermost first:
/// a remover running inside one of them must not wait for itself.
struct RunningScope {
    HandlerState *state;
    RunningScope *prev;
};
thread_local RunningScope *t_running = nullptr;

} // namespace

bool HandlerState::enter() noexcept
{
    std::uint32_t g = gate.load(std::memory_order_relaxed);
    do {
        if (g & kRemoved)
            return false;
    } while (!gate.compare_exchange_weak(g, g + 1, std::memory_order_acquire, std::memory_order_relaxed));
    return true;
}

void HandlerState::leave() noexcept
{
    if (gate.fetch_sub(1, std::memory_order_release) & kRemoved)
        gate.notify_all();
}

void HandlerState::markRemoved(detail::Removal how) noexcept
{
    // Idempotent, so a later waiting removal (WaitForEarlier) may set it too:
    // it may get here before the first call's hook.
    gate.fetch_or(kRemoved, std::memory_order_acq_rel);
    // The context's `destroyed` connection is the first call's to cut alone
    // (the handle is not shared between threads), and a waiting first call
    // cuts it only after its wait: a context destroyed meanwhile on another
    // thread then still removes the handler from `destroyed` (a later,
    // waiting removal), and so waits for a drain reading the context inside
    // the gate before ~QObject frees it.
    if (how == detail::Removal::NoWait) {
        if (contextDestroyed)
            QObject::disconnect(contextDestroyed);
        return;
    }
    // Calls of this handler running on other threads end; ours complete
    // normally after we return. (The core calls WaitForEarlier only from a
    // thread outside every call of the handler: see runningHereFn.)
    const std::uint32_t own = callsOnThisThread();
    for (std::uint32_t g = gate.load(std::memory_order_acquire); (g & ~kRemoved) > own;
         g = gate.load(std::memory_order_acquire))
        gate.wait(g, std::memory_order_acquire);
    if (how == detail::Removal::Wait && contextDestroyed)
        QObject::disconnect(contextDestroyed);
}

std::uint32_t HandlerState::callsOnThisThread() const noexcept
{
    std::uint32_t n = 0;
    for (const RunningScope *r = t_running; r; r = r->prev)
        n += r->state == this ? 1 : 0;
    return n;
}

namespace {

/// Marks a call of `state` as running on this thread (see markRemoved()).
class Running {
public:
    explicit Running(HandlerState *s) noexcept : m_scope{s, t_running} { t_running = &m_scope; }
    ~Running() { t_running = m_scope.prev; }
    Running(const Running &) = delete;
    Running &operator=(const Running &) = delete;

private:
    RunningScope m_scope;
};

} // namespace

// ====================================================================== nodes
namespace {

struct StateNode final : detail::Node {
    HandlerState *state;

    explicit StateNode(HandlerState *s) noexcept : Node(&invokeFn, &destroyFn), state(s)
    {
        removed = &removedFn;
        runningHere = &runningHereFn;
    }

    static void invokeFn(const detail::Node *n, const void *event);
    static void destroyFn(detail::Node *n) noexcept
    {
        auto *self = static_cast<StateNode *>(n);
        self->state->deref();
        delete self;
    }
    static void removedFn(detail::Node *n, detail::Removal how) noexcept
    {
        static_cast<StateNode *>(n)->state->markRemoved(how);
    }
    /// Marshalled calls, async starts and sequential steps run outside the
    /// core's walk; they are listed in t_running.
    static bool runningHereFn(const detail::Node *n) noexcept
    {
        return static_cast<const StateNode *>(n)->state->callsOnThisThread() != 0;
    }
};

thread_local Frame *t_frame = nullptr;

/// Drops a parcel reference when it goes out of scope.
struct ParcelDeref {
    void operator()(Parcel *p) const noexcept { p->deref(); }
};
using OwnedParcel = std::unique_ptr<Parcel, ParcelDeref>;

/// The parcel for `event`: the current notify's shared one, else a private
/// copy returned in `owned` (the caller's reference).
Parcel *parcelFor(HandlerState *state, const void *event, OwnedParcel &owned)
{
    Frame *f = t_frame;
    // Address and event type: two registries' events may share an address
    // (an object and its first member).
    if (f && f->event == event
        && (f->makeParcel == state->makeParcel || (f->eventType && state->eventType && *f->eventType == *state->eventType)))
        return f->sharedParcel();
    owned.reset(state->makeParcel(event));
    return owned.get();
}

/// setContextReadHookForTesting(): called where a thread has read, or is
/// about to read, a context's thread and has not yet acted on the answer.
std::atomic<void (*)(QObject *)> g_contextReadHook{nullptr};

void contextReadHook(QObject *ctx) noexcept
{
    if (auto hook = g_contextReadHook.load(std::memory_order_acquire); SIGREG_UNLIKELY(hook && ctx))
        hook(ctx);
}

/// The thread `state`'s context lives in now, read in the state's gate
/// (which a destroyed context's removal waits for, so any thread may read
/// it there); `fallback` if the handler was removed or has no context.
QThread *contextThreadNow(HandlerState *state, QThread *fallback) noexcept
{
    if (!state->enter())
        return fallback;
    QThread *now = fallback;
    if (QObject *ctx = state->context.data()) {
        now = ctx->thread();
        contextReadHook(ctx);
    }
    state->leave();
    return now;
}

Mailbox *rebindMailbox(HandlerState *state, QThread *seen, Mailbox *box);

/// The mailbox to post to for `state`, whose context was last seen in
/// `thread`: its current one while that is `thread`'s and open, else a
/// rebound one (rebindMailbox()).
Mailbox *targetMailbox(HandlerState *state, QThread *thread)
{
    Mailbox *box = state->mailbox.load(std::memory_order_acquire);
    if (box && box->thread() == thread && !box->isClosed())
        return box;
    std::lock_guard lock(state->rebindMutex);
    box = state->mailbox.load(std::memory_order_relaxed);
    if (box && box->thread() == thread && !box->isClosed())
        return box;
    return rebindMailbox(state, thread, box);
}

void queue(HandlerState *state, const void *event)
{
    OwnedParcel owned;
    Parcel *parcel = parcelFor(state, event, owned);
    Task *t = newTask(state, parcel, nullptr, nullptr); // holds its own reference
    Mailbox *box = nullptr;
    try {
        box = targetMailbox(state, state->thread.load(std::memory_order_relaxed));
    } catch (...) {
        dropTask(t);
        throw;
    }
    box->push(t);
}

/// True if the context lives in the calling thread. Called from the core's
/// walk, whose announcement of the call keeps the context alive (a context's
/// destruction removes the handler, and the removal waits for the call).
/// Read only where the context was last seen (elsewhere the answer is no): a
/// move seen here updates the state, so that queued calls follow the context
/// at once. Every writer of `state->thread` replaces only the value its own
/// read started from (compare-exchange), so a slow writer cannot put back a
/// thread another one already saw the context leave. A value that is stale
/// anyway costs one forwarding hop (runTask()), never a lost call.
bool onContextThread(HandlerState *state) noexcept
{
    QThread *self = QThread::currentThread();
    if (state->thread.load(std::memory_order_relaxed) != self)
        return false;
    QObject *ctx = state->context.data();
    if (!ctx)
        return false;
    QThread *now = ctx->thread();
    if (now != self) {
        contextReadHook(ctx);
        QThread *expected = self; // a failed exchange overwrites it
        state->thread.compare_exchange_strong(expected, now, std::memory_order_relaxed);
    }
    return now == self;
}

void startAsync(HandlerState *state, const void *event);

void StateNode::invokeFn(const detail::Node *n, const void *event)
{
    HandlerState *state = static_cast<const StateNode *>(n)->state;
    if (state->callAsync) {
        startAsync(state, event);
        return;
    }
    switch (state->type) {
    case Qt::DirectConnection:
        state->call(state, event);
        return;
    case Qt::AutoConnection:
        if (onContextThread(state))
            state->call(state, event);
        else
            queue(state, event);
        return;
    case Qt::QueuedConnection:
        queue(state, event);
        return;
    case Qt::BlockingQueuedConnection: {
        if (onContextThread(state)) {
            state->call(state, event);
            return;
        }
        // The thread last seen may be stale: the context may have moved
        // here, and the thread it left may never drain to hand the call
        // back (blocked on this one, or ended). Read it again (in the gate):
        // waiting on a thread the context left could wait forever.
        QThread *self = QThread::currentThread();
        QThread *seen = state->thread.load(std::memory_order_relaxed);
        if (QThread *now = contextThreadNow(state, seen); now != seen) {
            QThread *expected = seen;
            state->thread.compare_exchange_strong(expected, now, std::memory_order_relaxed);
            if (now == self) {
                state->call(state, event);
                return;
            }
        }
        Completion done;
        done.waiter = self;
        Mailbox *box = targetMailbox(state, state->thread.load(std::memory_order_relaxed));
        Task *t = newTask(state, nullptr, event, &done);
        // From here on the call is tracked by the state's gate in the
        // context's thread; this thread only waits. Withdrawing keeps a
        // remover running there (a handler removing itself) from waiting for
        // us while we wait for it.
        detail::withdrawAnnouncement(n);
        // The mailbox is re-read where the context lives now: it may have
        // moved to this very thread since we looked, and nothing would
        // drain this thread's mailbox while it waits. runTask() calls the
        // handler here then (or follows the context on).
        if (box->thread() == self)
            runTask(t);
        else
            box->push(t);
        // The context may have moved to this very thread before the thread
        // we queued to saw the move: that thread then hands the task back
        // (runTask()), and it runs here, where the context lives now.
        while (Task *back = done.wait())
            runTask(back);
        return;
    }
    default:
        return;
    }
}

} // namespace

detail::Node *makeStateNode(HandlerState *state)
{
    return new StateNode(state);
}

namespace {
/// Holds a reference to a state inside a Qt functor (copyable).
struct StateRef {
    HandlerState *s;
    explicit StateRef(HandlerState *p) noexcept : s(p) { s->ref(); }
    StateRef(const StateRef &o) noexcept : s(o.s) { s->ref(); }
    StateRef &operator=(const StateRef &) = delete;
    ~StateRef() { s->deref(); }
};
} // namespace

void bindContext(HandlerState *state, QObject *context, Qt::ConnectionType type,
                 const std::shared_ptr<detail::Anchor> &anchor)
{
    state->type = type;
    if (!context)
        return;
    state->context = context;
    QThread *thread = context->thread();
    state->thread.store(thread, std::memory_order_relaxed);
    if (type != Qt::DirectConnection)
        targetMailbox(state, thread);
    // Direct connection without a receiver: runs in the dying context's
    // thread, and lives exactly as long as the context (or until removal
    // disconnects it).
    state->contextDestroyed = QObject::connect(context, &QObject::destroyed,
                                               [anchor, ref = StateRef(state)] {
                                                   anchor->remove(ref.s->id, true);
                                               });
}

// ====================================================================== mailboxes
namespace {

/// The wake-up event, from the block pool: a burst costs no allocation. A
/// lost one tells its mailbox, which would otherwise wait for a drain that
/// never comes, and post no wake-up again. The mailbox is alive then: its
/// receiver, whose deletion is the other way a posted event goes, is deleted
/// in close().
struct DrainEvent final : WakeupEvent {
    explicit DrainEvent(Mailbox *b) : WakeupEvent(Mailbox::kDrainEvent), box(b) {}
    ~DrainEvent() override
    {
        if (lost())
            box->drainEventLost();
    }
    static void *operator new(std::size_t n) { return poolAllocate(n); }
    static void operator delete(void *p, std::size_t n) noexcept { poolFree(p, n); }
    Mailbox *box;
};

class Receiver final : public QObject {
public:
    // Atomic only to make the hand-over visible to ThreadSanitizer: the
    // object moves to its thread through Qt's (uninstrumented) event queue.
    explicit Receiver(Mailbox *box) { m_box.store(box, std::memory_order_release); }
    bool event(QEvent *e) override
    {
        if (e->type() == Mailbox::kDrainEvent) {
            static_cast<DrainEvent *>(e)->settle();
            m_box.load(std::memory_order_acquire)->drain(this);
            return true;
        }
        return QObject::event(e);
    }

private:
    std::atomic<Mailbox *> m_box;
};

/// What the directory knows of one QThread: its current mailbox (null
/// between a finish and a restart), and whether the object was destroyed.
/// Its two connections (finished, destroyed) are made once per QThread, not
/// per mailbox, so that restarting a thread costs nothing that stays.
struct ThreadEntry {
    std::shared_ptr<Mailbox> box;
    std::shared_ptr<std::atomic<bool>> gone;
};

struct Directory {
    std::mutex mutex;
    QHash<QThread *, ThreadEntry> threads;
};
Directory &directory()
{
    static auto *d = new Directory; // never destroyed: used until the last thread ends
    return *d;
}

/// `thread` finished (then `destroyed` is false) or its object is being
/// destroyed: its current mailbox closes; a destroyed one is forgotten.
void threadEnded(QThread *thread, bool destroyed) noexcept
{
    std::shared_ptr<Mailbox> box;
    {
        Directory &d = directory();
        std::lock_guard lock(d.mutex);
        auto it = d.threads.find(thread);
        if (it == d.threads.end())
            return;
        box = std::move(it->box);
        if (destroyed) {
            it->gone->store(true, std::memory_order_release);
            d.threads.erase(it);
        }
    }
    if (box)
        box->close();
}

const std::shared_ptr<const std::atomic<bool>> &goneFlag()
{
    static const auto *flag = new std::shared_ptr<const std::atomic<bool>>(std::make_shared<std::atomic<bool>>(true));
    return *flag;
}

} // namespace

namespace {

/// mailboxFor(), holding the directory's mutex.
std::shared_ptr<Mailbox> mailboxForLocked(Directory &d, QThread *thread)
{
    if (!thread) {
        // A context with no thread (moveToThread(nullptr)) gets no events,
        // as in Qt: a closed mailbox drops them.
        auto box = std::make_shared<Mailbox>(nullptr, goneFlag());
        box->close();
        return box;
    }
    auto it = d.threads.find(thread);
    if (it != d.threads.end() && it->box && !it->box->isClosed())
        return it->box;
    if (it == d.threads.end()) {
        // Both run after the thread stopped draining: `finished` on the
        // thread itself as it ends, `destroyed` for threads that never emit
        // finished. Connected before the check below, so that a thread
        // finishing in between is seen by one or the other (they wait for
        // our lock). They live as long as the QThread object. Listed only
        // once both are made (out of memory, neither stays), so that a
        // listed thread always tells its end.
        ThreadEntry entry;
        entry.gone = std::make_shared<std::atomic<bool>>(false);
        QMetaObject::Connection finished, destroyed;
        try {
            finished = QObject::connect(thread, &QThread::finished, [thread] { threadEnded(thread, false); });
            destroyed = QObject::connect(thread, &QObject::destroyed, [thread] { threadEnded(thread, true); });
            it = d.threads.insert(thread, std::move(entry));
        } catch (...) {
            QObject::disconnect(finished); // no-op for one not made
            QObject::disconnect(destroyed);
            throw;
        }
    }
    auto box = std::make_shared<Mailbox>(thread, it->gone);
    if (thread->isFinished()) {
        // It will never drain, nor emit finished() again unless restarted:
        // drop from the start (not listed, so that a producer for a
        // restarted thread makes a new one).
        box->close();
        return box;
    }
    box->postDrainEvent(); // the first drain (see there)
    it->box = box;
    return box;
}

} // namespace

std::shared_ptr<Mailbox> mailboxFor(QThread *thread)
{
    Directory &d = directory();
    std::lock_guard lock(d.mutex);
    return mailboxForLocked(d, thread);
}

namespace {

/// Rebinds `state` (holding its rebindMutex) to the mailbox of the thread
/// its context lives in now: it was last seen in `seen`, and `box` (its
/// current mailbox, if any) is closed or another thread's. A closed mailbox
/// whose thread has ended, or been destroyed, stays while the context is
/// still there (or in no thread): its tasks are dropped, as Qt drops events
/// to such objects, and no new mailbox is made per event.
///
/// The context's thread is read in the handler's gate, which keeps the
/// context alive, while holding the directory's mutex. A thread the
/// directory knows cannot be freed then: its `destroyed` (emitted after
/// ~QThread cleared the pointer the context's thread() returns) waits for
/// that mutex. So the read, the checks on the thread and the new mailbox all
/// see a live QThread. What is left is Qt's own rule: a QThread that Sigreg
/// has never posted to must not be deleted while an object still living in
/// it is the context of a handler being notified.
Mailbox *rebindMailbox(HandlerState *state, QThread *seen, Mailbox *box)
{
    std::shared_ptr<Mailbox> fresh;
    {
        Directory &d = directory();
        std::lock_guard lock(d.mutex);
        QThread *thread = seen;
        bool known = false;
        if (state->enter()) {
            if (QObject *ctx = state->context.data()) {
                thread = ctx->thread();
                known = true;
            }
            state->leave();
        }
        if (!known) {
            // Removed, or its context is going (the removal follows): its
            // calls are dropped wherever they are posted. `seen` may be a
            // thread that is gone by now: not looked at.
            if (box)
                return box;
            thread = nullptr;
        }
        if (thread != seen) {
            QThread *expected = seen; // a failed exchange overwrites it
            state->thread.compare_exchange_strong(expected, thread, std::memory_order_relaxed);
        }
        // A box whose thread was destroyed is not the one of a live thread
        // at the same address (read from the context just now).
        if (box && box->thread() == thread
            && (!box->isClosed() || !thread || (!box->threadGone() && thread->isFinished())))
            return box;
        fresh = mailboxForLocked(d, thread);
        // Kept once: a context moving back and forth between two threads
        // keeps two, not one more per move.
        if (std::find(state->mailboxes.begin(), state->mailboxes.end(), fresh) == state->mailboxes.end()) {
            detail::reserveFor(state->mailboxes, 1);
            state->mailboxes.push_back(fresh);
        }
    }
    state->mailbox.store(fresh.get(), std::memory_order_release);
    return fresh.get();
}

} // namespace

Mailbox::Mailbox(QThread *thread, std::shared_ptr<const std::atomic<bool>> gone)
    : m_thread(thread), m_gone(std::move(gone)), m_tail(&m_stub), m_head(&m_stub)
{
    auto *receiver = new Receiver(this);
    if (thread != QThread::currentThread())
        receiver->moveToThread(thread);
    m_receiver = receiver;
}

Mailbox::~Mailbox()
{
    close();
}

std::uint64_t wakeupsPosted(QThread *thread) noexcept
{
    Directory &d = directory();
    std::lock_guard lock(d.mutex);
    const auto it = d.threads.constFind(thread);
    return it == d.threads.constEnd() || !it->box ? 0 : it->box->wakeups();
}

namespace {
std::atomic<int> g_wakeupFailures{0};
} // namespace

int wakeupEventTypeForTesting() noexcept
{
    return Mailbox::kDrainEvent;
}

int failWakeupsForTesting(int count) noexcept
{
    return std::max(g_wakeupFailures.exchange(count, std::memory_order_acq_rel), 0);
}

bool injectedWakeupFailure() noexcept
{
    return SIGREG_UNLIKELY(g_wakeupFailures.load(std::memory_order_relaxed) > 0)
        && g_wakeupFailures.fetch_sub(1, std::memory_order_acq_rel) > 0;
}

bool Mailbox::postWakeup() noexcept
{
    try {
        if (injectedWakeupFailure())
            throw std::bad_alloc();
        postDrainEvent();
    } catch (...) {
        // Out of memory: no wake-up is on its way. Give `scheduled` up (the
        // caller holds it), so that a later push posts one, and owe the consumer
        // a look: its event dispatcher is woken (thread-safe; an eventfd write
        // in Qt's Unix and glib dispatchers), and the next iteration of its
        // event loop drains (loopIteration()). Until the consumer's first drain
        // has connected that, the first drain posted with the mailbox is still
        // on its way and takes the tasks. The dispatcher is alive: this thread
        // holds a producer count or is the consumer, and the thread destroys its
        // dispatcher only after `finished`, whose close() waits for producers.
        // (Under noexcept, letting the exception escape would end the process.)
        m_state.fetch_and(~kScheduled, std::memory_order_acq_rel);
        m_owed.store(true, std::memory_order_release);
        if (QAbstractEventDispatcher *dispatcher = QAbstractEventDispatcher::instance(m_thread))
            dispatcher->wakeUp();
        return false;
    }
    m_wakeups.fetch_add(1, std::memory_order_relaxed);
    return true;
}

void Mailbox::postDrainEvent()
{
    auto *e = new DrainEvent(this); // from the pool; the heap when the pool is empty
    e->markPosted();
    QCoreApplication::postEvent(m_receiver, e); // deletes `e` if it throws
}

void Mailbox::drainEventLost() noexcept
{
    if (isClosed())
        return; // close() deleting the receiver, and its posted events with it
    // No Qt call here: Qt may be deleting the event under its own lock. The
    // tasks wait for the next push's wake-up, or for the consumer's next
    // event-loop iteration (settleOwed()), whichever comes first. Where the
    // loss came with the application's destruction, that dispatcher (and
    // its watch) went first: the next application's construction posts the
    // wake-up again (applicationMade()).
    m_state.fetch_and(~kScheduled, std::memory_order_acq_rel);
    m_owed.store(true, std::memory_order_release);
}

bool Mailbox::takeDrainIfWaiting() noexcept
{
    return !isEmpty() && !(m_state.fetch_or(kScheduled, std::memory_order_acq_rel) & kScheduled);
}

void Mailbox::applicationMade() noexcept
{
    if (!m_owed.load(std::memory_order_acquire))
        return;
    // As settleOwed(), but through a wake-up: no handler runs inside the
    // application's constructor, and the drain watches the new dispatcher.
    m_owed.store(false, std::memory_order_relaxed);
    if (takeDrainIfWaiting())
        postWakeup(); // out of memory: owed again, for the next push
}

namespace {

/// Each QCoreApplication's construction (a pre-routine, called again for an
/// application made after another was destroyed): its thread's mailbox takes
/// up a wake-up that the previous application deleted undelivered.
void applicationMade() noexcept
{
    std::shared_ptr<Mailbox> box;
    {
        Directory &d = directory();
        std::lock_guard lock(d.mutex);
        const auto it = d.threads.constFind(QThread::currentThread());
        if (it != d.threads.constEnd())
            box = it->box;
    }
    if (box && !box->isClosed())
        box->applicationMade();
}

} // namespace

Q_COREAPP_STARTUP_FUNCTION(applicationMade)

bool Mailbox::isEmpty() const noexcept
{
    return m_head == &m_stub && m_stub.next.load(std::memory_order_acquire) == nullptr
        && m_tail.load(std::memory_order_acquire) == &m_stub;
}

void Mailbox::push(Task *task) noexcept
{
    std::uint32_t s = m_state.fetch_add(kProducer, std::memory_order_acq_rel);
    if (s & kClosed) {
        m_state.fetch_sub(kProducer, std::memory_order_release);
        dropTask(task);
        return;
    }
    task->next.store(nullptr, std::memory_order_relaxed);
    Task *prev = m_tail.exchange(task, std::memory_order_acq_rel);
    prev->next.store(task, std::memory_order_release);
    // Schedule a drain unless one is pending, then leave: the producer count
    // keeps close() (and its deletion of the receiver) waiting until the
    // wake-up is posted.
    if (!(m_state.fetch_or(kScheduled, std::memory_order_acq_rel) & kScheduled))
        postWakeup();
    m_state.fetch_sub(kProducer, std::memory_order_release);
}

Task *Mailbox::pop() noexcept
{
    Task *head = m_head;
    Task *next = head->next.load(std::memory_order_acquire);
    if (head == &m_stub) {
        if (!next)
            return nullptr;
        m_head = head = next;
        next = next->next.load(std::memory_order_acquire);
    }
    if (!next) {
        if (head != m_tail.load(std::memory_order_acquire)) {
            // A producer swapped the tail but has not linked its task yet:
            // it is a few instructions from done. Order matters, so wait.
            while (!(next = head->next.load(std::memory_order_acquire)))
                std::this_thread::yield();
        } else {
            // `head` is the last task: put the stub behind it so it can go.
            m_stub.next.store(nullptr, std::memory_order_relaxed);
            Task *prev = m_tail.exchange(&m_stub, std::memory_order_acq_rel);
            prev->next.store(&m_stub, std::memory_order_release);
            while (!(next = head->next.load(std::memory_order_acquire)))
                std::this_thread::yield();
        }
    }
    m_head = next;
    return head;
}

void Mailbox::drain(QObject *receiver) noexcept
{
    if (SIGREG_UNLIKELY(!m_watching))
        watchNestedLoops(receiver);
    // Bounded, so that a handler that keeps queueing to its own thread does
    // not starve the rest of the event loop.
    int budget = 4096;
    for (;;) {
        while (Task *t = pop()) {
            ++m_calls;
            runTask(t);
            if (--m_calls < m_handedOff)
                m_handedOff = m_calls; // this frame holds `scheduled` again (see loopIteration())
            if (--budget == 0) {
                // `scheduled` is still set (it is ours): continue in a new drain.
                postWakeup();
                return;
            }
        }
        // Cleared only once found empty: producers that push meanwhile see
        // `scheduled` and post nothing, as this drain will take their tasks.
        m_state.fetch_and(~kScheduled, std::memory_order_acq_rel);
        if (isEmpty())
            return; // a later push posts a new wake-up
        // A task arrived between the last pop and the clear. If its producer
        // already scheduled a drain, leave it to that one; else carry on
        // (after a yield: its producer may still be linking it).
        if (m_state.fetch_or(kScheduled, std::memory_order_acq_rel) & kScheduled)
            return;
        std::this_thread::yield();
    }
}

// A drain holds `scheduled` while it runs: producers then post nothing,
// as the drain takes their tasks before it returns. A handler that spins a
// nested event loop (QDialog::exec(), a QEventLoop waiting for a reply,
// processEvents()) keeps its drain from returning, and the loop would never
// see a wake-up: Sigreg events to its thread, BlockingQueued ones included,
// would wait for the handler, where Qt's own queued calls are delivered.
// So every processEvents() of the consumer thread starts with a look at
// m_calls (its dispatcher emits awake() or aboutToBlock() first, before it
// sends posted events): inside a drain's call, the mailbox is handed to the
// nested loop. `scheduled` is cleared, so that the next producer posts a
// wake-up, and one is posted now if tasks are already waiting. The nested
// loop then drains in a nested drain (safe: the outer one is between two
// pops, and both run on this thread), in the queue's order. Each frame
// hands over once per call, not on every iteration of the nested loop.
//
// When the handler returns, the outer drain carries on as if it still held
// `scheduled`. Nothing is lost: it pops what is left, and where it clears a
// bit a producer set, that producer's wake-up is still posted, so the worst
// case is a wake-up that finds the queue empty.
void Mailbox::watchNestedLoops(QObject *receiver) noexcept
{
    QAbstractEventDispatcher *dispatcher = QAbstractEventDispatcher::instance();
    if (!dispatcher)
        return; // drained by hand (sendPostedEvents()) on a thread without one (yet)
    m_watching = true;
    const auto iteration = [this, receiver] { loopIteration(receiver); };
    // Direct: emitted in this thread. Disconnected when the receiver goes,
    // in close(), before the mailbox does.
    QObject::connect(dispatcher, &QAbstractEventDispatcher::awake, receiver, iteration, Qt::DirectConnection);
    QObject::connect(dispatcher, &QAbstractEventDispatcher::aboutToBlock, receiver, iteration, Qt::DirectConnection);
    // The main thread's dispatcher goes with its QCoreApplication; a later
    // application's is watched from the next drain on.
    QObject::connect(dispatcher, &QObject::destroyed, receiver, [this] { m_watching = false; }, Qt::DirectConnection);
}

void Mailbox::loopIteration(QObject *receiver) noexcept
{
    // Once per drain frame inside a call: the frames up to m_handedOff have
    // handed the mailbox over already.
    if (SIGREG_UNLIKELY(m_calls > m_handedOff)) {
        m_handedOff = m_calls;
        m_state.fetch_and(~kScheduled, std::memory_order_acq_rel);
        if (takeDrainIfWaiting())
            postWakeup();
    }
    if (SIGREG_UNLIKELY(m_owed.load(std::memory_order_acquire)))
        settleOwed(receiver);
}

void Mailbox::settleOwed(QObject *receiver) noexcept
{
    m_owed.store(false, std::memory_order_relaxed);
    // As a wake-up would: if no drain is scheduled (a producer's wake-up that
    // did get posted, or an outer drain of this thread), this loop iteration
    // drains, and the tasks run in order, before anything posted after them.
    if (takeDrainIfWaiting())
        drain(receiver);
}

void Mailbox::close() noexcept
{
    std::uint32_t s = m_state.fetch_or(kClosed, std::memory_order_acq_rel);
    if (s & kClosed)
        return;
    // Producers that got in before the flag finish their push first.
    while (m_state.load(std::memory_order_acquire) >= kProducer)
        std::this_thread::yield();
    while (Task *t = pop())
        dropTask(t);
    delete m_receiver; // its thread no longer runs (or is this one, ending)
    m_receiver = nullptr;
}

void setContextReadHookForTesting(void (*hook)(QObject *)) noexcept
{
    g_contextReadHook.store(hook, std::memory_order_release);
}

void runTask(Task *task) noexcept
{
    if (task->callback) {
        finishCallbackTask(task, true);
        return;
    }
    HandlerState *state = task->state;
    // Into the gate before the context is read: a context being destroyed on
    // another thread (it moved there) removes its handler from `destroyed`,
    // which ~QObject emits before it frees anything, and that removal waits
    // for the gate. So the context cannot go while we read it here.
    if (!state->enter()) {
        dropTask(task);
        return;
    }
    QObject *ctx = state->context.data();
    contextReadHook(ctx);
    QThread *const self = QThread::currentThread();
    QThread *const to = ctx ? ctx->thread() : nullptr;
    if (ctx && to != self) {
        // The context moved to another thread: follow it.
        QThread *expected = self;
        state->thread.compare_exchange_strong(expected, to, std::memory_order_relaxed);
        if (task->completion && task->completion->waiter == to) {
            // Its caller is blocked in the context's new thread, which would
            // never drain a mailbox while it waits: it runs the task itself.
            // Out of the gate first: the task (with the reference that keeps
            // `state` alive) is the caller's once handed back.
            state->leave();
            task->completion->handBack(task);
            return;
        }
        // The new thread's mailbox is looked up (which connects to that
        // QThread's signals) while the gate still keeps the context alive,
        // and with it, in practice, the thread it lives in: not after a
        // destruction of the context that the gate held up.
        Mailbox *box = nullptr;
        try {
            box = targetMailbox(state, to);
        } catch (...) {
            // Out of memory: the call is lost; say so, with the handler's id.
            LateFailure lost;
            lost.capture(*state->reporter);
            state->leave();
            lost.report(*state->reporter, state->id);
            dropTask(task);
            return;
        }
        state->leave(); // before the push: the task is the mailbox's then
        box->push(task);
        return;
    }
    LateFailure failure;
    if (ctx) {
        Running running(state);
        try {
            state->call(state, task->event);
        } catch (...) {
            failure.capture(*state->reporter);
        }
    }
    state->leave();
    failure.report(*state->reporter, state->id);
    dropTask(task);
}

// ====================================================================== async
/// A handler future to await, and where its failure goes.
struct Watch {
    QFuture<void> future;
    HandlerId id;
    std::shared_ptr<Reporter> reporter;
    /// The event's shared copy, which the handler's work may still read
    /// (kept alive by the join or run that awaits the future; see
    /// keepForUnawaited()).
    Parcel *parcel = nullptr;
};

/// Out of memory, a handler future could not be awaited: the join or run
/// that holds the event's copy may end while the handler's work still reads
/// it. Takes a reference that is never released: the copy leaks, rather
/// than being freed under that work.
void keepForUnawaited(Parcel *parcel) noexcept
{
    if (!parcel)
        return;
    parcel->ref();
#ifdef SIGREG_ASAN
    __lsan_ignore_object(parcel); // leaked on purpose, not lost
#endif
}

struct AsyncJoin {
    QPromise<void> promise;
    std::atomic<int> pending{1};
    Parcel *parcel = nullptr;
    /// The walk's handler futures that were still pending when their handler
    /// returned, each counted in `pending`: awaited together once the walk
    /// ends (watchCollected()), with one request to the completion thread per
    /// notifyAsync rather than one per handler. Notifying thread only.
    std::vector<Watch> collected;

    explicit AsyncJoin(Parcel *p) : parcel(p)
    {
        parcel->ref();
        promise.start();
    }
    ~AsyncJoin() { parcel->deref(); }
    void arrive() noexcept
    {
        if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1)
            promise.finish();
    }
};

struct SequentialRun : std::enable_shared_from_this<SequentialRun> {
    QPromise<void> promise;
    std::mutex mutex; // guards the fields below
    std::vector<HandlerState *> steps;
    std::size_t next = 0;
    bool busy = false;     // a step is being started or is pending
    bool walkDone = false; // notify's walk over the handlers has ended
    bool canceled = false; // steps were skipped: the context or its thread went, or the caller cancelled
    bool ended = false;    // abandon()ed: no step starts any more
    // With a step context: the mailbox of its thread (steps travel through
    // it), and the context, to see it go. Set before the run is shared.
    std::shared_ptr<Mailbox> stepBox;
    QPointer<QObject> stepContext;

    /// `box` null: no step context.
    SequentialRun(Parcel *p, const QPointer<QObject> &context, std::shared_ptr<Mailbox> box)
        : stepBox(std::move(box)), parcel(p)
    {
        if (stepBox)
            stepContext = context;
        parcel->ref();
        promise.start();
    }
    ~SequentialRun()
    {
        for (std::size_t i = next; i < steps.size(); ++i)
            steps[i]->deref();
        parcel->deref();
    }
    /// The walk found async handler `state` (referenced): start it now if
    /// nothing is pending, else after the pending ones.
    void enqueue(HandlerState *state);
    /// The walk started the first step itself, whose future `f` is still
    /// pending: the run goes on once it finished. Throws std::bad_alloc
    /// (then `f` is not awaited).
    void awaitFirst(HandlerState *state, const QFuture<void> &f);
    /// enqueue(): starts `state` (the next step, its reference taken from
    /// `steps`) as the walk's call of it. A failure to start it, or its
    /// future finished as failed or cancelled, is rethrown to the walk.
    void startInWalk(HandlerState *state);
    /// The walk ended: finish now if nothing is pending.
    void endWalk() noexcept;
    /// Starts steps until one is pending or none is left (moving to the
    /// step thread first, if there is one and this is another).
    void advance() noexcept;
    /// Finishes the returned future: cancelled if steps were skipped.
    void complete() noexcept;
    /// The run's hop was dropped (its thread ended, or no memory for it):
    /// skips the steps not started, now and later. Called holding `busy`.
    void abandon() noexcept;
    /// Task callback carrying a run (a heap std::shared_ptr) to its step thread.
    static void hopFn(void *arg, bool run) noexcept;

    Parcel *parcel;
};

namespace {

/// What callAsync() does with an exception the handler throws before it
/// returns its future.
enum class Thrown { Report, Rethrow };

/// Calls the async handler and returns its future; nothing when the handler
/// was removed, or threw before it returned a future: reported here, or
/// (Thrown::Rethrow, for a call from the core's walk) rethrown once the call
/// left the gate, so that the walk reports it as for any handler, with the
/// call's announcement withdrawn first: a remover of the handler does not
/// wait for the error handler, nor does a removal inside it count as one
/// from inside the handler. No QFuture is default-constructed on the way: in
/// Qt 6.4 that allocates a fresh cancelled state (three allocations), once
/// per handler call.
std::optional<QFuture<void>> callAsync(HandlerState *state, const void *event, Thrown thrown = Thrown::Report)
{
    std::optional<QFuture<void>> out;
    if (!state->enter())
        return out;
    std::exception_ptr rethrown;
    LateFailure failure;
    {
        Running running(state);
        try {
            out.emplace(state->callAsync(state, event));
        } catch (...) {
            if (thrown == Thrown::Rethrow)
                rethrown = detail::currentException();
            else
                failure.capture(*state->reporter);
        }
    }
    state->leave();
    if (rethrown)
        std::rethrow_exception(rethrown);
    failure.report(*state->reporter, state->id);
    return out;
}

/// For a call from the core's walk: throws the failure of a handler future
/// that is finished when its handler returns (its exception, or
/// HandlerCanceled), so that the walk reports it after it withdrew the
/// call's announcement, as for a synchronous throw (see callAsync()).
void rethrowOutcome(const QFuture<void> &f)
{
    if (!f.isCanceled())
        return;
    QFuture<void> copy = f;
    copy.waitForFinished(); // rethrows a stored exception
    throw HandlerCanceled();
}

/// Reports the outcome of a handler future that another thread finished: in
/// the completion thread, or in the notifying thread when a notifyAsync()
/// walk ends. Its name is in tests/tsan.supp: the future's outcome (an
/// exception object, say) was handed over to this thread inside Qt
/// (QFutureInterface's futex-based mutex), which ThreadSanitizer cannot see
/// with Debian's uninstrumented Qt. Keep it the only entry point of such code.
SIGREG_NOINLINE void afterQtFutureHandover(const QFuture<void> &future, HandlerId id, Reporter &reporter) noexcept
{
    reportOutcome(future, id, reporter);
}

/// A request to await futures, carried to the completion thread: one future
/// (a fire-and-forget handler's, or a sequential step's), which calls
/// `done()` once when finished; or the futures a notifyAsync() walk left
/// pending (AsyncJoin::collected), each of which arrives at the join once.
/// A request that never ran (posting it failed) has called nothing: the
/// caller still answers for the futures (a join's list is still in the join).
class WatchRequest final : public QEvent {
public:
    static constexpr QEvent::Type kType = QEvent::Type(QEvent::User + 0x5e7);

    WatchRequest(Watch one, std::function<void()> done)
        : QEvent(kType), m_one(std::move(one)), m_done(std::move(done))
    {
        m_posted.store(true, std::memory_order_release);
    }
    explicit WatchRequest(std::shared_ptr<AsyncJoin> join) noexcept : QEvent(kType), m_join(std::move(join))
    {
        m_posted.store(true, std::memory_order_release);
    }

    /// In the completion thread: watchers born there, so nothing is ever
    /// posted to (or moved out of) the notifying thread.
    void start() noexcept
    {
        // Pairs with the constructors: Qt's hand-over of the event (and of
        // the join's list) is invisible to ThreadSanitizer.
        (void)m_posted.load(std::memory_order_acquire);
        if (m_one) {
            watch(*m_one, m_done);
            return;
        }
        // The notifying thread is done with the list: it is this thread's.
        std::vector<Watch> collected = std::move(m_join->collected);
        const auto arrive = [join = m_join] { join->arrive(); };
        for (Watch &w : collected)
            watch(w, arrive);
    }

private:
    template <class Done>
    static void watch(Watch &w, const Done &done) noexcept
    {
        if (w.future.isFinished()) {
            // Finished while the request was on its way (a short task on
            // another thread): no watcher, and no second wake-up of this
            // thread.
            afterQtFutureHandover(w.future, w.id, *w.reporter);
            done();
            return;
        }
        QFutureWatcher<void> *watcher = nullptr;
        try {
            watcher = new QFutureWatcher<void>;
            QObject::connect(watcher, &QFutureWatcherBase::finished, watcher,
                             [watcher, id = w.id, rep = w.reporter, done] {
                                 afterQtFutureHandover(watcher->future(), id, *rep);
                                 done();
                                 watcher->deleteLater();
                             });
            watcher->setFuture(w.future);
        } catch (...) {
            // Out of memory: the future is not awaited; say so, and do not
            // let a join wait for it.
            delete watcher;
            w.reporter->report(w.id, detail::currentException());
            keepForUnawaited(w.parcel);
            done();
        }
    }

    std::optional<Watch> m_one;
    std::function<void()> m_done;
    std::shared_ptr<AsyncJoin> m_join;
    std::atomic<bool> m_posted{false};
};

/// Lives in Sigreg's completion thread and starts watchers there.
class CompletionReceiver final : public QObject {
public:
    bool event(QEvent *e) override
    {
        if (e->type() == WatchRequest::kType) {
            static_cast<WatchRequest *>(e)->start();
            return true;
        }
        return QObject::event(e);
    }
};

/// Sigreg's own thread for awaiting handler futures (started on first use,
/// never stopped: it outlives every registry), and its receiver.
CompletionReceiver *completionReceiver()
{
    static CompletionReceiver *const receiver = [] {
        auto *t = new QThread;
        t->setObjectName(QStringLiteral("sigreg-completion"));
        auto *r = new CompletionReceiver;
        r->moveToThread(t);
        t->start();
        return r;
    }();
    return receiver;
}

/// Runs `done()` exactly once when `f` finishes, after reporting a failure.
///
/// Not QFuture::then(): in Qt 6.4 a continuation attached while another
/// thread finishes the future can run twice (the second run crashes inside
/// Qt). A QFutureWatcher's call-outs are registered and sent under the
/// future's own mutex, so they are exact; the watcher lives in Sigreg's
/// completion thread, whose event loop runs `done()`. A future that is
/// already finished is handled at once, without a watcher.
///
/// The request holds the reporter, not the handler state: a handler that
/// keeps its own promise would otherwise keep itself alive.
template <class Done>
bool watchUnlessFinished(const QFuture<void> &f, HandlerState *state, Parcel *parcel, Done &&done);

template <class Done>
void whenFinished(const QFuture<void> &f, HandlerState *state, Parcel *parcel, Done done)
{
    if (!watchUnlessFinished(f, state, parcel, std::move(done))) {
        reportOutcome(f, state->id, *state->reporter);
        done();
    }
}

/// whenFinished() for a call from the core's walk: does nothing and returns
/// false if `f` has finished by now (since its handler returned, on another
/// thread). The caller then handles it as a future finished on return: its
/// failure goes back to the walk (rethrowOutcome()), which reports it once
/// the call's announcement is withdrawn.
template <class Done>
bool watchUnlessFinished(const QFuture<void> &f, HandlerState *state, Parcel *parcel, Done &&done)
{
    if (f.isFinished())
        return false;
    QCoreApplication::postEvent(completionReceiver(), new WatchRequest(Watch{f, state->id, state->reporter, parcel},
                                                                       std::function<void()>(std::move(done))));
    return true;
}

/// Awaits the futures `join` collected during its walk: those finished by
/// now are handled here, the rest go to the completion thread in one request
/// that takes them from the join. Each arrives at `join` once.
void watchCollected(const std::shared_ptr<AsyncJoin> &join) noexcept
{
    std::vector<Watch> &collected = join->collected;
    std::size_t kept = 0;
    for (std::size_t i = 0; i < collected.size(); ++i) {
        if (collected[i].future.isFinished()) {
            // Finished on another thread since its handler returned.
            afterQtFutureHandover(collected[i].future, collected[i].id, *collected[i].reporter);
            join->arrive();
        } else {
            if (kept != i)
                collected[kept] = std::move(collected[i]);
            ++kept;
        }
    }
    collected.erase(collected.begin() + static_cast<std::ptrdiff_t>(kept), collected.end());
    if (collected.empty())
        return;
    try {
        QObject *receiver = completionReceiver();
        QCoreApplication::postEvent(receiver, new WatchRequest(join));
        // From here on the list is the completion thread's.
    } catch (...) {
        // Out of memory: the request never ran, so the list is still ours.
        // Not awaited: say so, and do not let the join wait for them.
        for (Watch &w : collected) {
            w.reporter->report(w.id, detail::currentException());
            keepForUnawaited(w.parcel);
            join->arrive();
        }
        collected.clear();
    }
}

void startAsync(HandlerState *state, const void *event)
{
    Frame *frame = t_frame;
    if (frame && frame->event == event && frame->mode == Mode::Sequential) {
        if (!frame->run
            && (!frame->stepBox || (frame->stepContext && QThread::currentThread() == frame->stepBox->thread()))) {
            // Nothing before this handler is pending, and it may start on
            // this thread: it starts now, and a run (a promise, a queue) is
            // made only if its future is still pending. Handlers whose
            // futures are finished when they return (the common case for
            // cheap ones) cost no more than that future.
            Parcel *parcel = frame->sharedParcel();
            std::optional<QFuture<void>> called = callAsync(state, parcel->event, Thrown::Rethrow);
            if (!called)
                return;
            if (called->isFinished()) {
                rethrowOutcome(*called);
                return;
            }
            // Out of memory for the run: reported as this handler's failure,
            // and its future is not awaited (as for notifyAsync()).
            try {
                frame->run = std::make_shared<SequentialRun>(parcel, frame->stepContext, frame->stepBox);
            } catch (...) {
                keepForUnawaited(parcel);
                throw;
            }
            frame->run->awaitFirst(state, *called);
            return;
        }
        if (!frame->run)
            frame->run = std::make_shared<SequentialRun>(frame->sharedParcel(), frame->stepContext, frame->stepBox);
        state->ref();
        std::shared_ptr<SequentialRun> run = frame->run; // a step may finish the run
        run->enqueue(state);
        return;
    }
    OwnedParcel owned;
    Parcel *parcel = parcelFor(state, event, owned);
    std::optional<QFuture<void>> called = callAsync(state, parcel->event, Thrown::Rethrow);
    if (!called)
        return;
    QFuture<void> &f = *called;
    if (f.isFinished()) {
        // The common case for cheap handlers: nothing to await.
        rethrowOutcome(f);
        return;
    }
    if (frame && frame->event == event && frame->mode == Mode::Async) {
        // Awaited with the walk's other pending futures when the walk ends
        // (Frame::finish()). A failure to collect it (out of memory) leaves
        // it not awaited, and is reported as this handler's failure.
        try {
            if (!frame->join)
                frame->join = std::make_shared<AsyncJoin>(parcel);
            frame->join->collected.push_back(Watch{f, state->id, state->reporter, parcel});
        } catch (...) {
            keepForUnawaited(parcel);
            throw;
        }
        frame->join->pending.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    // Fire and forget: the join only keeps the event alive until the future
    // finished.
    std::shared_ptr<AsyncJoin> join;
    try {
        join = std::make_shared<AsyncJoin>(parcel);
    } catch (...) {
        keepForUnawaited(parcel);
        throw;
    }
    join->pending.fetch_add(1, std::memory_order_relaxed);
    bool watching = false;
    try {
        watching = watchUnlessFinished(f, state, parcel, [join] { join->arrive(); });
    } catch (...) {
        keepForUnawaited(parcel);
        join->arrive(); // not awaited: the join must not wait for it
        join->arrive();
        throw; // reported as this handler's failure
    }
    if (!watching)
        join->arrive(); // finished since the check above
    join->arrive(); // nobody else finishes this join
    if (!watching)
        rethrowOutcome(f);
}

} // namespace

void SequentialRun::enqueue(HandlerState *state)
{
    {
        std::lock_guard lock(mutex);
        try {
            detail::reserveFor(steps, 1);
        } catch (...) {
            state->deref();
            throw;
        }
        steps.push_back(state);
        if (busy)
            return;
        busy = true;
        // Nothing is pending, so `state` is next (steps[next]). Unless the
        // run ended or must hop to its step thread (advance() does both), it
        // starts here, as the walk's own call of it.
        if (!ended && !(stepBox && !stepContext) && (!stepBox || QThread::currentThread() == stepBox->thread())) {
            ++next; // its reference is ours now
        } else {
            state = nullptr;
        }
    }
    if (!state) {
        advance();
        return;
    }
    startInWalk(state);
}

void SequentialRun::startInWalk(HandlerState *state)
{
    const auto idle = [this] {
        std::lock_guard lock(mutex);
        busy = false; // the walk goes on: endWalk() finishes the run
    };
    std::optional<QFuture<void>> called;
    try {
        called = callAsync(state, parcel->event, Thrown::Rethrow);
    } catch (...) {
        state->deref();
        idle();
        throw;
    }
    if (called) {
        bool watching = false;
        try {
            watching = watchUnlessFinished(*called, state, parcel, [self = shared_from_this()] { self->advance(); });
        } catch (...) {
            // Out of memory: not awaited, reported as this handler's failure.
            keepForUnawaited(parcel);
            state->deref();
            idle();
            throw;
        }
        if (watching) {
            state->deref();
            return;
        }
    }
    state->deref();
    idle();
    if (called)
        rethrowOutcome(*called);
}

void SequentialRun::awaitFirst(HandlerState *state, const QFuture<void> &f)
{
    {
        std::lock_guard lock(mutex);
        busy = true; // before the watch: its advance() may run at once, on the completion thread
    }
    bool watching = false;
    try {
        watching = watchUnlessFinished(f, state, parcel, [self = shared_from_this()] { self->advance(); });
    } catch (...) {
        keepForUnawaited(parcel);
        std::lock_guard lock(mutex);
        busy = false;
        throw;
    }
    if (!watching) {
        // Finished since its handler returned: nothing else is queued yet.
        {
            std::lock_guard lock(mutex);
            busy = false;
        }
        rethrowOutcome(f);
    }
}

void SequentialRun::endWalk() noexcept
{
    {
        std::lock_guard lock(mutex);
        walkDone = true;
        if (busy)
            return; // the pending step's continuation finishes the run
    }
    complete();
}

void SequentialRun::complete() noexcept
{
    bool skipped;
    {
        std::lock_guard lock(mutex);
        skipped = canceled;
    }
    if (skipped)
        promise.future().cancel();
    promise.finish();
}

void SequentialRun::abandon() noexcept
{
    {
        std::lock_guard lock(mutex);
        ended = true;
    }
    advance(); // skips what is left, and ends the run if the walk has
}

void SequentialRun::hopFn(void *arg, bool run) noexcept
{
    auto *holder = static_cast<std::shared_ptr<SequentialRun> *>(arg);
    const std::shared_ptr<SequentialRun> self = std::move(*holder);
    delete holder;
    if (run)
        self->advance();
    else
        self->abandon();
}

void SequentialRun::advance() noexcept
{
    for (;;) {
        HandlerState *state = nullptr;
        bool hop = false;
        {
            std::lock_guard lock(mutex);
            if (next < steps.size() && (ended || (stepBox && !stepContext) || promise.isCanceled())) {
                // Abandoned, the context is gone (as QFuture::then() with a
                // context cancels), or the caller cancelled the returned
                // future: start nothing more.
                canceled = true;
                for (; next < steps.size(); ++next)
                    steps[next]->deref();
            }
            if (next == steps.size()) {
                busy = false;
                if (!walkDone)
                    return; // the walk may still find more; endWalk() finishes
                break;
            }
            if (stepBox && QThread::currentThread() != stepBox->thread())
                hop = true; // `busy` stays set: the hop goes on
            else
                state = steps[next++];
        }
        if (hop) {
            // Through the step thread's mailbox, which runs the task there,
            // or drops it (abandon()) if the thread ended, also later.
            Task *t = nullptr;
            try {
                auto holder = std::make_unique<std::shared_ptr<SequentialRun>>(shared_from_this());
                t = newCallbackTask(&hopFn, holder.get());
                holder.release(); // the task's now
            } catch (...) {
                // Out of memory: the run must end, and no step may start on
                // another thread than promised.
                abandon();
                return;
            }
            stepBox->push(t);
            return;
        }
        if (std::optional<QFuture<void>> called = callAsync(state, parcel->event)) {
            QFuture<void> &f = *called;
            if (!f.isFinished()) {
                try {
                    whenFinished(f, state, parcel, [self = shared_from_this()] { self->advance(); });
                    state->deref();
                    return;
                } catch (...) {
                    // Out of memory creating the watcher: report, go on.
                    reportCurrent(state);
                    keepForUnawaited(parcel);
                }
            } else {
                reportOutcome(f, state->id, *state->reporter);
            }
        }
        state->deref();
    }
    complete();
}

// ====================================================================== frames
Frame::Frame(const void *e, MakeParcelFn make, const std::type_info *type, Mode m) noexcept
    : event(e), makeParcel(make), eventType(type), mode(m), prev(t_frame)
{
    t_frame = this;
}

Frame::~Frame()
{
    if (t_frame == this)
        t_frame = prev;
    if (join) {
        // finish() was never called: still await what the walk started.
        watchCollected(join);
        join->arrive();
    }
    if (parcel)
        parcel->deref();
}

void Frame::setStepContext(QObject *context)
{
    stepBox = mailboxFor(context->thread());
    stepContext = context;
}

Parcel *Frame::sharedParcel()
{
    if (!parcel)
        parcel = makeParcel(event);
    return parcel;
}

QFuture<void> Frame::finish()
{
    t_frame = prev; // handlers started from here on are not ours
    if (mode == Mode::Async && join) {
        QFuture<void> f = join->promise.future();
        std::shared_ptr<AsyncJoin> j = std::move(join);
        watchCollected(j);
        j->arrive();
        return f;
    }
    if (mode == Mode::Sequential && run) {
        QFuture<void> f = run->promise.future();
        std::shared_ptr<SequentialRun> r = std::move(run);
        r->endWalk();
        return f;
    }
    return QtFuture::makeReadyFuture();
}

} // namespace sigreg::qtdetail
