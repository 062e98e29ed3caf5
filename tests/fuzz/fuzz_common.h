// SPDX-License-Identifier: MIT
// Shared pieces of the libFuzzer targets: reading the input, the step trace,
// the call logs that are compared with a reference model, and failing loudly.
//
// A target decodes its input into a sequence of operations. Before each
// operation runs for real, the target's reference model predicts it: the
// model appends what it expects to `expected` (handler calls, return values
// seen inside handlers, error reports), the real run appends what happened
// to `actual`, and the two must be equal. State that can be queried (sizes,
// ids, counters) is compared after every step. Any difference prints the
// steps so far and both logs, then traps (libFuzzer saves the input).
//
// SIGREG_FUZZ_TRACE=1 in the environment prints every step as it runs (to
// replay a crash input: `sigreg_fuzz_registry crash-...`).
#pragma once

#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace fuzz {

/// Reads the fuzzer's bytes; past the end it yields zeros (and empty() is true).
class Reader {
public:
    Reader(const std::uint8_t *data, std::size_t size) noexcept : m_p(data), m_n(size) {}
    [[nodiscard]] bool empty() const noexcept { return m_n == 0; }
    std::uint8_t byte() noexcept
    {
        if (m_n == 0)
            return 0;
        --m_n;
        return *m_p++;
    }

private:
    const std::uint8_t *m_p;
    std::size_t m_n;
};

/// One observable event: a handler call, a value returned to a handler, an
/// error report. Kinds and operands are the target's own.
struct Entry {
    std::uint8_t kind = 0;
    std::uint64_t a = 0;
    std::uint64_t b = 0;
    std::uint64_t c = 0;
    friend bool operator==(const Entry &x, const Entry &y) noexcept
    {
        return x.kind == y.kind && x.a == y.a && x.b == y.b && x.c == y.c;
    }
};

using KindName = const char *(*)(std::uint8_t kind);

/// The steps run so far (printed on failure) and the two logs of the current step.
class Checker {
public:
    explicit Checker(const char *target, KindName kindName) noexcept : m_target(target), m_kindName(kindName)
    {
        const char *t = std::getenv("SIGREG_FUZZ_TRACE");
        m_live = t && *t && *t != '0';
    }

    void reset()
    {
        m_steps.clear(); // keeps its capacity: recording a step allocates nothing
        m_count = 0;
        expected.clear();
        actual.clear();
    }

    /// Records the step about to run (formatted like printf).
    void step(const char *fmt, ...) __attribute__((format(printf, 2, 3)))
    {
        char buf[256];
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        char num[16];
        std::snprintf(num, sizeof num, "\n%4zu  ", ++m_count);
        m_steps += num;
        m_steps += buf;
        if (m_live)
            std::fprintf(stderr, "[%s] step %zu: %s\n", m_target, m_count, buf);
    }
    /// Adds a note to the current step (a result).
    void note(const char *fmt, ...) __attribute__((format(printf, 2, 3)))
    {
        char buf[160];
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        m_steps += " -> ";
        m_steps += buf;
        if (m_live)
            std::fprintf(stderr, "[%s]   -> %s\n", m_target, buf);
    }

    /// Fails unless the two logs of this step are equal.
    void compareLogs()
    {
        if (expected == actual)
            return;
        std::size_t i = 0;
        while (i < expected.size() && i < actual.size() && expected[i] == actual[i])
            ++i;
        fail("the call log differs from the model's at entry %zu (expected %zu entries, got %zu)", i,
             expected.size(), actual.size());
    }

    /// Prints the steps and the logs, then traps.
    [[noreturn]] void fail(const char *fmt, ...) __attribute__((format(printf, 2, 3)))
    {
        std::fprintf(stderr, "\n==== %s: MODEL MISMATCH ====\n", m_target);
        va_list ap;
        va_start(ap, fmt);
        std::vfprintf(stderr, fmt, ap);
        va_end(ap);
        std::fprintf(stderr, "\n---- steps (%zu; the last one failed) ----%s\n", m_count, m_steps.c_str());
        printLog("expected (model)", expected);
        printLog("actual", actual);
        std::fprintf(stderr, "==== end of %s report ====\n", m_target);
        std::fflush(stderr);
        __builtin_trap();
    }

    std::vector<Entry> expected;
    std::vector<Entry> actual;

private:
    void printLog(const char *title, const std::vector<Entry> &log) const
    {
        std::fprintf(stderr, "---- %s log of the last step ----\n", title);
        for (std::size_t i = 0; i < log.size(); ++i) {
            const Entry &e = log[i];
            std::fprintf(stderr, "%4zu  %s %llu %llu %llu\n", i, m_kindName(e.kind), (unsigned long long)e.a,
                         (unsigned long long)e.b, (unsigned long long)e.c);
        }
    }

    const char *m_target;
    KindName m_kindName;
    bool m_live = false;
    std::string m_steps;
    std::size_t m_count = 0;
};

#define FUZZ_CHECK(checker, cond, ...)                                                                         \
    do {                                                                                                       \
        if (!(cond))                                                                                           \
            (checker).fail(__VA_ARGS__);                                                                       \
    } while (0)

} // namespace fuzz
