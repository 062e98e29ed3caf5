# Run by CTest: cmake -DBUILD_DIR=<build tree> -DSOURCE=<guard_discarded.cpp> -P check_guard_discarded.cmake
# Builds compile_fail_guard_discarded (-Werror=unused-result); the build must
# fail with a diagnostic naming [[nodiscard]] on each line marked "discarded".
execute_process(
    COMMAND "${CMAKE_COMMAND}" --build "${BUILD_DIR}" --target compile_fail_guard_discarded
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
    message(FATAL_ERROR "discarding a sigreg::Guard compiled without a diagnostic: [[nodiscard]] is missing")
endif()
file(STRINGS "${SOURCE}" lines)
set(n 0)
set(marked 0)
foreach(line IN LISTS lines)
    math(EXPR n "${n} + 1")
    if(line MATCHES "// discarded$")
        math(EXPR marked "${marked} + 1")
        if(NOT out MATCHES "guard_discarded\\.cpp:${n}:[0-9]+: [^\n]*nodiscard")
            message(FATAL_ERROR "no [[nodiscard]] diagnostic for line ${n}: ${line}\n${out}")
        endif()
    endif()
endforeach()
if(marked EQUAL 0)
    message(FATAL_ERROR "no line of ${SOURCE} is marked 'discarded'")
endif()
message(STATUS "discarding a guard is diagnosed on all ${marked} marked lines")
