// One file in a tar archive, in memory: what the Engine API's archive endpoints take and give.
// libarchive does the format work.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sandlot::orchestrator {

/// A tar archive holding one regular file `name` (no directories in the name) with `data`.
std::string make_single_file_tar(std::string_view name, std::string_view data, unsigned mode);

struct tar_entry {
  bool found = false;
  bool regular = false;  // false for a directory, link or device
  std::string data;
};

/// The first entry of `tar`, its data read only when it is a regular file of at most `limit`
/// bytes. Throws std::runtime_error when the archive cannot be read or the file is too large.
tar_entry read_first_tar_entry(std::string_view tar, std::size_t limit);

}  // namespace sandlot::orchestrator
