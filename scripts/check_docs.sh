#!/usr/bin/env bash
# Builds the API reference (the sigreg-docs target) and fails if Doxygen
# printed any warning: an undocumented public symbol, a broken reference, a
# malformed comment, a configuration problem.
#
#   scripts/check_docs.sh [BUILD_DIR]     (default: build/docs)
#
# A BUILD_DIR that does not exist yet is configured for the docs alone (no
# tests, benchmarks, examples, nor Qt: Doxygen reads the Qt and QML headers
# without it), and the HTML goes to BUILD_DIR/api/html. An existing build
# directory keeps its options and its SIGREG_DOCS_OUTPUT_DIR (by default
# docs/api in the source tree); only SIGREG_BUILD_DOCS is switched on.
# On Debian, Doxygen and Graphviz are installed with apt-get when missing
# (with sudo when not root).
set -euo pipefail
cd "$(dirname "$0")/.."
src="$PWD"
dir="${1:-build/docs}"
case "$dir" in
    /*) ;;
    *) dir="$src/$dir" ;;
esac

. scripts/lib/packages.sh
sigreg_ensure_packages doxygen graphviz
if ! command -v doxygen >/dev/null 2>&1; then
    echo "check_docs: doxygen not found; install it (Debian: apt-get install doxygen graphviz)" >&2
    exit 1
fi

if [ -f "$dir/CMakeCache.txt" ]; then
    cmake -S "$src" -B "$dir" -DSIGREG_BUILD_DOCS=ON >/dev/null
else
    generator=()
    command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
    cmake -S "$src" -B "$dir" "${generator[@]}" \
        -DSIGREG_BUILD_DOCS=ON -DSIGREG_WITH_QT=OFF \
        -DSIGREG_BUILD_TESTS=OFF -DSIGREG_BUILD_BENCHMARKS=OFF -DSIGREG_BUILD_EXAMPLES=OFF \
        -DSIGREG_BUILD_FUZZERS=OFF -DSIGREG_INSTALL=OFF \
        -DSIGREG_DOCS_OUTPUT_DIR="$dir/api" >/dev/null
fi

log="$dir/docs/doxygen-warnings.log"
out="$dir/docs/sigreg-docs-build.log"
mkdir -p "$dir/docs"
status=0
cmake --build "$dir" --target sigreg-docs >"$out" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
    cat "$out" >&2
    echo "check_docs: building sigreg-docs failed (exit status $status)" >&2
    exit 1
fi

# Doxygen writes its warnings to the log file; problems found before it
# opens the log (in the configuration) go to the build output.
warnings="$( { cat "$log" 2>/dev/null; grep -i 'warning:' "$out" || true; } | sed "s|$src/||g" | sort -u)"
if [ -n "$warnings" ]; then
    count="$(printf '%s\n' "$warnings" | grep -ci 'warning:' || true)"
    printf '%s\n' "$warnings" >&2
    echo "check_docs: Doxygen printed $count warning(s); every public symbol needs a documentation comment" >&2
    exit 1
fi
grep -m1 'API reference:' "$out" || true
echo "check_docs: no Doxygen warnings"
