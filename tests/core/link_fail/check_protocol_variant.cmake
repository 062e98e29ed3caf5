# Run by CTest: cmake -DBUILD_DIR=<build tree> -P check_protocol_variant.cmake
# Builds protocol_variant_fences and protocol_variant_seqcst; exactly one must
# link, and the other must fail with an undefined reference naming the
# variant the library lacks.
set(linked "")
set(failed "")
foreach(variant fences seqcst)
    execute_process(
        COMMAND "${CMAKE_COMMAND}" --build "${BUILD_DIR}" --target protocol_variant_${variant}
        RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(rc EQUAL 0)
        list(APPEND linked ${variant})
    else()
        list(APPEND failed ${variant})
        set(failure_output "${out}")
    endif()
endforeach()
list(LENGTH linked n)
if(NOT n EQUAL 1)
    message(FATAL_ERROR "expected exactly one protocol variant to link, linked: '${linked}', failed: '${failed}'\n${failure_output}")
endif()
if(failed STREQUAL "fences")
    set(expected "protocolAsymmetricFences")
else()
    set(expected "protocolSequentiallyConsistent")
endif()
if(NOT failure_output MATCHES "undefined reference to [^\n]*${expected}")
    message(FATAL_ERROR "protocol_variant_${failed} failed, but not with an undefined reference to ${expected}:\n${failure_output}")
endif()
message(STATUS "the library's variant (${linked}) links; the other fails naming ${expected}")
