#!/usr/bin/env bash
# Builds the API reference (the sigreg-docs target) and fails if Doxygen
# printed any warning: an undocumented public symbol, a broken reference, a
# malformed comment, a configuration problem. Then compiles every C++ block
# of README.md and docs/*.md against the headers (scripts/doc_snippets.py;
# docs/PATTERNS.md is checked by the test patterns_doc_in_sync instead) and
# fails if one does not compile. The Qt and QML blocks need Qt 6 (Core, Qml,
# Concurrent); without it only the core ones are compiled.
#
#   scripts/check_docs.sh [BUILD_DIR]     (default: build/docs)
#
# A BUILD_DIR that does not exist yet is configured for the docs alone (no
# tests, benchmarks, examples, nor Qt: Doxygen reads the Qt and QML headers
# without it), and the HTML goes to BUILD_DIR/api/html. An existing build
# directory keeps its options and its SIGREG_DOCS_OUTPUT_DIR (by default
# docs/api in the source tree); only SIGREG_BUILD_DOCS is switched on.
# The snippets are compiled in BUILD_DIR/snippets, a project of their own
# that adds Sigreg with add_subdirectory(). On Debian, Doxygen, Graphviz and
# Python 3 are installed with apt-get when missing (with sudo when not root).
set -euo pipefail
cd "$(dirname "$0")/.."
src="$PWD"
dir="${1:-build/docs}"
case "$dir" in
    /*) ;;
    *) dir="$src/$dir" ;;
esac

. scripts/lib/packages.sh
sigreg_ensure_packages doxygen graphviz python3
if ! command -v doxygen >/dev/null 2>&1; then
    echo "check_docs: doxygen not found; install it (Debian: apt-get install doxygen graphviz)" >&2
    exit 1
fi

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ -f "$dir/CMakeCache.txt" ]; then
    cmake -S "$src" -B "$dir" -DSIGREG_BUILD_DOCS=ON >/dev/null
else
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

# The documentation's C++ blocks, each compiled (not linked) against the headers.
snippets="$dir/snippets"
python3 scripts/doc_snippets.py "$src" "$snippets/src"
if [ ! -f "$snippets/build/CMakeCache.txt" ]; then
    cmake -S "$snippets/src" -B "$snippets/build" "${generator[@]}" >"$snippets/configure.log" 2>&1 \
        || { cat "$snippets/configure.log" >&2; echo "check_docs: configuring the snippets failed" >&2; exit 1; }
fi
grep -h 'snippets not compiled' "$snippets/configure.log" 2>/dev/null || true
if ! cmake --build "$snippets/build" --target doc_snippets >"$snippets/build.log" 2>&1; then
    grep -E 'error|FAILED' "$snippets/build.log" >&2 || cat "$snippets/build.log" >&2
    echo "check_docs: a code block of the documentation does not compile (full log: $snippets/build.log)" >&2
    exit 1
fi
echo "check_docs: every C++ block of the documentation compiles"
