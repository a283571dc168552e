# Shared build settings for faceid's own targets.

# Warnings are errors on our code in every build type, so `make test` and CI see the same thing.
function(faceid_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror)
  target_compile_definitions(${target} PRIVATE FACEID_VERSION="${PROJECT_VERSION}")
endfunction()

# One precompiled <torch/torch.h>, shared by every target that includes LibTorch (the PCH is
# about 570 MB, so it is built once). A target opts in with faceid_use_torch(target).
if(FACEID_WITH_TORCH)
  add_library(faceid_torch_pch OBJECT ${CMAKE_SOURCE_DIR}/cmake/torch_pch.cc)
  target_link_libraries(faceid_torch_pch PUBLIC ${TORCH_LIBRARIES})
  target_compile_options(faceid_torch_pch PRIVATE -Wall -Wextra -Werror)
  target_compile_definitions(faceid_torch_pch PRIVATE FACEID_VERSION="${PROJECT_VERSION}")
  target_precompile_headers(faceid_torch_pch PRIVATE <torch/torch.h>)
endif()

function(faceid_use_torch target)
  target_link_libraries(${target} PUBLIC ${TORCH_LIBRARIES})
  target_precompile_headers(${target} REUSE_FROM faceid_torch_pch)
endfunction()

# GoogleTest executable from sources; tests are discovered one by one for ctest.
# Usage: faceid_add_test(name SOURCES a.cc b.cc LIBS lib1 lib2 [LABELS l] [FIXTURES f1 f2]
#                        [TIMEOUT s] [TORCH])
function(faceid_add_test name)
  cmake_parse_arguments(T "TORCH" "TIMEOUT" "SOURCES;LIBS;LABELS;FIXTURES" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  faceid_target_defaults(${name})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  if(T_TORCH)
    faceid_use_torch(${name})
  endif()
  target_compile_definitions(${name} PRIVATE
    FACEID_DATA_DIR="${FACEID_DATA_DIR}"
    FACEID_LANDMARK_MODEL="${FACEID_LANDMARK_MODEL}"
    FACEID_CASCADE_DIR="${FACEID_CASCADE_DIR}"
    FACEID_FIXTURE_DIR="${FACEID_FIXTURE_DIR}"
    FACEID_BIN_DIR="${CMAKE_RUNTIME_OUTPUT_DIRECTORY}"
    FACEID_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set(props TIMEOUT ${T_TIMEOUT})
  if(T_FIXTURES)
    list(APPEND props FIXTURES_REQUIRED "${T_FIXTURES}")
  endif()
  if(T_LABELS)
    list(APPEND props LABELS "${T_LABELS}")
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES ${props})
endfunction()
