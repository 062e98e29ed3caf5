// SPDX-License-Identifier: MIT
// Pattern: transaction hooks ordered by priority (docs/PATTERNS.md).
//
// A small ledger commits transfers. Before a commit, hooks run in a fixed
// order given by their priorities (validation, limits, journal); any of
// them can veto, and a hook that throws vetoes too: the registry's error
// handler turns the exception into a veto naming the hook. After the
// outcome, a second registry tells the observers (cache, metrics).
//
// Exits 0 when every check holds, 1 otherwise.
#include <sigreg/registry.h>

#include "pattern_checks.h"

#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

struct Transfer {
    int id;
    std::string from, to;
    long amount;
};

// [pattern:transaction-hooks-ledger]
// Hook priorities: one table, so the order is visible in one place.
enum HookPriority : int {
    Validate = 300, // reject malformed transfers first
    Limits = 200,   // business rules
    Journal = 100,  // write-ahead: only for transfers nobody vetoed
};

struct Verdict {
    bool vetoed = false;
    std::string reason;
    void veto(std::string why)
    {
        if (!vetoed) // the first reason wins
            reason = std::move(why);
        vetoed = true;
    }
};

struct BeforeCommit {
    const Transfer &transfer;
    Verdict &verdict; // hooks vote through it; the event itself stays const
};
struct AfterCommit {
    const Transfer &transfer;
    bool committed;
    const std::string &reason;
};

class Ledger {
public:
    Ledger()
    {
        // A hook that throws must stop the commit too. The error handler runs
        // on the committing thread, right after the hook that threw.
        m_before.setErrorHandler([this](const sigreg::HandlerFailure &f) {
            m_current->veto(m_names[f.handler] + " failed: " + std::string(f.message()));
        });
    }

    void hook(std::string name, int priority, std::function<void(const BeforeCommit &)> f)
    {
        std::lock_guard lock(m_commitMutex);
        m_names[m_before.add(priority, std::move(f))] = std::move(name);
    }
    sigreg::Registry<AfterCommit> &observers() { return m_after; }

    bool commit(const Transfer &t)
    {
        std::lock_guard lock(m_commitMutex); // one commit at a time
        Verdict verdict;
        m_current = &verdict;
        m_before.notify(BeforeCommit{t, verdict}); // priority order; nothing escapes
        m_current = nullptr;
        if (!verdict.vetoed) {
            m_balances[t.from] -= t.amount;
            m_balances[t.to] += t.amount;
        }
        m_after.notify(AfterCommit{t, !verdict.vetoed, verdict.reason});
        return !verdict.vetoed;
    }
    // [/pattern:transaction-hooks-ledger]

    long balance(const std::string &account)
    {
        std::lock_guard lock(m_commitMutex);
        return m_balances[account];
    }
    void deposit(const std::string &account, long amount)
    {
        std::lock_guard lock(m_commitMutex);
        m_balances[account] += amount;
    }

private:
    std::mutex m_commitMutex; // also guards m_names, m_current and m_balances
    sigreg::Registry<BeforeCommit> m_before;
    sigreg::Registry<AfterCommit> m_after;
    std::map<sigreg::HandlerId, std::string> m_names;
    Verdict *m_current = nullptr;
    std::map<std::string, long> m_balances;
};

using pattern::check;

} // namespace

int main()
{
    Ledger ledger;
    ledger.deposit("alice", 1000);
    std::vector<std::string> trace; // which hooks ran, per transfer
    std::vector<std::string> journal;
    bool diskFull = false;

    // [pattern:transaction-hooks-register]
    // Registered in any order: the priorities decide.
    ledger.hook("journal", Journal, [&](const BeforeCommit &c) {
        trace.push_back("journal");
        if (c.verdict.vetoed)
            return; // somebody before us said no: write nothing
        if (diskFull)
            throw std::runtime_error("disk full");
        journal.push_back("transfer " + std::to_string(c.transfer.id));
    });
    ledger.hook("limits", Limits, [&](const BeforeCommit &c) {
        trace.push_back("limits");
        if (c.transfer.amount > 500)
            c.verdict.veto("limits: " + std::to_string(c.transfer.amount) + " exceeds 500");
    });
    ledger.hook("validate", Validate, [&](const BeforeCommit &c) {
        trace.push_back("validate");
        if (c.transfer.amount <= 0 || c.transfer.from == c.transfer.to)
            c.verdict.veto("validate: malformed transfer");
    });
    // [/pattern:transaction-hooks-register]

    std::vector<std::string> outcomes;
    sigreg::Guard observer = ledger.observers().addGuarded([&](const AfterCommit &a) {
        outcomes.push_back(a.committed ? "committed" : "rolled back (" + a.reason + ")");
    });

    auto run = [&](const Transfer &t) {
        trace.clear();
        const bool ok = ledger.commit(t);
        std::string order;
        for (const std::string &h : trace)
            order += (order.empty() ? "" : " > ") + h;
        std::printf("transfer %d (%ld): %s\n    hooks: %s\n", t.id, t.amount, outcomes.back().c_str(), order.c_str());
        return ok;
    };
    const std::vector<std::string> inOrder{"validate", "limits", "journal"};

    const bool t1 = run({1, "alice", "bob", 200});
    check(t1 && trace == inOrder, "transfer 1 committed, hooks in priority order");
    check(journal.size() == 1 && ledger.balance("bob") == 200, "it was journaled and applied");

    const bool t2 = run({2, "alice", "bob", 700});
    check(!t2 && outcomes.back() == "rolled back (limits: 700 exceeds 500)", "transfer 2 vetoed by limits");
    check(trace == inOrder && journal.size() == 1, "the journal ran after the veto and wrote nothing");

    diskFull = true;
    const bool t3 = run({3, "alice", "carol", 50});
    diskFull = false;
    check(!t3 && outcomes.back() == "rolled back (journal failed: disk full)", "a throwing hook vetoes, by name");
    check(ledger.balance("alice") == 800 && ledger.balance("carol") == 0, "only transfer 1 moved money");

    return pattern::finish("transaction-hooks");
}
