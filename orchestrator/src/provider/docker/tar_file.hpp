// One file in a tar archive, in memory: what the Engine API's archive endpoints take and give.
// Our own small ustar/pax code rather than libarchive, whose libxml2 → libicu chain alone would
// be larger than the daemon's whole container image may be. It writes POSIX pax (ustar headers,
// an extended header only for what ustar cannot hold) and reads what engines and GNU tar write:
// ustar, pax ('x' and 'g' headers), GNU long names ('L', 'K') and GNU base-256 numbers.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sandlot::orchestrator {

/// A tar archive holding one regular file `name` (no directories in the name) with `data`, owned
/// by uid and gid 0 with permissions `mode & 07777`, dated now. Throws std::invalid_argument for
/// an empty name or one holding a NUL.
std::string make_single_file_tar(std::string_view name, std::string_view data, unsigned mode);

struct tar_entry {
  bool found = false;
  bool regular = false;  // false for a directory, link or device
  std::string data;
};

/// The first entry of `tar`, its data read only when it is a regular file of at most `limit`
/// bytes; `found` is false for an archive with no entry. Throws std::length_error when the file
/// is larger than `limit`, std::runtime_error when the archive is malformed or truncated.
tar_entry read_first_tar_entry(std::string_view tar, std::size_t limit);

}  // namespace sandlot::orchestrator
