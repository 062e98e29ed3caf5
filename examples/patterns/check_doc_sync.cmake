# Checks that docs/PATTERNS.md quotes the pattern sources verbatim.
#
#   cmake -DDOC=<docs/PATTERNS.md> -DSOURCE_DIR=<examples/patterns> -P check_doc_sync.cmake
#
# In every *.cpp, *.h and *.qml file under SOURCE_DIR, a region is the lines
# between a line `// [pattern:<name>]` and the next line `// [/pattern:<name>]`
# (markers on lines of their own, indented or not). The region's text, with
# the marker's indentation taken off every line, must appear in DOC exactly
# as it is in the source. Fails listing every region that does not, with its
# first line missing from DOC; fails too on an unterminated region or when
# there is no region at all.
#
# Only string(FIND)/string(SUBSTRING) are used on the text: C++ is full of
# `;` and brackets, which CMake lists would mangle.
cmake_minimum_required(VERSION 3.25)

if(NOT DOC OR NOT SOURCE_DIR)
    message(FATAL_ERROR "usage: cmake -DDOC=<PATTERNS.md> -DSOURCE_DIR=<dir> -P check_doc_sync.cmake")
endif()
if(NOT EXISTS "${DOC}")
    message(FATAL_ERROR "${DOC} does not exist")
endif()
file(READ "${DOC}" doc)

set(begin_tag "// [pattern:")
string(LENGTH "${begin_tag}" begin_tag_length)
set(regions 0)
set(problems 0)

# Sets ${out} to the first non-blank line of `text` that DOC lacks ("" if none).
function(first_missing_line text out)
    set(missing "")
    set(rest "${text}")
    while(NOT rest STREQUAL "")
        string(FIND "${rest}" "\n" eol)
        if(eol EQUAL -1)
            set(line "${rest}")
            set(rest "")
        else()
            string(SUBSTRING "${rest}" 0 ${eol} line)
            math(EXPR next "${eol} + 1")
            string(SUBSTRING "${rest}" ${next} -1 rest)
        endif()
        string(STRIP "${line}" stripped)
        if(NOT stripped STREQUAL "")
            string(FIND "${doc}" "${line}" at)
            if(at EQUAL -1)
                set(missing "${line}")
                break()
            endif()
        endif()
    endwhile()
    set(${out} "${missing}" PARENT_SCOPE)
endfunction()

file(GLOB_RECURSE sources LIST_DIRECTORIES false
    "${SOURCE_DIR}/*.cpp" "${SOURCE_DIR}/*.h" "${SOURCE_DIR}/*.qml")
list(SORT sources)
foreach(source IN LISTS sources)
    file(RELATIVE_PATH shown "${SOURCE_DIR}" "${source}")
    file(READ "${source}" rest)
    while(TRUE)
        string(FIND "${rest}" "${begin_tag}" at)
        if(at EQUAL -1)
            break()
        endif()
        # The marker's indentation: what precedes it on its line (blanks only).
        string(SUBSTRING "${rest}" 0 ${at} before)
        string(FIND "${before}" "\n" line_start REVERSE)
        math(EXPR line_start "${line_start} + 1")
        string(SUBSTRING "${before}" ${line_start} -1 indent)
        # The name, up to `]`; the region starts on the next line.
        math(EXPR name_start "${at} + ${begin_tag_length}")
        string(SUBSTRING "${rest}" ${name_start} -1 rest)
        string(FIND "${rest}" "]" name_end)
        string(FIND "${rest}" "\n" eol)
        if(NOT indent MATCHES "^[ \t]*$" OR name_end EQUAL -1 OR eol EQUAL -1 OR name_end GREATER eol)
            message(SEND_ERROR "${shown}: a malformed `${begin_tag}` marker (it must be alone on its line)")
            math(EXPR problems "${problems} + 1")
            break()
        endif()
        string(SUBSTRING "${rest}" 0 ${name_end} name)
        math(EXPR eol "${eol} + 1")
        string(SUBSTRING "${rest}" ${eol} -1 rest)
        set(end_tag "// [/pattern:${name}]")
        string(FIND "${rest}" "${end_tag}" end_at)
        if(end_at EQUAL -1)
            message(SEND_ERROR "${shown}: region `${name}` has no `${end_tag}`")
            math(EXPR problems "${problems} + 1")
            break()
        endif()
        string(SUBSTRING "${rest}" 0 ${end_at} region)
        string(LENGTH "${end_tag}" end_tag_length)
        math(EXPR after_end "${end_at} + ${end_tag_length}")
        string(SUBSTRING "${rest}" ${after_end} -1 rest)

        # Drop the end marker's indentation, then the common indentation.
        string(REGEX REPLACE "[ \t]+$" "" region "${region}")
        if(NOT indent STREQUAL "")
            set(region "\n${region}")
            string(REPLACE "\n${indent}" "\n" region "${region}")
            string(SUBSTRING "${region}" 1 -1 region)
        endif()
        math(EXPR regions "${regions} + 1")
        string(STRIP "${region}" stripped)
        if(stripped STREQUAL "")
            message(SEND_ERROR "${shown}: region `${name}` is empty")
            math(EXPR problems "${problems} + 1")
            continue()
        endif()
        string(FIND "${doc}" "${region}" found)
        if(found EQUAL -1)
            first_missing_line("${region}" missing)
            if(missing STREQUAL "")
                set(missing "(every line is there, but not together and in this order)")
            endif()
            message(SEND_ERROR "${shown}: region `${name}` is not quoted verbatim in ${DOC}\n"
                               "  first line not found: ${missing}")
            math(EXPR problems "${problems} + 1")
        else()
            message(STATUS "${shown}: `${name}` in sync")
        endif()
    endwhile()
endforeach()

if(regions EQUAL 0)
    message(FATAL_ERROR "no `${begin_tag}...]` region found under ${SOURCE_DIR}")
endif()
if(problems GREATER 0)
    message(FATAL_ERROR "${problems} of ${regions} pattern regions out of sync with ${DOC}")
endif()
message(STATUS "all ${regions} pattern regions are quoted in ${DOC}")
