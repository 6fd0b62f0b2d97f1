// Reports each test's pass/fail to the run report; Catch2WithMain supplies main().
#include <catch2/catch_test_macros.hpp>
#include <sandlot/catch2.hpp>

SANDLOT_REGISTER_OUTCOME_LISTENER()
