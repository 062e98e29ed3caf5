# Warning flags, sanitizer helpers and sigreg_add_test().

add_library(sigreg_warnings INTERFACE)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(sigreg_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
        -Wno-sign-conversion $<$<BOOL:${SIGREG_WARNINGS_AS_ERRORS}>:-Werror>)
elseif(MSVC)
    target_compile_options(sigreg_warnings INTERFACE /W4 $<$<BOOL:${SIGREG_WARNINGS_AS_ERRORS}>:/WX>)
endif()

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
        ENVIRONMENT "QT_QPA_PLATFORM=offscreen;TSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/tsan.supp ignore_noninstrumented_modules=1 halt_on_error=1 second_deadlock_stack=1;ASAN_OPTIONS=detect_leaks=1:abort_on_error=1;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endfunction()
