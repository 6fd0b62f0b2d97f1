#include "commands.hpp"

#include <spawn.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>

#include <fmt/format.h>

#include "format.hpp"

namespace sandlot::cli {
namespace {

using json = nlohmann::json;

template <class T>
void print_json(const T& value) {
  std::cout << json(value).dump(2) << "\n";
}

std::string read_token(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw usage_error(fmt::format("cannot read the token file '{}'", path));
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  return token;
}

void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  if (!out.flush()) throw command_failed(fmt::format("cannot write '{}'", path));
}

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  std::string_view rest(path);
  while (!rest.empty()) {
    std::size_t colon = rest.find(':');
    std::filesystem::path dir(std::string(rest.substr(0, colon)));
    if (::access((dir / program).c_str(), X_OK) == 0) return true;
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return false;
}

// --open: xdg-open where there is one (a desktop); elsewhere say where the report is.
void open_report(const client::client& c, const std::string& run, const std::string& html) {
  const auto path = std::filesystem::temp_directory_path() / fmt::format("sandlot-report-{}.html", run);
  write_file(path.string(), html);
  std::cout << fmt::format("{}\n{}/v1/runs/{}/report.html\n", path.string(), c.url(), run);
  if (on_path("xdg-open")) {
    // Spawned with an argv, never through a shell: the run id is part of the path.
    std::string program = "xdg-open";
    std::string file = path.string();
    char* argv[] = {program.data(), file.data(), nullptr};
    pid_t pid = 0;
    if (::posix_spawnp(&pid, "xdg-open", nullptr, nullptr, argv, environ) != 0) {
      std::cerr << "xdg-open failed; open the file above\n";
    }
  }
}

}  // namespace

client::client make_client(const global_options& g) {
  client::options opts;
  // Always an explicit URL: the client then never starts a daemon of its own.
  opts.url = g.url.empty() ? client::url_from_env() : g.url;
  if (!g.token_file.empty()) opts.token = read_token(g.token_file);
  opts.request_timeout = std::chrono::seconds{30};
  return client::client(std::move(opts));
}

std::string resolve_lease_id(const client::client& c, const std::string& key) {
  auto matches = match_leases(c.leases(), key);
  if (matches.empty()) return key;
  if (matches.size() == 1) return matches.front().id;
  throw command_failed(fmt::format("'{}' names {} live leases; give one of their ids:\n{}", key, matches.size(),
                                   format_candidates(matches)));
}

int cmd_status(const global_options& g) {
  auto st = make_client(g).status();
  if (g.json) print_json(st);
  else std::cout << format_status(st);
  return exit_code::ok;
}

int cmd_leases(const global_options& g, const std::string& run) {
  auto leases = make_client(g).leases(run);
  if (g.json) print_json(json{{"leases", leases}});
  else std::cout << format_leases(leases);
  return exit_code::ok;
}

int cmd_why(const global_options& g, const std::string& key) {
  auto c = make_client(g);
  auto why = c.why(resolve_lease_id(c, key));
  if (g.json) print_json(why);
  else std::cout << format_why(why);
  return exit_code::ok;
}

int cmd_runs(const global_options& g) {
  auto runs = make_client(g).runs();
  if (g.json) print_json(runs);
  else std::cout << format_runs(runs);
  return exit_code::ok;
}

int cmd_report(const global_options& g, const report_options& o) {
  auto c = make_client(g);
  if (!o.html_file.empty()) write_file(o.html_file, c.report_html(o.run));
  if (!o.junit_file.empty()) write_file(o.junit_file, junit_xml(c.run(o.run)));
  if (o.open) open_report(c, o.run, c.report_html(o.run));
  const bool summary = o.html_file.empty() && o.junit_file.empty() && !o.open;
  if (summary) {
    auto run = c.run(o.run);
    if (g.json) std::cout << run.dump(2) << "\n";
    else std::cout << format_report(run);
  }
  return exit_code::ok;
}

int cmd_drain(const global_options& g, bool wait, int timeout_s) {
  auto c = make_client(g);
  auto d = c.drain(0);
  // One drain call waits at most 300 s (the daemon's cap); ask again until drained or out of time.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{timeout_s};
  while (wait && !d.drained) {
    auto left = std::chrono::duration_cast<std::chrono::seconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    d = c.drain(static_cast<int>(std::min<std::chrono::seconds::rep>(left.count(), 300)));
  }
  if (g.json) print_json(d);
  else std::cout << format_drain(d);
  if (wait && !d.drained) {
    throw command_failed(fmt::format("not drained within {} s: {} slots still in use", timeout_s, d.slots_in_use));
  }
  return exit_code::ok;
}

int cmd_resume(const global_options& g) {
  auto d = make_client(g).resume();
  if (g.json) print_json(d);
  else std::cout << format_drain(d);
  return exit_code::ok;
}

int cmd_slots(const global_options& g, int slots) {
  auto s = make_client(g).set_slots(slots);
  if (g.json) print_json(s);
  else
    std::cout << fmt::format("slots {} (was {}): {} in use, {} queued\n", s.slots_total, s.previous, s.slots_in_use,
                             s.queue_length);
  return exit_code::ok;
}

int cmd_release(const global_options& g, const std::string& key, const std::string& reason) {
  auto c = make_client(g);
  auto l = c.evict(resolve_lease_id(c, key), reason);
  if (g.json) print_json(l);
  else std::cout << format_lease_line(l);
  return exit_code::ok;
}

int cmd_health(const global_options& g) {
  auto r = make_client(g).with_timeout(std::chrono::seconds{5}).ready();
  if (g.json) std::cout << json{{"ready", r.ready}, {"status", r.status}}.dump() << "\n";
  if (r.ready) return exit_code::ok;
  if (!g.json) std::cerr << fmt::format("not ready: {}\n", r.status);
  return exit_code::failed;
}

}  // namespace sandlot::cli
