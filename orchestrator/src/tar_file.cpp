#include "tar_file.hpp"

#include <memory>

#include <archive.h>
#include <archive_entry.h>
#include <fmt/format.h>

namespace sandlot::orchestrator {

namespace {

struct archive_write_closer {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct archive_read_closer {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct entry_closer {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

la_ssize_t append_to_string(archive*, void* out, const void* buffer, size_t length) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(buffer), length);
  return static_cast<la_ssize_t>(length);
}

[[noreturn]] void fail(archive* a, std::string_view what) {
  const char* why = archive_error_string(a);
  throw std::runtime_error(fmt::format("{}: {}", what, why != nullptr ? why : "unknown libarchive error"));
}

}  // namespace

std::string make_single_file_tar(std::string_view name, std::string_view data, unsigned mode) {
  std::string out;
  std::unique_ptr<archive, archive_write_closer> a(archive_write_new());
  if (!a) throw std::runtime_error("libarchive: out of memory");
  if (archive_write_set_format_pax_restricted(a.get()) != ARCHIVE_OK) fail(a.get(), "tar format");
  if (archive_write_set_bytes_in_last_block(a.get(), 1) != ARCHIVE_OK) fail(a.get(), "tar blocking");
  if (archive_write_open(a.get(), &out, nullptr, append_to_string, nullptr) != ARCHIVE_OK) fail(a.get(), "tar open");
  std::unique_ptr<archive_entry, entry_closer> e(archive_entry_new());
  const std::string path(name);
  archive_entry_set_pathname(e.get(), path.c_str());
  archive_entry_set_size(e.get(), static_cast<la_int64_t>(data.size()));
  archive_entry_set_filetype(e.get(), AE_IFREG);
  archive_entry_set_perm(e.get(), static_cast<__LA_MODE_T>(mode & 07777));
  if (archive_write_header(a.get(), e.get()) != ARCHIVE_OK) fail(a.get(), "tar header");
  if (!data.empty() && archive_write_data(a.get(), data.data(), data.size()) != static_cast<la_ssize_t>(data.size())) {
    fail(a.get(), "tar data");
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) fail(a.get(), "tar close");
  return out;
}

tar_entry read_first_tar_entry(std::string_view tar, std::size_t limit) {
  std::unique_ptr<archive, archive_read_closer> a(archive_read_new());
  if (!a) throw std::runtime_error("libarchive: out of memory");
  archive_read_support_format_tar(a.get());
  if (archive_read_open_memory(a.get(), tar.data(), tar.size()) != ARCHIVE_OK) fail(a.get(), "reading the archive");
  archive_entry* e = nullptr;
  tar_entry out;
  const int r = archive_read_next_header(a.get(), &e);
  if (r == ARCHIVE_EOF) return out;
  if (r != ARCHIVE_OK && r != ARCHIVE_WARN) fail(a.get(), "reading the archive");
  out.found = true;
  out.regular = archive_entry_filetype(e) == AE_IFREG;
  if (!out.regular) return out;
  const auto size = archive_entry_size(e);
  if (size < 0 || static_cast<std::uint64_t>(size) > limit) {
    throw std::length_error(fmt::format("the file is {} bytes; at most {} can be read at once", size, limit));
  }
  out.data.resize(static_cast<std::size_t>(size));
  std::size_t got = 0;
  while (got < out.data.size()) {
    const auto n = archive_read_data(a.get(), out.data.data() + got, out.data.size() - got);
    if (n < 0) fail(a.get(), "reading the file from the archive");
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  out.data.resize(got);
  return out;
}

}  // namespace sandlot::orchestrator
