// SPDX-License-Identifier: MIT
// Sigreg — the typed bus's compiled part: event type interning, the channel
// table, failures, and the receivers' rings' slow paths (waiting, waking).
#include <sigreg/bus.h>

#include "backoff_p.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#if defined(__GNUG__)
#include <cxxabi.h>
#endif

namespace sigreg {

namespace detail {

namespace {

/// The process-wide table of event types. Keys are mangled names, or, for
/// types without external linkage (see hasInternalName()), the address of
/// the std::type_info, so two such types never meet.
struct TypeTable {
    std::mutex mutex;
    std::map<std::string, std::uint32_t, std::less<>> indices;
};

TypeTable &typeTable()
{
    static TypeTable *table = new TypeTable; // never destroyed: used until exit
    return *table;
}

/// The type's name as the compiler stored it. GCC marks the names of types
/// without linkage outside their translation unit (anonymous namespaces,
/// local classes, templates over them) with a leading '*', but libstdc++'s
/// type_info::name() skips that '*': read the stored name itself.
const char *storedName(const std::type_info &type) noexcept
{
#if defined(__GLIBCXX__)
    struct Stored : std::type_info {
        static const char *of(const std::type_info &t) noexcept { return t.*(&Stored::__name); }
    };
    return Stored::of(type);
#else
    return type.name();
#endif
}

/// True for a type whose mangled name may be shared by a different type
/// elsewhere: marked '*' (GCC), or, for compilers that do not mark such
/// names (clang), naming an anonymous namespace (Itanium "_GLOBAL__N") or
/// spelled as local to one translation unit in another way.
bool hasInternalName(const std::type_info &type) noexcept
{
    const char *stored = storedName(type);
    return stored[0] == '*' || std::strstr(stored, "_GLOBAL__N") != nullptr
        || spellsTranslationUnitLocalType(stored);
}

std::string typeKey(const std::type_info &type)
{
    const char *name = type.name();
    if (hasInternalName(type)) {
        char buf[2 + 2 * sizeof(void *) + 2];
        std::snprintf(buf, sizeof buf, "*%p", static_cast<const void *>(&type));
        return buf;
    }
    return name;
}

std::string readableName(const std::type_info &type)
{
    const char *name = type.name();
    if (name[0] == '*')
        ++name;
#if defined(__GNUG__)
    int status = 0;
    char *demangled = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    if (status == 0 && demangled) {
        std::string s(demangled);
        std::free(demangled);
        return s;
    }
    std::free(demangled);
#endif
    return name;
}

} // namespace

// Walks the name code by code, keeping a stack of the constructs that an
// 'E' closes (nested names N, local names Z, template arguments I, argument
// packs J, function types F, expressions X, closures Ul, decltype Dt/DT).
// A source name (<length><characters>) is skipped whole, so that its
// characters are never read as codes; so are the codes whose digits are not
// lengths: substitutions and template parameters (S_, S0_, T_, T1_), array
// and vector sizes (A3_, Dv4_), discriminators (_1, __12_), closure and
// unnamed-type numbers (UlvE11_, Ut4_) and literals (Li2E, Lm4E, L5Color1E).
// A local name is Z <function encoding> E <entity>; the function has
// internal linkage when an 'L' precedes its name ("ZL5setupvE5Local",
// "ZN2nsL5setupEvE5Local"). Clang writes no 'L' before an operator's name,
// static or not, so a local class of an operator function counts as local:
// like a literal of a named type inside a local name, an ambiguous spelling
// answers yes. Such a type is then keyed by its type_info's address, which
// at worst keeps a channel per shared object for it, and never shares one
// between two types.
bool spellsTranslationUnitLocalType(const char *mangled) noexcept
{
    const auto digit = [](char c) { return c >= '0' && c <= '9'; };
    const auto upper = [](char c) { return c >= 'A' && c <= 'Z'; };
    const auto lower = [](char c) { return c >= 'a' && c <= 'z'; };
    if (std::strchr(mangled, '$'))
        return true; // clang's unnamed types: "$_0"
    // Skips a source name at `p`; null if it runs past the end.
    const auto skipSourceName = [&](const char *p) -> const char * {
        std::size_t length = 0;
        while (digit(*p)) {
            length = length * 10 + std::size_t(*p - '0');
            if (length > (std::size_t(1) << 20))
                return nullptr;
            ++p;
        }
        for (std::size_t i = 0; i < length; ++i) {
            if (p[i] == '\0')
                return nullptr;
        }
        return p + length;
    };
    // Skips "<digits>_" (or "_"), if there.
    const auto skipNumber = [&](const char *p) {
        const char *q = p;
        while (digit(*q))
            ++q;
        return *q == '_' ? q + 1 : p;
    };
    constexpr int kMaxDepth = 64;
    char open[kMaxDepth];
    int depth = 0;
    const auto push = [&](char c) {
        if (depth < kMaxDepth)
            open[depth] = c;
        ++depth;
    };
    const auto top = [&](int below) -> char {
        const int i = depth - 1 - below;
        return i >= 0 && i < kMaxDepth ? open[i] : '\0';
    };
    const char *p = mangled;
    while (*p) {
        const char c = *p;
        if (digit(c)) {
            p = skipSourceName(p);
            if (!p)
                return false; // truncated: not a name a compiler made
            continue;
        }
        // Inside the nested name of a local name's function (ZN...E), a
        // lowercase code at its own level is an operator's name.
        if (lower(c) && top(0) == 'N' && top(1) == 'Z')
            return true;
        switch (c) {
        case 'S':
        case 'T':
            if (p[1] == '_' || digit(p[1]) || upper(p[1])) {
                const char *q = p + 1;
                while (digit(*q) || upper(*q))
                    ++q;
                if (*q == '_') {
                    p = q + 1;
                    continue;
                }
            }
            break;
        case 'A':
            if (p[1] == '_' || digit(p[1])) {
                p = skipNumber(p + 1);
                continue;
            }
            break;
        case 'D':
            if (p[1] == 'v' && digit(p[2])) { // vector size: Dv4_
                p = skipNumber(p + 2);
                continue;
            }
            if (p[1] == 't' || p[1] == 'T') { // decltype(...)E
                push('D');
                p += 2;
                continue;
            }
            if (p[1] == 'p') { // pack expansion: no E
                p += 2;
                continue;
            }
            break;
        case '_':
            if (digit(p[1])) { // discriminator _N
                p += 2;
                continue;
            }
            if (p[1] == '_' && digit(p[2])) { // discriminator __NN_
                p = skipNumber(p + 2);
                continue;
            }
            break;
        case 'U':
            if (p[1] == 't') { // unnamed type: Ut_, Ut4_
                p = skipNumber(p + 2);
                continue;
            }
            if (p[1] == 'l') { // closure: Ul <parameters> E [<number>] _
                push('U');
                p += 2;
                continue;
            }
            break;
        case 'L':
            if (digit(p[1])) {
                for (int i = 0; i < depth && i < kMaxDepth; ++i) {
                    if (open[i] == 'Z')
                        return true; // internal linkage (or a literal of a named type: ambiguous)
                }
                // A literal of a named type: L <source name> <value> E.
                p = skipSourceName(p + 1);
                if (!p)
                    return false;
                while (*p && *p != 'E')
                    ++p;
                if (*p)
                    ++p;
                continue;
            }
            if (lower(p[1]) || (p[1] == 'D' && lower(p[2]))) { // a literal of a builtin type: Li2E, LDnE
                ++p;
                while (*p && *p != 'E')
                    ++p;
                if (*p)
                    ++p;
                continue;
            }
            break;
        case 'Z':
            if (lower(p[1]))
                return true; // an operator at namespace scope: see above
            push('Z');
            break;
        case 'N':
        case 'I':
        case 'J':
        case 'F':
        case 'X':
            push(c);
            break;
        case 'E':
            if (depth > 0) {
                const char closed = top(0);
                --depth;
                if (closed == 'U') {
                    p = skipNumber(p + 1);
                    continue;
                }
            }
            break;
        default:
            break;
        }
        ++p;
    }
    return false;
}

std::uint32_t internEventType(const std::type_info &type) noexcept
{
    try {
        TypeTable &table = typeTable();
        std::string key = typeKey(type);
        std::lock_guard<std::mutex> lock(table.mutex);
        auto it = table.indices.find(key);
        if (it != table.indices.end())
            return it->second;
        const auto index = static_cast<std::uint32_t>(table.indices.size());
        if (index == kNoEventType)
            return kNoEventType;
        table.indices.emplace(std::move(key), index);
        return index;
    } catch (...) { // std::bad_alloc: the type stays unknown for now
        return kNoEventType;
    }
}

void BusLink::detach() noexcept
{
    std::lock_guard<std::mutex> lock(m_mutex); // waits for with()
    m_bus.store(nullptr, std::memory_order_release);
}

// --- RingBase ------------------------------------------------------------------

void RingBase::backoff(unsigned &round) noexcept
{
    backoffStep(round);
}

void RingBase::wakeSlow() noexcept
{
    const std::uint32_t w = m_waiters.load(std::memory_order_acquire);
    // The first producer to see the consumer asleep takes the bit and wakes
    // it; the others see it clear and pay nothing more. (The consumer sets
    // the bit again, and looks again, before each wait.)
    if ((w & kSleeper) && (m_waiters.fetch_and(~kSleeper, std::memory_order_acq_rel) & kSleeper)) {
        { std::lock_guard<std::mutex> lock(m_mutex); }
        m_cv.notify_one();
    }
    if ((w & kHook) && (m_waiters.fetch_and(~kHook, std::memory_order_acq_rel) & kHook))
        fireHook();
}

void RingBase::fireHook() noexcept
{
    std::lock_guard<std::mutex> lock(m_mutex);
    if (m_hook && !m_hook(m_hookContext))
        m_waiters.fetch_or(kHook, std::memory_order_acq_rel); // armed again: the next event retries
}

void RingBase::setHook(WakeHook hook, void *context) noexcept
{
    std::lock_guard<std::mutex> lock(m_mutex);
    m_hook = hook;
    m_hookContext = context;
}

void RingBase::clearHook() noexcept
{
    std::lock_guard<std::mutex> lock(m_mutex);
    m_hook = nullptr;
    m_hookContext = nullptr;
    m_waiters.fetch_and(~kHook, std::memory_order_relaxed);
}

bool RingBase::waitReady(const std::chrono::steady_clock::time_point *deadline)
{
    // A short spin first: on a multi-core machine the next event is often
    // nanoseconds away, and sleeping costs microseconds on both sides.
    for (unsigned i = 0; i < 128; ++i) {
        if (peek() != Peek::NotReady || isClosed())
            return true;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    std::unique_lock<std::mutex> lock(m_mutex);
    for (;;) {
        // Dekker with the producers' wakeIfWaiting(): announce, fence, look.
        m_waiters.fetch_or(kSleeper, std::memory_order_seq_cst);
        heavyFence();
        if (peek(std::memory_order_seq_cst) != Peek::NotReady || m_closed.load(std::memory_order_seq_cst)) {
            m_waiters.fetch_and(~kSleeper, std::memory_order_relaxed);
            return true;
        }
        if (deadline) {
            if (m_cv.wait_until(lock, *deadline) == std::cv_status::timeout) {
                m_waiters.fetch_and(~kSleeper, std::memory_order_relaxed);
                return peek(std::memory_order_seq_cst) != Peek::NotReady || isClosed();
            }
        } else {
            m_cv.wait(lock);
        }
    }
}

bool RingBase::armHook() noexcept
{
    m_waiters.fetch_or(kHook, std::memory_order_seq_cst);
    heavyFence();
    if (peek(std::memory_order_seq_cst) == Peek::NotReady && !m_closed.load(std::memory_order_seq_cst))
        return true;
    // Something is there: take the hook back, unless a producer fired it already.
    return (m_waiters.fetch_and(~kHook, std::memory_order_acq_rel) & kHook) == 0;
}

void RingBase::armHookForNextEvent() noexcept
{
    m_waiters.fetch_or(kHook, std::memory_order_acq_rel);
}

void RingBase::close() noexcept
{
    if (m_closed.exchange(true, std::memory_order_seq_cst))
        return;
    { std::lock_guard<std::mutex> lock(m_mutex); }
    m_cv.notify_all();
    if (m_waiters.fetch_and(~kHook, std::memory_order_acq_rel) & kHook)
        fireHook();
}

} // namespace detail

// --- ChannelBase -----------------------------------------------------------------

namespace detail {

ChannelBase::ChannelBase(Bus &b, DestroyFn d) : bus(&b), destroy(d)
{
    auto report = [this](const HandlerFailure &f) { bus->reportFailure(*this, f, true); };
    receivers.setErrorSink(new ErrorSinkFor<decltype(report)>(report));
}

void ChannelBase::notifyReceivers(const void *event) const noexcept
{
    receivers.notify(event);
}

void ChannelBase::receiversChanged(void *channel) noexcept
{
    auto *c = static_cast<ChannelBase *>(channel);
    // Under the mutex, each call reads a count at least as recent as that of
    // every call before it, so the last call leaves the bit right, and a
    // subscribe() that returned has set it (its own call ran first).
    std::lock_guard<std::mutex> lock(c->directMutex);
    if (c->receivers.size() != 0)
        c->direct->fetch_or(RegistryCore::kMirrorDivert, std::memory_order_seq_cst);
    else
        c->direct->fetch_and(~RegistryCore::kMirrorDivert, std::memory_order_seq_cst);
}

} // namespace detail

// --- Bus -------------------------------------------------------------------------

namespace {
detail::ChannelTable g_emptyTable{0, nullptr};

detail::ChannelTable *allocateTable(std::uint32_t size, detail::ChannelTable *older)
{
    void *memory = ::operator new(sizeof(detail::ChannelTable) + size * sizeof(std::atomic<detail::ChannelBase *>));
    auto *t = ::new (memory) detail::ChannelTable{size, older};
    for (std::uint32_t i = 0; i < size; ++i)
        ::new (static_cast<void *>(t->entries() + i)) std::atomic<detail::ChannelBase *>(nullptr);
    return t;
}
} // namespace

Bus::Bus(std::size_t defaultCapacity)
    : m_table(&g_emptyTable), m_defaultCapacity(defaultCapacity)
{
    checkCapacity(defaultCapacity);
    for (std::atomic<std::uintptr_t> &slot : m_direct)
        slot.store(detail::RegistryCore::emptyMirror(), std::memory_order_relaxed);
    m_link = std::make_shared<detail::BusLink>(this);
}

Bus::~Bus()
{
    m_link->detach();
    // A handler or receiver destroyed with its channel may own an object
    // whose destructor still publishes on this bus (a service announcing
    // that it stopped). So each channel leaves the table, and its direct
    // slot stops naming its handlers (the channel's registry frees them
    // before it destroys the handlers), before the channel is destroyed:
    // such a publish finds the channels destroyed so far and this one
    // absent (nothing to deliver), and the others whole.
    Table *t = m_table.load(std::memory_order_relaxed);
    for (std::uint32_t i = 0; i < t->size; ++i) {
        detail::ChannelBase *c = t->entries()[i].exchange(nullptr, std::memory_order_relaxed);
        if (!c)
            continue;
        // The registry's mirror from here on. It must outlive the channel's
        // destruction: a guard removal running on another thread meanwhile
        // (which the registry's destructor waits for) still publishes to it.
        std::atomic<std::uintptr_t> detached{0};
        if (c->direct) {
            c->handlersCore->setMirror(&detached);
            c->direct->store(detail::RegistryCore::emptyMirror(), std::memory_order_relaxed);
        }
        c->destroy(c);
    }
    while (t && t != &g_emptyTable) {
        Table *older = t->older;
        ::operator delete(t);
        t = older;
    }
}

void Bus::checkCapacity(std::size_t capacity) const
{
    if (capacity == 0)
        throw std::invalid_argument("sigreg::Bus: a receiver's capacity must be at least 1");
    if (capacity > kMaxCapacity)
        throw std::length_error("sigreg::Bus: a receiver's capacity must not exceed Bus::kMaxCapacity (2^30)");
}

detail::ChannelBase *Bus::installChannel(const std::type_info &type, MakeChannelFn make)
{
    const std::uint32_t index = detail::internEventType(type);
    if (index == detail::kNoEventType)
        throw std::bad_alloc();
    std::lock_guard<std::mutex> lock(m_mutex);
    Table *t = m_table.load(std::memory_order_relaxed);
    if (index < t->size) {
        if (detail::ChannelBase *c = t->entries()[index].load(std::memory_order_relaxed))
            return c; // created by another thread meanwhile
    }
    // Everything that can throw comes before the first publication.
    std::unique_ptr<detail::ChannelBase, void (*)(detail::ChannelBase *)> channel(
        make(*this), [](detail::ChannelBase *c) { c->destroy(c); });
    channel->typeName = detail::readableName(type);
    if (index < kDirectTypes) {
        // Before the channel is published: every handler and receiver ever
        // added to it updates the slot.
        channel->direct = &m_direct[index];
        channel->receivers.setObserver(&detail::ChannelBase::receiversChanged, channel.get());
        channel->handlersCore->setMirror(channel->direct);
    }
    if (index >= t->size) {
        // Grow: a new table; readers that loaded the old one keep using it
        // (it stays until the bus goes), they merely miss this new channel,
        // as if they had emitted before it existed.
        const std::uint32_t size = std::max<std::uint32_t>({16u, index + 1, t->size * 2});
        Table *grown = allocateTable(size, t == &g_emptyTable ? nullptr : t);
        for (std::uint32_t i = 0; i < t->size; ++i)
            grown->entries()[i].store(t->entries()[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
        t = grown;
        m_table.store(t, std::memory_order_release);
    }
    detail::ChannelBase *c = channel.release();
    t->entries()[index].store(c, std::memory_order_release);
    m_typeCount.fetch_add(1, std::memory_order_release);
    return c;
}

void Bus::setErrorFunction(std::shared_ptr<const ErrorFunction> f)
{
    std::shared_ptr<const ErrorFunction> old;
    {
        std::lock_guard<std::mutex> lock(m_errorMutex);
        old = std::exchange(m_errorFunction, std::move(f));
    }
}

void Bus::reportFailure(const detail::ChannelBase &channel, const HandlerFailure &failure, bool receiver) noexcept
{
    m_failures.fetch_add(1, std::memory_order_relaxed);
    std::shared_ptr<const ErrorFunction> f;
    {
        std::lock_guard<std::mutex> lock(m_errorMutex);
        f = m_errorFunction;
    }
    if (!f) {
        m_unhandled.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    BusFailure busFailure;
    static_cast<HandlerFailure &>(busFailure) = failure;
    busFailure.eventType = channel.typeName;
    busFailure.receiver = receiver;
    try {
        (*f)(busFailure);
    } catch (...) {
        m_unhandled.fetch_add(1, std::memory_order_relaxed);
    }
}

bool Bus::initiateShutdown() noexcept
{
    if (m_shuttingDown.exchange(true, std::memory_order_acq_rel))
        return false;
    emit(ShutdownInitiated{});
    return true;
}

} // namespace sigreg
