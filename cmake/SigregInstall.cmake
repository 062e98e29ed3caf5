# Install rules and the component-aware package config:
#   find_package(Sigreg CONFIG COMPONENTS Core)   ->  Sigreg::Core
#   find_package(Sigreg CONFIG COMPONENTS Qt)     ->  Sigreg::Qt (and Sigreg::Core), if built with Qt
include(CMakePackageConfigHelpers)

set(SIGREG_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/Sigreg")
# The components this build installs; SigregConfig.cmake offers only these.
set(SIGREG_INSTALLED_COMPONENTS Core)

install(TARGETS sigreg_core EXPORT SigregCoreTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# Public headers only: detail/ is needed by the inline notify path, but no *_p.h
# or src/ header is ever installed. The Qt headers go with the Qt component.
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

# The Qt component (SIGREG_WITH_QT): its own export set, so that a consumer of
# the core alone never loads Qt.
if(TARGET sigreg_qt)
    install(TARGETS sigreg_qt EXPORT SigregQtTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
    install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/sigreg/qt/
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sigreg/qt
        FILES_MATCHING PATTERN "*.h")
    install(FILES ${PROJECT_BINARY_DIR}/include/sigreg/sigreg_qt_export.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sigreg)
    install(EXPORT SigregQtTargets
        NAMESPACE Sigreg::
        FILE SigregQtTargets.cmake
        DESTINATION ${SIGREG_CMAKE_INSTALL_DIR})
    list(APPEND SIGREG_INSTALLED_COMPONENTS Qt)
endif()

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
