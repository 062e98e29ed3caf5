# Warning flags, sanitizer helpers and sigreg_add_test().

add_library(sigreg_warnings INTERFACE)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(sigreg_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
        -Wno-sign-conversion $<$<BOOL:${SIGREG_WARNINGS_AS_ERRORS}>:-Werror>)
elseif(MSVC)
    target_compile_options(sigreg_warnings INTERFACE /W4 $<$<BOOL:${SIGREG_WARNINGS_AS_ERRORS}>:/WX>)
endif()

# The environment every in-tree test runs with: offscreen Qt, and the
# sanitizer options of the asan/tsan presets (inert in other builds). TSan
# gets the suppressions for uninstrumented Qt (see tests/tsan.supp), LSan
# those for a leak Qt makes when out of memory (tests/lsan.supp). A list,
# for set_tests_properties(... ENVIRONMENT "${SIGREG_TEST_ENVIRONMENT}").
set(SIGREG_TEST_ENVIRONMENT
    QT_QPA_PLATFORM=offscreen
    "TSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/tsan.supp ignore_noninstrumented_modules=1 halt_on_error=1 second_deadlock_stack=1"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    "LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan.supp"
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)

# sigreg_add_test(<name> SOURCES <files...> [LIBRARIES <libs...>] [QT] [LABELS <labels...>] [TIMEOUT <s>])
#   One executable per test; QT marks a Qt Test (needs SIGREG_WITH_QT, runs with AUTOMOC).
function(sigreg_add_test name)
    cmake_parse_arguments(ARG "QT" "TIMEOUT" "SOURCES;LIBRARIES;LABELS" ${ARGN})
    add_executable(${name} ${ARG_SOURCES})
    target_link_libraries(${name} PRIVATE Sigreg::Core sigreg_warnings ${ARG_LIBRARIES})
    if(ARG_QT)
        target_link_libraries(${name} PRIVATE Qt6::Test)
        set_target_properties(${name} PROPERTIES AUTOMOC ON)
    endif()
    add_test(NAME ${name} COMMAND ${name})
    if(NOT ARG_TIMEOUT)
        set(ARG_TIMEOUT 120)
    endif()
    set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}"
        ENVIRONMENT "${SIGREG_TEST_ENVIRONMENT}")
endfunction()

# sigreg_setup_library(<target> <EXPORT_NAME> <BASE_NAME> <export header>)
#   What every Sigreg library shares: the export header
#   <build>/include/sigreg/<export header> (macros <BASE_NAME>_EXPORT, and
#   <BASE_NAME>_STATIC_DEFINE for a static build), the include root in-tree
#   and installed, hidden visibility, the warnings, the versioned name and a
#   RUNPATH that finds the sibling Sigreg libraries once installed.
function(sigreg_setup_library target export_name base_name export_header)
    include(GenerateExportHeader)
    generate_export_header(${target}
        BASE_NAME ${base_name}
        EXPORT_FILE_NAME "${PROJECT_BINARY_DIR}/include/sigreg/${export_header}")
    get_target_property(_type ${target} TYPE)
    if(_type STREQUAL "STATIC_LIBRARY")
        target_compile_definitions(${target} PUBLIC ${base_name}_STATIC_DEFINE)
    endif()
    target_include_directories(${target} PUBLIC
        $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
        $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/include>
        $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
    target_link_libraries(${target} PRIVATE $<BUILD_INTERFACE:sigreg_warnings>)
    set_target_properties(${target} PROPERTIES
        EXPORT_NAME ${export_name}
        OUTPUT_NAME ${target}
        CXX_VISIBILITY_PRESET hidden
        VISIBILITY_INLINES_HIDDEN ON
        POSITION_INDEPENDENT_CODE ON
        VERSION ${PROJECT_VERSION}
        SOVERSION ${PROJECT_VERSION_MAJOR}
        INSTALL_RPATH "$ORIGIN")
endfunction()
