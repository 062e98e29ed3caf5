// SPDX-License-Identifier: MIT
// Built twice (tests/CMakeLists.txt), with SIGREG_ASYMMETRIC_FENCES=1 and =0.
// Against one Sigreg library exactly one of the two links: the other variant
// of the hazard protocol must not be mixed with the library's (hazard.h,
// requireMatchingProtocol()). check_protocol_variant.cmake builds both.
#include <sigreg/registry.h>

int main()
{
    sigreg::Registry<int> registry;
    int sum = 0;
    registry.add([&sum](const int &v) { sum += v; });
    registry.notify(1);
    return sum == 1 ? 0 : 1;
}
