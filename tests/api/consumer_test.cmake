# Installs the build tree into a stage directory, then uses the staged
# hmalloc as a consumer would: find_package (consumer/) and pkg-config.
#
# cmake -DBUILD_DIR=<hmalloc build> -DCONSUMER_DIR=<consumer source>
#       -DWORK_DIR=<scratch> -DGENERATOR=<cmake generator> -DC_COMPILER=<cc>
#       -DBUILD_TYPE=<type> -DPKG_CONFIG=<pkg-config> -P consumer_test.cmake
cmake_minimum_required(VERSION 3.25)

foreach(var BUILD_DIR CONSUMER_DIR WORK_DIR GENERATOR C_COMPILER PKG_CONFIG)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "consumer_test.cmake: ${var} is not set")
  endif()
endforeach()

# run(<what> COMMAND...): runs the command; fails the test on a non-zero
# exit, showing its output. Sets run_output.
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
    ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${ARGN}\n${out}\n${err}")
  endif()
  set(run_output "${out}" PARENT_SCOPE)
endfunction()

set(stage ${WORK_DIR}/stage)
file(REMOVE_RECURSE ${WORK_DIR})

# The libraries must exist before they are installed: a no-op when the
# build is up to date, as it is when ctest runs after `cmake --build`.
run("building hmalloc" ${CMAKE_COMMAND} --build ${BUILD_DIR} --target hmalloc hmalloc_static)
run("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${stage})

# GNUInstallDirs picks lib or lib/<multiarch>: find what was installed.
file(GLOB_RECURSE pc_files ${stage}/*/hmalloc.pc)
list(LENGTH pc_files pc_count)
if(NOT pc_count EQUAL 1)
  message(FATAL_ERROR "expected one installed hmalloc.pc under ${stage}, found: ${pc_files}")
endif()
get_filename_component(pc_dir ${pc_files} DIRECTORY)
get_filename_component(lib_dir ${pc_dir} DIRECTORY)
foreach(f ${lib_dir}/libhmalloc.so ${lib_dir}/libhmalloc.a ${stage}/include/hmalloc.h
    ${lib_dir}/cmake/hmalloc/hmallocConfig.cmake)
  if(NOT EXISTS ${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()

# find_package(hmalloc) + hmalloc::hmalloc.
set(consumer_build ${WORK_DIR}/consumer-build)
run("configuring the consumer" ${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${consumer_build}
  -G ${GENERATOR} -DCMAKE_C_COMPILER=${C_COMPILER} -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
  -DCMAKE_PREFIX_PATH=${stage} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
file(STRINGS ${consumer_build}/CMakeCache.txt found_dir REGEX "^hmalloc_DIR:")
string(FIND "${found_dir}" "${stage}/" at)
if(NOT at GREATER -1)
  message(FATAL_ERROR "find_package found another hmalloc: ${found_dir}")
endif()
run("building the consumer" ${CMAKE_COMMAND} --build ${consumer_build})
run("running the consumer" ${consumer_build}/consumer)
if(NOT run_output MATCHES "consumer: ok")
  message(FATAL_ERROR "the consumer printed: ${run_output}")
endif()

# pkg-config, plain: the .pc is found and complete.
run("pkg-config" ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pc_dir}
  ${PKG_CONFIG} --cflags --libs hmalloc)
if(NOT run_output MATCHES "-lhmalloc")
  message(FATAL_ERROR "pkg-config --libs hmalloc gave: ${run_output}")
endif()
# The .pc names the configured prefix; pointed at the stage, its flags must
# build and link the consumer.
run("pkg-config with the stage as prefix" ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pc_dir}
  ${PKG_CONFIG} --define-variable=prefix=${stage} --cflags --libs hmalloc)
string(STRIP "${run_output}" pc_flags)
string(FIND "${pc_flags}" "-I${stage}/include" include_at)
string(FIND "${pc_flags}" "-L${lib_dir}" lib_at)
if(include_at EQUAL -1 OR lib_at EQUAL -1)
  message(FATAL_ERROR "pkg-config flags do not point into the stage: ${pc_flags}")
endif()
separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
run("compiling with pkg-config's flags" ${C_COMPILER} ${CONSUMER_DIR}/main.c ${pc_flags}
  -o ${WORK_DIR}/consumer-pc)
run("running the pkg-config consumer" ${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${lib_dir}
  ${WORK_DIR}/consumer-pc)
if(NOT run_output MATCHES "consumer: ok")
  message(FATAL_ERROR "the pkg-config consumer printed: ${run_output}")
endif()

file(REMOVE_RECURSE ${WORK_DIR})
message(STATUS "find_package and pkg-config consumers: ok (libdir ${lib_dir})")
