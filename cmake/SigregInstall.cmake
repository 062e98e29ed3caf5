# Install rules and the component-aware package config:
#   find_package(Sigreg CONFIG COMPONENTS Core)   ->  Sigreg::Core
#   find_package(Sigreg CONFIG COMPONENTS Qt)     ->  Sigreg::Qt (and Sigreg::Core), if built with Qt
#   find_package(Sigreg CONFIG COMPONENTS Qml)    ->  Sigreg::Qml (and Sigreg::Qt, Sigreg::Core), if built
#                                                     with the QML module; SIGREG_QML_IMPORT_PATH names the
#                                                     installed QML import dir (holding Sigreg/)
include(CMakePackageConfigHelpers)

set(SIGREG_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/Sigreg")
# The components this build installs; SigregConfig.cmake offers only these.
set(SIGREG_INSTALLED_COMPONENTS Core)

install(TARGETS sigreg_core EXPORT SigregCoreTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# Public headers only: detail/ is needed by the inline notify path, but no *_p.h
# or src/ header is ever installed. The Qt and QML headers go with their components.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/sigreg/
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sigreg
    FILES_MATCHING PATTERN "*.h"
    PATTERN "*_p.h" EXCLUDE
    PATTERN "qt" EXCLUDE
    PATTERN "qml" EXCLUDE)
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

# Where the QML module goes: <SIGREG_INSTALL_QMLDIR>/Sigreg (qmldir, qmltypes,
# plugin). Relative to the prefix, or absolute; a packager may point it at
# Qt's own QML dir (qtpaths6 --query QT_INSTALL_QML), where no import path is
# needed. A STRING, not a PATH: a relative -D value must stay relative.
set(SIGREG_INSTALL_QMLDIR "${CMAKE_INSTALL_LIBDIR}/qml" CACHE STRING
    "QML import dir the Sigreg module is installed into (relative to the prefix, or absolute)")

# The QML component (SIGREG_WITH_QML): the backing library Sigreg::Qml in its
# own export set, and the module `import Sigreg` (Qt 6.4 has no install helper
# for QML modules: the plugin, qmldir and qmltypes are installed by hand). The
# plugin is loaded by the QML engine, never linked: it is not exported.
if(TARGET sigreg_qml)
    install(TARGETS sigreg_qml EXPORT SigregQmlTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
    # Public: sigreg/qml/qmlregistry.h. registryhandler.h and qmlsupport_p.h
    # live in qml/ and are never installed.
    install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/sigreg/qml/
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sigreg/qml
        FILES_MATCHING PATTERN "*.h"
        PATTERN "*_p.h" EXCLUDE)
    install(FILES ${PROJECT_BINARY_DIR}/include/sigreg/sigreg_qml_export.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sigreg)
    install(EXPORT SigregQmlTargets
        NAMESPACE Sigreg::
        FILE SigregQmlTargets.cmake
        DESTINATION ${SIGREG_CMAKE_INSTALL_DIR})

    get_target_property(_sigreg_qml_module_dir sigreg_qml QT_QML_MODULE_OUTPUT_DIRECTORY)
    if(NOT _sigreg_qml_module_dir)
        set(_sigreg_qml_module_dir "${PROJECT_BINARY_DIR}/qml/Sigreg")
    endif()
    # The plugin finds the backing library through its RUNPATH: the way from
    # <qmldir>/Sigreg to <libdir>, so that SIGREG_INSTALL_QMLDIR may move.
    foreach(_sigreg_dir IN ITEMS LIBDIR QMLDIR)
        if(_sigreg_dir STREQUAL "LIBDIR")
            set(_sigreg_path "${CMAKE_INSTALL_LIBDIR}")
        else()
            set(_sigreg_path "${SIGREG_INSTALL_QMLDIR}/Sigreg")
        endif()
        if(NOT IS_ABSOLUTE "${_sigreg_path}")
            set(_sigreg_path "${CMAKE_INSTALL_PREFIX}/${_sigreg_path}")
        endif()
        set(_sigreg_abs_${_sigreg_dir} "${_sigreg_path}")
    endforeach()
    file(RELATIVE_PATH _sigreg_plugin_to_lib "${_sigreg_abs_QMLDIR}" "${_sigreg_abs_LIBDIR}")
    string(REGEX REPLACE "/+$" "" _sigreg_plugin_to_lib "${_sigreg_plugin_to_lib}")
    if(_sigreg_plugin_to_lib STREQUAL "")
        set(_sigreg_plugin_to_lib ".")
    endif()
    set_target_properties(sigreg_qmlplugin PROPERTIES INSTALL_RPATH "$ORIGIN/${_sigreg_plugin_to_lib}")
    install(TARGETS sigreg_qmlplugin
        LIBRARY DESTINATION ${SIGREG_INSTALL_QMLDIR}/Sigreg
        RUNTIME DESTINATION ${SIGREG_INSTALL_QMLDIR}/Sigreg)
    install(FILES
        ${_sigreg_qml_module_dir}/qmldir
        ${_sigreg_qml_module_dir}/sigreg_qml.qmltypes
        DESTINATION ${SIGREG_INSTALL_QMLDIR}/Sigreg)
    unset(_sigreg_qml_module_dir)
    unset(_sigreg_dir)
    unset(_sigreg_path)
    unset(_sigreg_abs_LIBDIR)
    unset(_sigreg_abs_QMLDIR)
    unset(_sigreg_plugin_to_lib)
    list(APPEND SIGREG_INSTALLED_COMPONENTS Qml)
endif()

configure_package_config_file(
    ${PROJECT_SOURCE_DIR}/cmake/SigregConfig.cmake.in
    ${PROJECT_BINARY_DIR}/SigregConfig.cmake
    INSTALL_DESTINATION ${SIGREG_CMAKE_INSTALL_DIR}
    PATH_VARS SIGREG_INSTALL_QMLDIR)
write_basic_package_version_file(
    ${PROJECT_BINARY_DIR}/SigregConfigVersion.cmake
    VERSION ${PROJECT_VERSION}
    COMPATIBILITY SameMajorVersion)
install(FILES
    ${PROJECT_BINARY_DIR}/SigregConfig.cmake
    ${PROJECT_BINARY_DIR}/SigregConfigVersion.cmake
    DESTINATION ${SIGREG_CMAKE_INSTALL_DIR})
