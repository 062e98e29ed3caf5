# Install rules and the component-aware package config:
#   find_package(Sigreg CONFIG COMPONENTS Core)   ->  Sigreg::Core
include(CMakePackageConfigHelpers)

set(SIGREG_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/Sigreg")

install(TARGETS sigreg_core EXPORT SigregCoreTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# Public headers only: detail/ is needed by the inline notify path, but no *_p.h
# or src/ header is ever installed.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/sigreg/
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sigreg
    FILES_MATCHING PATTERN "*.h"
    PATTERN "qt" EXCLUDE)
install(FILES ${PROJECT_BINARY_DIR}/include/sigreg/sigreg_export.h
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sigreg)
install(EXPORT SigregCoreTargets
    NAMESPACE Sigreg::
    FILE SigregCoreTargets.cmake
    DESTINATION ${SIGREG_CMAKE_INSTALL_DIR})

configure_package_config_file(
    ${PROJECT_SOURCE_DIR}/cmake/SigregConfig.cmake.in
    ${PROJECT_BINARY_DIR}/SigregConfig.cmake
    INSTALL_DESTINATION ${SIGREG_CMAKE_INSTALL_DIR})
write_basic_package_version_file(
    ${PROJECT_BINARY_DIR}/SigregConfigVersion.cmake
    VERSION ${PROJECT_VERSION}
    COMPATIBILITY SameMajorVersion)
install(FILES
    ${PROJECT_BINARY_DIR}/SigregConfig.cmake
    ${PROJECT_BINARY_DIR}/SigregConfigVersion.cmake
    DESTINATION ${SIGREG_CMAKE_INSTALL_DIR})
