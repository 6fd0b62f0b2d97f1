// sandlot: the operator's command-line client for orchestratord (docs/cli.md).
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.hpp"

namespace {

using namespace sandlot::cli;

constexpr const char* exit_codes_help =
    "Exit codes: 0 ok; 1 the daemon answered an error, or not ready / not found / ambiguous;\n"
    "2 usage error; 3 the daemon cannot be reached (or closed the event stream).";

// Every command's outcome: its own code, or the documented code of what it threw.
int run_reporting(const std::function<int()>& command) {
  try {
    return command();
  } catch (const sandlot::client::error& e) {
    std::cerr << "sandlot: " << e.what() << "\n";
    if (e.code() == "bad_url") return exit_code::usage;
    return e.status() == 0 ? exit_code::unreachable : exit_code::failed;
  } catch (const usage_error& e) {
    std::cerr << "sandlot: " << e.what() << "\n";
    return exit_code::usage;
  } catch (const daemon_lost& e) {
    std::cerr << "sandlot: " << e.what() << "\n";
    return exit_code::unreachable;
  } catch (const std::exception& e) {
    std::cerr << "sandlot: " << e.what() << "\n";
    return exit_code::failed;
  }
}

struct arguments {
  global_options global;
  std::string run;
  std::string key;
  std::string reason;
  report_options report;
  bool wait = false;
  int timeout_s = 300;
  int slots = 0;
  bool once = false;
};

CLI::App* add(CLI::App& app, const char* name, const char* what, std::function<int()>& chosen,
              std::function<int()> command) {
  CLI::App* sub = app.add_subcommand(name, what);
  sub->footer(exit_codes_help);
  sub->callback([&chosen, command = std::move(command)] { chosen = command; });
  return sub;
}

void add_inspection(CLI::App& app, arguments& a, std::function<int()>& chosen) {
  add(app, "status", "Budget and use, draining, queue, pulls in flight, runs, readiness", chosen,
      [&] { return cmd_status(a.global); });
  add(app, "leases", "The live leases, oldest first", chosen, [&] { return cmd_leases(a.global, a.run); })
      ->add_option("--run", a.run, "Only this run's leases");
  add(app, "why", "Why a lease waits: position, what for, who holds it, the pull's progress", chosen,
      [&] { return cmd_why(a.global, a.key); })
      ->add_option("LEASE|TEST", a.key, "A lease id or name, or a test name among the live leases")
      ->required();
  add(app, "runs", "The runs the daemon remembers", chosen, [&] { return cmd_runs(a.global); });
  auto* report = add(app, "report", "A run's summary, HTML report or JUnit file", chosen,
                     [&] { return cmd_report(a.global, a.report); });
  report->add_option("RUN", a.report.run, "The run id")->required();
  report->add_flag("--open", a.report.open, "Open the HTML report (xdg-open), or print where it is");
  report->add_option("--html", a.report.html_file, "Write the HTML report to FILE");
  report->add_option("--junit", a.report.junit_file, "Write a JUnit XML file of the run's tests to FILE");
  auto* watch = add(app, "watch", "Live view of lanes, queue, pulls and runs (q or Ctrl-C quits)", chosen,
                    [&] { return cmd_watch(a.global, {a.run, a.once}); });
  watch->add_option("--run", a.run, "Only this run's leases in the queue and runs");
  watch->add_flag("--once", a.once, "Print one frame and exit");
}

void add_control(CLI::App& app, arguments& a, std::function<int()>& chosen) {
  auto* drain = add(app, "drain", "Stop admitting leases; running ones finish", chosen,
                    [&] { return cmd_drain(a.global, a.wait, a.timeout_s); });
  auto* wait = drain->add_flag("--wait", a.wait, "Return once no lease holds slots (exit 1 if --timeout passes first)");
  drain->add_option("--timeout", a.timeout_s, "Seconds --wait waits at most (default 300)")
      ->check(CLI::Range(1, 86400))
      ->needs(wait);
  add(app, "resume", "Admit leases again", chosen, [&] { return cmd_resume(a.global); });
  add(app, "slots", "Set the slot budget until the daemon stops", chosen, [&] { return cmd_slots(a.global, a.slots); })
      ->add_option("N", a.slots, "The new budget, 1 to 4096")
      ->required()
      ->check(CLI::Range(1, 4096));
  auto* release = add(app, "release", "End a lease now as the operator (its holder gets 410 lease_gone)", chosen,
                      [&] { return cmd_release(a.global, a.key, a.reason); });
  release->add_option("LEASE|TEST", a.key, "A lease id or name, or a test name among the live leases")->required();
  release->add_option("--reason", a.reason, "Why, shown to the lease's holder");
  add(app, "health", "Exit 0 when the daemon is ready (GET /readyz is 200), else 1; quiet", chosen,
      [&] { return cmd_health(a.global); });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sandlot: operate an orchestratord (docs/cli.md)"};
  app.footer(exit_codes_help);
  app.require_subcommand(1);
  app.fallthrough();  // global options may come after the subcommand too
  arguments a;
  app.add_option("--url", a.global.url, "Daemon URL (default: SANDLOT_URL, else http://127.0.0.1:7345)");
  app.add_option("--token-file", a.global.token_file, "File holding the bearer token (default: SANDLOT_TOKEN)");
  app.add_flag("--json", a.global.json, "Print the API's JSON instead of tables");
  std::function<int()> chosen;
  add_inspection(app, a, chosen);
  add_control(app, a, chosen);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? exit_code::ok : exit_code::usage;
  }
  return run_reporting(chosen);
}
