#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the libFuzzer targets (the `fuzz` preset: clang++-14, ASan + UBSan,
# core only) and runs each one on a copy of its seed corpus.
#
#   scripts/fuzz.sh [SECONDS]           each target for SECONDS (default 60)
#   scripts/fuzz.sh --runs N            each target for N executions (the long run)
#   options: --target registry|bus      only that target (repeatable; default both)
#            --jobs N                   build parallelism (default 2)
#            --fork N                   N fuzzing processes (libFuzzer -fork=N); a
#                                       crash, leak, timeout or OOM still stops the run
#
# Targets run one after the other. The committed corpus (tests/fuzz/corpus/)
# is never written: each run works on a copy in the build directory, which
# also receives crash/leak/timeout artifacts. Exits non-zero if any target
# finds anything (crash, sanitizer report, leak, timeout, model mismatch).
#
# Environment: SIGREG_FUZZ_BUILD_DIR (default build/fuzz), extra libFuzzer
# flags in SIGREG_FUZZ_FLAGS (e.g. "-max_len=1024").
set -euo pipefail

# All in one function: bash parses it whole before running, so editing this
# file during a long run does not disturb the run.
main() {
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    build=${SIGREG_FUZZ_BUILD_DIR:-$root/build/fuzz}
    case $build in /*) ;; *) build=$root/$build ;; esac

    seconds=60
    runs=
    jobs=2
    fork=
    targets=()
    while [[ $# -gt 0 ]]; do
        case $1 in
        --runs) runs=${2:?--runs needs a number}; shift 2 ;;
        --target) targets+=("${2:?--target needs registry or bus}"); shift 2 ;;
        --jobs) jobs=${2:?--jobs needs a number}; shift 2 ;;
        --fork) fork=${2:?--fork needs a number}; shift 2 ;;
        -h|--help) sed -n '3,20p' "${BASH_SOURCE[0]}"; exit 0 ;;
        [0-9]*) seconds=$1; shift ;;
        *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
        esac
    done
    [[ ${#targets[@]} -gt 0 ]] || targets=(registry bus)
    for t in "${targets[@]}"; do
        [[ $t == registry || $t == bus ]] || { echo "fuzz.sh: unknown target '$t'" >&2; exit 2; }
    done

    if ! command -v clang++-14 >/dev/null; then
        echo "fuzz.sh: clang++-14 not found (Debian: apt-get install clang-14 libclang-rt-14-dev)" >&2
        exit 2
    fi

    cd "$root"
    cmake --preset fuzz -B "$build" >/dev/null
    build_targets=()
    for t in "${targets[@]}"; do build_targets+=(--target "sigreg_fuzz_$t"); done
    cmake --build "$build" --parallel "$jobs" "${build_targets[@]}"

    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

    status=0
    summary=()
    for t in "${targets[@]}"; do
        exe=$build/tests/fuzz/sigreg_fuzz_$t
        work=$build/fuzz-run/$t
        rm -rf "$work"
        mkdir -p "$work/corpus" "$work/artifacts"
        cp -R "$root/tests/fuzz/corpus/$t/." "$work/corpus/"
        if [[ -n $runs ]]; then limit=(-runs="$runs"); what="$runs runs"; else limit=(-max_total_time="$seconds"); what="${seconds}s"; fi
        # Fork mode ignores timeouts and OOMs unless told otherwise; here any
        # finding stops the run, as it does with one process.
        if [[ -n $fork ]]; then
            limit+=(-fork="$fork" -ignore_crashes=0 -ignore_timeouts=0 -ignore_ooms=0)
            what="$what, $fork processes"
        fi
        # -max_len keeps inputs (sequences of operations) short and executions
        # fast; -timeout catches a hang (a removal that waits forever, a deadlock).
        # shellcheck disable=SC2206
        cmd=("$exe" "${limit[@]}" -max_len=256 -timeout=30 -rss_limit_mb=4096 -print_final_stats=1
             -artifact_prefix="$work/artifacts/" ${SIGREG_FUZZ_FLAGS:-} "$work/corpus")
        echo "==> sigreg_fuzz_$t ($what): ${cmd[*]}"
        log=$work/fuzz.log
        start=$(date +%s)
        rc=0
        "${cmd[@]}" >"$log" 2>&1 || rc=$?
        wall=$(( $(date +%s) - start ))
        execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *\([0-9]*\).*/\1/p' "$log" | tail -n1)
        if [[ -n $fork ]]; then
            # The parent prints no final stats: it counts its children's runs.
            # The largest count it printed (jobs in flight finish after the limit).
            execs=$(sed -n -e 's/^INFO: fuzzed for \([0-9]*\) iterations.*/\1/p' \
                           -e 's/^#\([0-9]*\): cov:.*/\1/p' "$log" | sort -n | tail -n1)
            [[ -z $execs ]] || rate=$(( execs / (wall > 0 ? wall : 1) ))
        fi
        cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n1 || true)
        found=$(find "$work/artifacts" -type f | wc -l)
        line="sigreg_fuzz_$t: executions ${execs:-?}, ${rate:-?} exec/s, ${wall}s wall, ${cov:-cov: ?}, exit $rc, artifacts $found"
        summary+=("$line")
        echo "$line"
        if [[ $rc -ne 0 || $found -ne 0 || -z $execs ]]; then
            status=1
            echo "!!! sigreg_fuzz_$t found something (log: $log):" >&2
            # From the first report (model mismatch, sanitizer, libFuzzer) on; else the end.
            first=$(grep -n -m1 -E 'MODEL MISMATCH|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|==ERROR' "$log" | cut -d: -f1 || true)
            if [[ -n $first ]]; then sed -n "${first},$((first + 150))p" "$log" >&2; else tail -n 120 "$log" >&2; fi
            find "$work/artifacts" -type f -exec echo "artifact: {}" \; >&2
        fi
    done

    echo "==> summary"
    printf '%s\n' "${summary[@]}"
    exit $status
}

main "$@"
