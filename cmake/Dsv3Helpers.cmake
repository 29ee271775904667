# dsv3_add_test(NAME <exe> LABELS <unit|integration...> SOURCES ... LIBS ... [TIMEOUT s])
# One GoogleTest executable per test folder; every TEST becomes a CTest test via
# gtest_discover_tests, carrying the folder's labels.
include(GoogleTest)
function(dsv3_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "LABELS;SOURCES;LIBS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_compile_definitions(${T_NAME} PRIVATE
    DSV3_SOURCE_DIR="${CMAKE_SOURCE_DIR}" DSV3_BINARY_DIR="${CMAKE_BINARY_DIR}")
  # Integration tests start clusters on fixed port bases, and every test of a suite runs in
  # its own process: two at once would clash on a port (a suite whose cluster cannot start
  # is reported as skipped, not failed). They take turns; unit tests still run beside them.
  set(lock "")
  if("integration" IN_LIST T_LABELS)
    set(lock RESOURCE_LOCK dsv3_cluster_ports)
  endif()
  gtest_discover_tests(${T_NAME}
    PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT} ${lock}
    DISCOVERY_TIMEOUT 60)
endfunction()
