// SPDX-License-Identifier: MIT
// Sigreg — the waiting policy shared by the core's short waits (internal).
#pragma once

#include <chrono>
#include <thread>

namespace sigreg::detail {

/// One step of a wait for something that usually takes nanoseconds (a
/// handler call to end, a slot's copy to finish) but may take longer: spin,
/// then yield, then sleep. `round` counts the steps taken.
inline void backoffStep(unsigned &round) noexcept
{
    if (round < 64) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else if (round < 128) {
        std::this_thread::yield();
    } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    ++round;
}

/// backoffStep() with its own counter.
class Backoff {
public:
    void pause() noexcept { backoffStep(m_round); }

private:
    unsigned m_round = 0;
};

} // namespace sigreg::detail
