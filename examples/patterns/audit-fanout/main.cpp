// SPDX-License-Identifier: MIT
// Pattern: audit fan-out with guards (docs/PATTERNS.md).
//
// Request threads record audit events; every sink registered at that moment
// gets each one. Sinks own their registration (a sigreg::Guard member), so a
// sink that goes out of scope unregisters itself, even while other threads
// are notifying, and is never called once it is gone. The program counts
// what each sink saw and checks the totals.
//
// Exits 0 when every check holds, 1 otherwise.
#include <sigreg/registry.h>

#include "pattern_checks.h"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

enum class Kind { Login, Read, Write, PermissionDenied };

struct AuditEvent {
    Kind kind;
    int user;
    int request;
};

bool isSecurity(const AuditEvent &e)
{
    return e.kind == Kind::Login || e.kind == Kind::PermissionDenied;
}

using AuditLog = sigreg::Registry<AuditEvent>;

// [pattern:audit-fanout-sink]
// A sink registers itself for its whole life. The guard is the last member:
// members are destroyed in reverse order, so the handler is unregistered
// (and any call still running on another thread has returned) before the
// state it uses goes away.
class CountingSink {
public:
    CountingSink(AuditLog &log, std::string name, bool securityOnly = false)
        : m_name(std::move(name)), m_securityOnly(securityOnly),
          m_guard(log.addGuarded([this](const AuditEvent &e) { record(e); }))
    {
    }

    const std::string &name() const { return m_name; }
    long count() const { return m_count.load(); }

private:
    void record(const AuditEvent &e)
    {
        if (m_securityOnly && !isSecurity(e))
            return;
        m_count.fetch_add(1, std::memory_order_relaxed); // called from many threads at once
    }

    std::string m_name;
    bool m_securityOnly;
    std::atomic<long> m_count{0};
    sigreg::Guard m_guard; // last: unregisters first
};
// [/pattern:audit-fanout-sink]

constexpr int kThreads = 2;

// What the request threads produced, by them, for the checks.
struct Totals {
    std::atomic<long> all{0};
    std::atomic<long> security{0};
};

// One request thread: `n` events, a mix of kinds.
void serve(const AuditLog &log, Totals &totals, int thread, int n)
{
    for (int i = 0; i < n; ++i) {
        const AuditEvent e{static_cast<Kind>(i % 4), 100 + thread, thread * 1000000 + i};
        log.notify(e);
        totals.all.fetch_add(1, std::memory_order_relaxed);
        totals.security.fetch_add(isSecurity(e) ? 1 : 0, std::memory_order_relaxed);
    }
}

using pattern::check;

} // namespace

int main()
{
    AuditLog log;
    Totals totals;

    CountingSink archive(log, "archive");
    CountingSink siem(log, "siem", /*securityOnly*/ true);
    std::printf("sinks registered: %zu\n", log.size());

    // Phase 1: two request threads, two sinks.
    {
        std::vector<std::jthread> threads;
        for (int t = 0; t < kThreads; ++t)
            threads.emplace_back([&, t] { serve(log, totals, t, 20000); });
    }
    const long phase1 = totals.all.load();

    // Phase 2: an investigation attaches a temporary sink while requests keep
    // coming, and detaches it when its scope ends.
    std::atomic<bool> stop{false};
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            while (!stop.load())
                serve(log, totals, t, 100);
        });
    long tapSeen = 0;
    // [pattern:audit-fanout-scope]
    {
        CountingSink tap(log, "investigation");
        while (tap.count() < 1000) // let it collect a while
            std::this_thread::yield();
        tapSeen = tap.count();
    } // ~CountingSink: unregistered here, and no call is still running in it
    // [/pattern:audit-fanout-scope]
    const std::size_t afterScope = log.size();

    // The same with a bare guard, checked: once the guard is gone, no call of
    // its handler is running or starts, though notifies continue meanwhile.
    std::atomic<bool> gone{false};
    std::atomic<long> probeCalls{0}, callsAfterGone{0};
    {
        sigreg::Guard probe = log.addGuarded([&](const AuditEvent &) {
            probeCalls.fetch_add(1);
            if (gone.load())
                callsAfterGone.fetch_add(1);
        });
        while (probeCalls.load() < 1000)
            std::this_thread::yield();
    }
    gone = true;
    const long archivedAtRemoval = archive.count();
    while (archive.count() < archivedAtRemoval + 1000) // notifies go on
        std::this_thread::yield();
    stop = true;
    threads.clear(); // joins

    std::printf("%-14s %8s\n", "sink", "events");
    for (const CountingSink *s : {&archive, &siem})
        std::printf("%-14s %8ld\n", s->name().c_str(), s->count());
    std::printf("%-14s %8ld (while it existed)\n", "investigation", tapSeen);
    std::printf("produced: %ld events (%ld security), %ld before the investigation\n", totals.all.load(),
                totals.security.load(), phase1);

    check(afterScope == 2, "the investigation sink unregistered itself at scope exit");
    check(tapSeen >= 1000, "it saw events while it existed");
    check(callsAfterGone.load() == 0, "a removed guard's handler is never called again");
    check(archive.count() == totals.all.load(), "archive: every event, from every thread");
    check(siem.count() == totals.security.load(), "siem: exactly the security events");
    check(log.failureCount() == 0, "no sink failed");

    return pattern::finish("audit-fanout");
}
