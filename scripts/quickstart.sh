#!/usr/bin/env bash
# Sigreg quick start on Debian 12: installs what is missing, then
#   scripts/quickstart.sh demo   builds and runs the demo
#   scripts/quickstart.sh test   builds everything and runs all tests (CTest)
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
case "$mode" in
    demo|test) ;;
    *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac

# Debian packages the build needs. Boost, libsigc++ and moodycamel's
# concurrentqueue are only peers in the benchmark; they are optional for CMake
# but installed here so that the benchmark compares against every peer.
packages=(
    build-essential cmake ninja-build pkg-config
    qt6-base-dev
    qt6-declarative-dev
    qml6-module-qtqml qml6-module-qtqml-models qml6-module-qtqml-workerscript
    qml6-module-qtquick qml6-module-qtquick-window qml6-module-qttest
    libbenchmark-dev libboost-dev libsigc++-3.0-dev libconcurrentqueue-dev
)

. scripts/lib/packages.sh
sigreg_ensure_packages "${packages[@]}"

jobs="$(nproc 2>/dev/null || echo 2)"
cmake --preset release
if [ "$mode" = demo ]; then
    cmake --build --preset release --target sigreg-demo -j "$jobs"
    ./build/release/examples/demo/sigreg-demo
else
    cmake --build --preset release -j "$jobs"
    ctest --preset release -j "$jobs"
fi
