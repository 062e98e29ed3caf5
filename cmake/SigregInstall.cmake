# Install rules and the component-aware package config:
#   find_package(Sigreg CONFIG COMPONENTS Core)   ->  Sigreg::Core
#   find_package(Sigreg CONFIG COMPONENTS Qt)     ->  Sigreg::Qt (and Sigreg::Core), if built with Qt
#   find_package(Sigreg CONFIG COMPONENTS Qml)    ->  Sigreg::Qml (and Sigreg::Qt, Sigreg::Core), if built
#                                                     with the QML module; SIGREG_QML_IMPORT_PATH names the
#                                                     installed QML import dir (holding Sigreg/)
include(CMakePackageConfigHelpers)

set(SIGREG_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/Sigreg")
# The components this build installs; SigregConfig.cmake offers only these.
set(SIGREG_INSTALLED_COMPONENTS "")

# sigreg_install_component(<Component> <target> <export header>): the library
# in its own export set (Sigreg<Component>Targets.cmake), so that a consumer
# of one component never loads another's dependencies, and its export header.
# Its public headers are installed by the caller.
function(sigreg_install_component component target export_header)
    install(TARGETS ${target} EXPORT Sigreg${component}Targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
    install(FILES ${PROJECT_BINARY_DIR}/include/sigreg/${export_header}
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sigreg)
    install(EXPORT Sigreg${component}Targets
        NAMESPACE Sigreg::
        FILE Sigreg${component}Targets.cmake
        DESTINATION ${SIGREG_CMAKE_INSTALL_DIR})
    set(SIGREG_INSTALLED_COMPONENTS ${SIGREG_INSTALLED_COMPONENTS} ${component} PARENT_SCOPE)
endfunction()

sigreg_install_component(Core sigreg_core sigreg_export.h)
# Public headers only: detail/ is needed by the inline notify path, but no *_p.h
# or src/ header is ever installed. The Qt and QML headers go with their components.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/sigreg/
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sigreg
    FILES_MATCHING PATTERN "*.h"
    PATTERN "*_p.h" EXCLUDE
    PATTERN "qt" EXCLUDE
    PATTERN "qml" EXCLUDE)

# The Qt component (SIGREG_WITH_QT).
if(TARGET sigreg_qt)
    sigreg_install_component(Qt sigreg_qt sigreg_qt_export.h)
    install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/sigreg/qt/
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sigreg/qt
        FILES_MATCHING PATTERN "*.h")
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
    sigreg_install_component(Qml sigreg_qml sigreg_qml_export.h)
    # Public: sigreg/qml/qmlregistry.h. registryhandler.h and qmlsupport_p.h
    # live in qml/ and are never installed.
    install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/sigreg/qml/
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sigreg/qml
        FILES_MATCHING PATTERN "*.h"
        PATTERN "*_p.h" EXCLUDE)

    get_target_property(_sigreg_qml_module_dir sigreg_qml QT_QML_MODULE_OUTPUT_DIRECTORY)
    if(NOT _sigreg_qml_module_dir)
        set(_sigreg_qml_module_dir "${PROJECT_BINARY_DIR}/qml/Sigreg")
    endif()
    # The plugin finds the backing library through its RUNPATH: the way from
    # <qmldir>/Sigreg to <libdir>, so that SIGREG_INSTALL_QMLDIR may move.
    set(_sigreg_abs_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
    set(_sigreg_abs_QMLDIR "${SIGREG_INSTALL_QMLDIR}/Sigreg")
    foreach(_sigreg_var IN ITEMS _sigreg_abs_LIBDIR _sigreg_abs_QMLDIR)
        if(NOT IS_ABSOLUTE "${${_sigreg_var}}")
            set(${_sigreg_var} "${CMAKE_INSTALL_PREFIX}/${${_sigreg_var}}")
        endif()
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
    unset(_sigreg_var)
    unset(_sigreg_abs_LIBDIR)
    unset(_sigreg_abs_QMLDIR)
    unset(_sigreg_plugin_to_lib)
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
