# Build options shared by every target: warnings (as errors on request), sanitizers, fuzzers, ccache.
option(ALKNET_BUILD_TESTS "Build the test suite" ON)
option(ALKNET_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(ALKNET_FUZZ "Build libFuzzer targets (needs clang)" OFF)
# Warnings as errors is for developers and CI (scripts/test.sh turns it on); a user's or a
# packager's build with another compiler or optimisation level must not stop on a new warning.
option(ALKNET_WERROR "Treat compiler warnings as errors" OFF)

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_C_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
endif()

if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE RelWithDebInfo CACHE STRING "Build type" FORCE)
endif()

add_compile_options(-Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
if(ALKNET_WERROR)
  add_compile_options(-Werror)
endif()

if(ALKNET_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

if(ALKNET_FUZZ)
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
