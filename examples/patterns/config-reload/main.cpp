// SPDX-License-Identifier: MIT
// Pattern: configuration hot reload (docs/PATTERNS.md).
//
// A ConfigStore parses a configuration text, keeps the current version and
// announces every accepted change with a ConfigChanged event carrying the
// previous and the new snapshot. Components subscribe with a guard and adapt
// themselves; one of them refuses a change by throwing, which neither stops
// the others nor goes unnoticed: the store's error handler names it.
//
// Exits 0 when every check holds, 1 otherwise.
#include <sigreg/registry.h>

#include "pattern_checks.h"

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

// [pattern:config-reload-store]
struct Config {
    int version = 0;
    std::string logLevel = "info";
    int poolSize = 8;
    int cacheMb = 256;
};

struct ConfigChanged {
    std::shared_ptr<const Config> previous; // null for the first load
    std::shared_ptr<const Config> current;
};

class ConfigStore {
public:
    ConfigStore()
    {
        m_changes.setErrorHandler([this](const sigreg::HandlerFailure &f) {
            // Runs on the reloading thread, right after the failing subscriber.
            std::lock_guard lock(m_failuresMutex);
            m_failures.push_back(nameOf(f.handler) + ": " + std::string(f.message()));
        });
    }

    // Subscribers get every change from now on, and the current config at once.
    template <class F>
    [[nodiscard]] sigreg::Guard subscribe(std::string name, F onChange)
    {
        std::lock_guard reload(m_reloadMutex); // no reload between "now" and "from now on"
        if (m_current)
            onChange(ConfigChanged{nullptr, m_current});
        sigreg::Guard guard = m_changes.addGuarded(std::move(onChange));
        std::lock_guard lock(m_failuresMutex);
        m_names[guard.id()] = std::move(name);
        return guard;
    }

    // Parses `text`; on success publishes it. Returns false (and changes
    // nothing) when the text is invalid.
    bool reload(const std::string &text)
    {
        std::lock_guard reload(m_reloadMutex); // one reload at a time: versions arrive in order
        auto next = std::make_shared<Config>(m_current ? *m_current : Config{});
        if (!parse(text, *next))
            return false;
        next->version = m_current ? m_current->version + 1 : 1;
        ConfigChanged change{std::exchange(m_current, next), next};
        m_changes.notify(change); // every subscriber, even if one throws
        return true;
    }
    // [/pattern:config-reload-store]

    std::shared_ptr<const Config> current() const
    {
        std::lock_guard reload(m_reloadMutex);
        return m_current;
    }
    std::vector<std::string> failures() const
    {
        std::lock_guard lock(m_failuresMutex);
        return m_failures;
    }

private:
    static bool parse(const std::string &text, Config &out)
    {
        std::istringstream in(text);
        std::string key, value;
        while (in >> key >> value) {
            try {
                if (key == "log.level")
                    out.logLevel = value;
                else if (key == "pool.size")
                    out.poolSize = std::stoi(value);
                else if (key == "cache.mb")
                    out.cacheMb = std::stoi(value);
                else
                    return false; // unknown key: reject the whole file
            } catch (const std::exception &) {
                return false; // not a number
            }
        }
        return out.poolSize > 0 && out.cacheMb >= 0;
    }
    std::string nameOf(sigreg::HandlerId id) const
    {
        auto it = m_names.find(id);
        return it == m_names.end() ? "handler #" + std::to_string(id.value()) : it->second;
    }

    mutable std::mutex m_reloadMutex;
    std::shared_ptr<const Config> m_current;
    sigreg::Registry<ConfigChanged> m_changes;
    mutable std::mutex m_failuresMutex; // guards m_names and m_failures
    std::map<sigreg::HandlerId, std::string> m_names;
    std::vector<std::string> m_failures;
};

// Three components that adapt to the configuration.
struct Logger {
    std::string level;
};
struct ConnectionPool {
    int size = 0;
    int resizes = 0;
};
struct Cache {
    int mb = 0;
    int inUseMb = 300; // it cannot shrink below what it holds
};

using pattern::check;

} // namespace

int main()
{
    ConfigStore store;
    store.reload("log.level info pool.size 8 cache.mb 512"); // startup: version 1

    Logger logger;
    ConnectionPool pool;
    Cache cache;

    // [pattern:config-reload-subscribers]
    sigreg::Guard logSub = store.subscribe("logger", [&](const ConfigChanged &c) {
        logger.level = c.current->logLevel;
    });
    sigreg::Guard poolSub = store.subscribe("pool", [&](const ConfigChanged &c) {
        if (!c.previous || c.previous->poolSize != c.current->poolSize) {
            pool.size = c.current->poolSize;
            ++pool.resizes;
        }
    });
    sigreg::Guard cacheSub = store.subscribe("cache", [&](const ConfigChanged &c) {
        if (c.current->cacheMb < cache.inUseMb)
            throw std::runtime_error("cannot shrink to " + std::to_string(c.current->cacheMb) + " MB, "
                                     + std::to_string(cache.inUseMb) + " MB in use");
        cache.mb = c.current->cacheMb;
    });
    // [/pattern:config-reload-subscribers]

    std::printf("v1: log=%s pool=%d cache=%d MB\n", logger.level.c_str(), pool.size, cache.mb);
    check(logger.level == "info" && pool.size == 8 && cache.mb == 512, "subscribers start from the current config");

    // An operator edits the file and the application reloads it (on SIGHUP,
    // from a file watcher, ...).
    const bool accepted = store.reload("log.level debug pool.size 32 cache.mb 128");
    std::printf("v2: log=%s pool=%d cache=%d MB\n", logger.level.c_str(), pool.size, cache.mb);
    for (const std::string &f : store.failures())
        std::printf("    reported: %s\n", f.c_str());
    check(accepted && store.current()->version == 2, "version 2 accepted");
    check(logger.level == "debug" && pool.size == 32 && pool.resizes == 2, "logger and pool see version 2");
    check(cache.mb == 512, "the cache kept its old size: it refused the change");
    check(store.failures().size() == 1 && store.failures()[0].rfind("cache: cannot shrink", 0) == 0,
          "its refusal was reported once, by name");

    // An invalid file changes nothing and notifies nobody.
    const bool rejected = !store.reload("log.level trace pool.size many");
    check(rejected && store.current()->version == 2 && logger.level == "debug", "an invalid file is rejected");

    // A subscriber that goes away (its guard destroyed) hears no more.
    logSub.reset();
    store.reload("log.level warn");
    check(logger.level == "debug" && store.current()->logLevel == "warn" && pool.resizes == 2,
          "after its guard is reset the logger hears nothing");

    return pattern::finish("config-reload");
}
