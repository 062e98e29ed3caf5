// SPDX-License-Identifier: MIT
// Pattern: metric events with a batching handler (docs/PATTERNS.md).
//
// Code anywhere emits Metric events on a sigreg::Bus, without knowing who
// listens. A BatchingExporter collects them and hands them on in batches of
// N (one export call per batch, as a network exporter wants), flushes the
// rest when the bus announces shutdown (sigreg::ShutdownInitiated), and
// exports anything that still arrives after that at once. The program
// checks that batches have the right size and that no metric is lost.
//
// Exits 0 when every check holds, 1 otherwise.
#include <sigreg/bus.h>

#include "pattern_checks.h"

#include <cstdio>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace {

struct Metric {
    const char *name; // a string literal
    double value;
};

// [pattern:metrics-batching-exporter]
class BatchingExporter {
public:
    using Export = std::function<void(std::vector<Metric> batch)>;

    BatchingExporter(sigreg::Bus &bus, std::size_t batchSize, Export out)
        : m_batchSize(batchSize), m_export(std::move(out)),
          m_onMetric(bus.onGuarded([this](const Metric &m) { add(m); })),
          m_onShutdown(bus.onGuarded([this](const sigreg::ShutdownInitiated &) { shutdown(); }))
    {
        m_batch.reserve(m_batchSize);
    }
    ~BatchingExporter()
    {
        m_onMetric.reset(); // no more add() after this (and none running)...
        m_onShutdown.reset();
        shutdown();         // ...so this flush is the last
    }

private:
    void add(const Metric &m) // any emitting thread
    {
        std::vector<Metric> full;
        {
            std::lock_guard lock(m_mutex);
            m_batch.push_back(m);
            if (m_batch.size() < m_batchSize && !m_shuttingDown)
                return;
            full.swap(m_batch);
            m_batch.reserve(m_batchSize);
        }
        m_export(std::move(full)); // outside the lock: other emitters keep appending
    }
    void shutdown()
    {
        std::vector<Metric> rest;
        {
            std::lock_guard lock(m_mutex);
            m_shuttingDown = true; // from now on every metric is exported at once
            rest.swap(m_batch);
        }
        if (!rest.empty())
            m_export(std::move(rest));
    }

    const std::size_t m_batchSize;
    const Export m_export;
    std::mutex m_mutex;
    std::vector<Metric> m_batch;
    bool m_shuttingDown = false;
    sigreg::Guard m_onMetric; // the guards last: they go first
    sigreg::Guard m_onShutdown;
};
// [/pattern:metrics-batching-exporter]

// The "backend": records what it was sent. Called from several threads.
struct Backend {
    std::mutex mutex;
    std::vector<std::size_t> batchSizes;
    long metrics = 0;
    double sum = 0;

    void receive(const std::vector<Metric> &batch)
    {
        std::lock_guard lock(mutex);
        batchSizes.push_back(batch.size());
        metrics += static_cast<long>(batch.size());
        for (const Metric &m : batch)
            sum += m.value;
    }
};

using pattern::check;

} // namespace

int main()
{
    constexpr std::size_t kBatch = 100;
    constexpr int kThreads = 3;
    constexpr int kPerThread = 10001; // not a multiple of kBatch: a remainder is left for shutdown

    sigreg::Bus bus;
    Backend backend;
    BatchingExporter exporter(bus, kBatch, [&](std::vector<Metric> batch) { backend.receive(batch); });

    // [pattern:metrics-batching-emit]
    auto handleRequests = [&bus](int n) {
        for (int i = 0; i < n; ++i)
            bus.emit(Metric{"http.request.ms", 1.0 + i % 7}); // lock-free, no allocation
    };
    // [/pattern:metrics-batching-emit]
    {
        std::vector<std::jthread> threads;
        for (int t = 0; t < kThreads; ++t)
            threads.emplace_back(handleRequests, kPerThread);
    }
    const long emitted = long(kThreads) * kPerThread;
    double expectedSum = 0;
    for (int i = 0; i < kPerThread; ++i)
        expectedSum += kThreads * (1.0 + i % 7);

    std::size_t fullBatches = 0;
    {
        std::lock_guard lock(backend.mutex);
        for (std::size_t size : backend.batchSizes)
            fullBatches += size == kBatch ? 1 : 0;
        std::printf("before shutdown: %zu batches of %zu exported, %ld of %ld metrics\n", backend.batchSizes.size(),
                    kBatch, backend.metrics, emitted);
        check(fullBatches == backend.batchSizes.size(), "only full batches while running");
    }

    const bool first = bus.initiateShutdown(); // with Qt: sigreg::attachToApplication(bus)
    bus.emit(Metric{"late", 2.0});              // after shutdown: exported at once
    {
        std::lock_guard lock(backend.mutex);
        std::printf("after shutdown:  %zu batches, the last ones of %zu and %zu, %ld metrics\n",
                    backend.batchSizes.size(), backend.batchSizes[backend.batchSizes.size() - 2],
                    backend.batchSizes.back(), backend.metrics);
        check(first && backend.batchSizes.size() == fullBatches + 2, "shutdown flushed the rest, once");
        check(backend.batchSizes[fullBatches] == emitted % long(kBatch), "the remainder went out on shutdown");
        check(backend.batchSizes.back() == 1, "a metric after shutdown went out at once");
        check(backend.metrics == emitted + 1 && backend.sum == expectedSum + 2.0, "nothing lost");
    }
    check(bus.failureCount() == 0, "no handler failed");

    return pattern::finish("metrics-batching");
}
