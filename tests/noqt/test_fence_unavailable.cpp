// SPDX-License-Identifier: MIT
// Regression test (Qt-free, no test framework): when no heavy fence works
// (neither expedited membarrier nor the mprotect fallback), the first heavy
// fence must stop the process with a message naming the cause and the
// remedy. It used to fall back silently to a fence on the writer's side
// only, which does not order the readers' compiler-only barriers (possible
// use-after-free of removed handlers).
//
// The program forks. The child sets SIGREG_FENCE=unavailable (the library's
// knob that simulates both mechanisms failing), sends its stderr into a pipe
// and runs a scenario that reaches the heavy fence for real: reclamation and
// removal skip the heavy fence while no other thread holds a hazard record,
// so a second thread notifies once (taking a record) and stays alive while
// the main thread adds and removes handlers. The parent passes (exit 0) only
// if the child died of SIGABRT and wrote the message.
//
// Exit code 77 (ctest SKIP_RETURN_CODE): this build uses symmetric fences
// (SIGREG_ASYMMETRIC_FENCES=0, e.g. under ThreadSanitizer) or is not Linux,
// so there is no heavy fence to fail and nothing to test.
#include <sigreg/detail/hazard.h>
#include <sigreg/registry.h>

#include <cstdio>
#include <cstdlib>

#if SIGREG_ASYMMETRIC_FENCES && defined(__linux__)
#define SIGREG_TEST_FENCE_UNAVAILABLE 1
#endif

#if defined(SIGREG_TEST_FENCE_UNAVAILABLE)
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstring>
#include <string>
#include <thread>

namespace {

struct Tick {
    int n;
};

/// Runs in the child; returns only if the heavy fence did not abort.
void scenario()
{
    sigreg::Registry<Tick> reg;
    std::atomic<int> calls { 0 };
    reg.add([&](const Tick &) { calls.fetch_add(1, std::memory_order_relaxed); });

    std::atomic<bool> notified { false };
    std::atomic<bool> done { false };
    std::thread reader([&] {
        reg.notify(Tick { 1 }); // takes this thread's hazard record
        notified.store(true, std::memory_order_release);
        while (!done.load(std::memory_order_acquire))
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    while (!notified.load(std::memory_order_acquire))
        std::this_thread::sleep_for(std::chrono::milliseconds(1));

    // Another thread's record is in use: removal (and reclamation) now needs
    // the heavy fence.
    for (int i = 0; i < 1000; ++i) {
        const sigreg::HandlerId id = reg.add([](const Tick &) {});
        (void)reg.remove(id);
    }
    reg.notify(Tick { 2 });

    done.store(true, std::memory_order_release);
    reader.join();
    std::fprintf(stderr, "child: %d notifications, no abort\n", calls.load());
}

[[noreturn]] void runChild(int stderrFd)
{
    // No core dump for the expected abort.
    struct rlimit noCore = { 0, 0 };
    setrlimit(RLIMIT_CORE, &noCore);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

    if (dup2(stderrFd, STDERR_FILENO) < 0)
        _exit(3);
    close(stderrFd);
    if (setenv("SIGREG_FENCE", "unavailable", 1) != 0)
        _exit(3);
    alarm(60); // a hang fails (SIGALRM) before ctest's timeout
    scenario();
    _exit(0);
}

bool contains(const std::string &s, const char *what)
{
    return s.find(what) != std::string::npos;
}

} // namespace

int main()
{
    std::fflush(nullptr);
    int fds[2];
    if (pipe(fds) != 0) {
        std::perror("pipe");
        return 2;
    }
    const pid_t pid = fork();
    if (pid < 0) {
        std::perror("fork");
        return 2;
    }
    if (pid == 0) {
        close(fds[0]);
        runChild(fds[1]);
    }
    close(fds[1]);

    std::string output;
    char buf[4096];
    for (;;) {
        const ssize_t n = read(fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        output.append(buf, static_cast<std::size_t>(n));
    }
    close(fds[0]);

    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            std::perror("waitpid");
            return 2;
        }
    }

    std::printf("child's stderr:\n%s\n", output.c_str());
    bool ok = true;
    if (WIFSIGNALED(status)) {
        std::printf("child died of signal %d (%s)\n", WTERMSIG(status), strsignal(WTERMSIG(status)));
        if (WTERMSIG(status) != SIGABRT) {
            std::printf("FAIL: expected SIGABRT (%d)\n", SIGABRT);
            ok = false;
        }
    } else {
        std::printf("FAIL: child exited with status %d instead of aborting: the heavy fence "
                    "degraded silently\n",
            WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        ok = false;
    }
    for (const char *expected : { "sigreg: fatal: no heavy fence is available", "simulated by SIGREG_FENCE=unavailable",
             "-DSIGREG_ASYMMETRIC_FENCES=0" }) {
        if (!contains(output, expected)) {
            std::printf("FAIL: child's stderr lacks \"%s\"\n", expected);
            ok = false;
        }
    }
    std::printf(ok ? "PASS\n" : "FAILED\n");
    return ok ? 0 : 1;
}

#else

int main()
{
    std::printf("skipped: symmetric fences (SIGREG_ASYMMETRIC_FENCES=0 or not Linux): no heavy "
                "fence to fail\n");
    return 77;
}

#endif
