// The e2e suite's entry point. Every test leases real sandboxes from the orchestratord named by
// SANDLOT_URL; see README.md for running it by hand and under ctest.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <sandlot/catch2.hpp>

// Each test's pass/fail goes to the daemon's run report.
SANDLOT_REGISTER_OUTCOME_LISTENER()
