#include "duration_book.hpp"

#include <algorithm>
#include <cctype>

namespace sandlot::orchestrator {

std::string duration_book::pattern_of(std::string_view run) {
  // A number standing alone between separators ("-4711-") is a run's own; digits inside a word
  // ("e2e") are part of the suite's name.
  auto letter = [&](std::size_t i) { return i < run.size() && std::isalpha(static_cast<unsigned char>(run[i])) != 0; };
  std::string out;
  out.reserve(run.size());
  for (std::size_t i = 0; i < run.size();) {
    if (std::isdigit(static_cast<unsigned char>(run[i])) == 0) {
      out.push_back(run[i++]);
      continue;
    }
    std::size_t end = i;
    while (end < run.size() && std::isdigit(static_cast<unsigned char>(run[end])) != 0) ++end;
    const bool alone = (i == 0 || !letter(i - 1)) && !letter(end);
    if (alone) {
      out.push_back('*');
    } else {
      out.append(run.substr(i, end - i));
    }
    i = end;
  }
  return out;
}

std::string duration_book::key(std::string_view run, std::string_view test) {
  std::string k = pattern_of(run);
  k.push_back('\n');
  k.append(test);
  return k;
}

void duration_book::put(const std::string& k, const entry& e) {
  const std::string pattern = k.substr(0, k.find('\n'));
  auto& p = by_pattern_[pattern];
  if (auto it = entries_.find(k); it != entries_.end()) {
    p.seconds += e.seconds - it->second.seconds;
    all_.seconds += e.seconds - it->second.seconds;
    it->second = e;
    return;
  }
  entries_.emplace(k, e);
  p.seconds += e.seconds;
  ++p.tests;
  all_.seconds += e.seconds;
  ++all_.tests;
}

void duration_book::learn(std::string_view run, std::string_view test, double seconds, double now_unix) {
  if (test.empty() || !(seconds >= 0)) return;
  const std::string k = key(run, test);
  entry e{seconds, 1, now_unix};
  if (auto it = entries_.find(k); it != entries_.end()) {
    e.seconds = it->second.seconds + weight * (seconds - it->second.seconds);
    e.samples = it->second.samples + 1;
  }
  put(k, e);
  dirty_ = true;
  trim();
}

std::optional<double> duration_book::expected(std::string_view run, std::string_view test) const {
  if (test.empty()) return std::nullopt;
  auto it = entries_.find(key(run, test));
  if (it == entries_.end()) return std::nullopt;
  return it->second.seconds;
}

std::optional<double> duration_book::typical(std::string_view run) const {
  if (auto p = by_pattern_.find(pattern_of(run)); p != by_pattern_.end() && p->second.tests > 0) {
    return p->second.seconds / static_cast<double>(p->second.tests);
  }
  if (all_.tests > 0) return all_.seconds / static_cast<double>(all_.tests);
  return std::nullopt;
}

void duration_book::merge(const std::vector<std::pair<std::string, entry>>& other) {
  for (const auto& [k, e] : other) {
    if (k.find('\n') == std::string::npos || !(e.seconds >= 0)) continue;
    auto it = entries_.find(k);
    if (it == entries_.end() || it->second.updated_unix < e.updated_unix) put(k, e);
  }
  trim();
}

std::vector<std::pair<std::string, duration_book::entry>> duration_book::entries() const {
  std::vector<std::pair<std::string, entry>> out(entries_.begin(), entries_.end());
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

void duration_book::trim() {
  // Rare: only past max_entries, and then down to 90 % of it, oldest first.
  if (entries_.size() <= max_entries) return;
  std::vector<std::pair<double, std::string>> by_age;
  by_age.reserve(entries_.size());
  for (const auto& [k, e] : entries_) by_age.emplace_back(e.updated_unix, k);
  std::sort(by_age.begin(), by_age.end());
  const std::size_t drop = entries_.size() - max_entries * 9 / 10;
  for (std::size_t i = 0; i < drop; ++i) {
    const auto& k = by_age[i].second;
    auto it = entries_.find(k);
    auto& p = by_pattern_[k.substr(0, k.find('\n'))];
    p.seconds -= it->second.seconds;
    --p.tests;
    all_.seconds -= it->second.seconds;
    --all_.tests;
    entries_.erase(it);
  }
}

}  // namespace sandlot::orchestrator
