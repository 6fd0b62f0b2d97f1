#include "tar_file.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <optional>

namespace sandlot::orchestrator {

namespace {

constexpr std::size_t block_size = 512;

// Where each field of the 512-byte ustar header lies (POSIX.1-2001, pax "ustar Interchange
// Format"). Numbers are octal text; GNU tar writes base-256 instead when the first byte has its
// high bit set.
struct field {
  std::size_t offset;
  std::size_t length;
};

namespace ustar {
constexpr field name{0, 100};
constexpr field mode{100, 8};
constexpr field uid{108, 8};
constexpr field gid{116, 8};
constexpr field size{124, 12};
constexpr field mtime{136, 12};
constexpr field chksum{148, 8};
constexpr field typeflag{156, 1};
constexpr field magic{257, 6};
constexpr field version{263, 2};
constexpr field devmajor{329, 8};
constexpr field devminor{337, 8};
}  // namespace ustar

std::string_view field_of(std::string_view header, field f) {
  return header.substr(f.offset, f.length);
}

std::size_t padded_size(std::size_t size) {
  return size + (block_size - size % block_size) % block_size;
}

// --- writing ------------------------------------------------------------------------------

// Whether `value` fits in the octal digits of `f`, whose last byte is the terminating NUL.
bool fits_octal(field f, std::uint64_t value) {
  const std::size_t bits = (f.length - 1) * 3;
  return bits >= 64 || (value >> bits) == 0;
}

void put_octal(std::string& header, field f, std::uint64_t value) {
  for (std::size_t i = f.length - 1; i-- > 0;) {
    header[f.offset + i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
  header[f.offset + f.length - 1] = '\0';
}

// GNU base-256: the high bit of the first byte marks it, the rest is the number big-endian.
void put_base256(std::string& header, field f, std::uint64_t value) {
  for (std::size_t i = f.length; i-- > 1;) {
    header[f.offset + i] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
  header[f.offset] = static_cast<char>(0x80);
}

void put_text(std::string& header, field f, std::string_view text) {
  header.replace(f.offset, std::min(text.size(), f.length), text.substr(0, f.length));
}

// The sum of the header's bytes as unsigned chars, its checksum field counted as spaces.
std::uint32_t unsigned_sum(std::string_view header) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < block_size; ++i) {
    const bool in_chksum =
        i >= ustar::chksum.offset && i < ustar::chksum.offset + ustar::chksum.length;
    sum += in_chksum ? std::uint32_t{' '} : std::uint32_t{static_cast<unsigned char>(header[i])};
  }
  return sum;
}

// Some old writers summed the bytes as signed chars; GNU tar accepts either, and so do we.
std::int32_t signed_sum(std::string_view header) {
  std::int32_t sum = 0;
  for (std::size_t i = 0; i < block_size; ++i) {
    const bool in_chksum =
        i >= ustar::chksum.offset && i < ustar::chksum.offset + ustar::chksum.length;
    sum += in_chksum ? std::int32_t{' '}
                     : static_cast<std::int32_t>(static_cast<signed char>(header[i]));
  }
  return sum;
}

std::string make_header(std::string_view name, char typeflag, std::uint64_t size, unsigned mode,
                        std::uint64_t mtime) {
  std::string h(block_size, '\0');
  put_text(h, ustar::name, name);  // a longer name is in the pax header before this one
  put_octal(h, ustar::mode, mode & 07777);
  put_octal(h, ustar::uid, 0);
  put_octal(h, ustar::gid, 0);
  // Too large for octal only past 8 GiB; the pax header carries the size then too.
  if (fits_octal(ustar::size, size)) {
    put_octal(h, ustar::size, size);
  } else {
    put_base256(h, ustar::size, size);
  }
  put_octal(h, ustar::mtime, mtime);
  h[ustar::typeflag.offset] = typeflag;
  put_text(h, ustar::magic, std::string_view("ustar\0", 6));
  put_text(h, ustar::version, "00");
  put_octal(h, ustar::devmajor, 0);
  put_octal(h, ustar::devminor, 0);
  // Six octal digits, NUL, space: what ustar writers traditionally put there.
  put_octal(h, field{ustar::chksum.offset, 7}, unsigned_sum(h));
  h[ustar::chksum.offset + 7] = ' ';
  return h;
}

// "LEN keyword=value\n", where LEN counts the whole record, its own digits included.
std::string pax_record(std::string_view keyword, std::string_view value) {
  const std::size_t rest = 1 + keyword.size() + 1 + value.size() + 1;
  std::size_t length = rest + 1;
  while (fmt::formatted_size("{}", length) + rest != length)
    length = fmt::formatted_size("{}", length) + rest;
  return fmt::format("{} {}={}\n", length, keyword, value);
}

void append_padded(std::string& out, std::string_view data) {
  out.append(data);
  out.append(padded_size(data.size()) - data.size(), '\0');
}

// --- reading ------------------------------------------------------------------------------

[[noreturn]] void malformed(std::size_t header_at, std::string_view what) {
  throw std::runtime_error(
      fmt::format("malformed tar archive: the header at byte {} {}", header_at, what));
}

[[noreturn]] void truncated(std::size_t header_at, std::string_view what) {
  throw std::runtime_error(
      fmt::format("truncated tar archive: the header at byte {} {}", header_at, what));
}

// A numeric header field: octal text (leading spaces, ended by NUL or space or the field's end),
// or GNU base-256. An all-NUL field reads as 0, as GNU tar and libarchive read it.
std::uint64_t read_number(std::string_view header, field f, std::string_view name,
                          std::size_t header_at) {
  const std::string_view text = field_of(header, f);
  const auto first = static_cast<unsigned char>(text[0]);
  if ((first & 0x80) != 0) {
    if ((first & 0x40) != 0) malformed(header_at, fmt::format("has a negative {} field", name));
    std::uint64_t value = first & 0x3fU;
    for (std::size_t i = 1; i < text.size(); ++i) {
      if (value > (std::numeric_limits<std::uint64_t>::max() >> 8))
        malformed(header_at, fmt::format("has a {} field too large to read", name));
      value = (value << 8) | static_cast<unsigned char>(text[i]);
    }
    return value;
  }
  std::size_t i = 0;
  while (i < text.size() && text[i] == ' ') ++i;
  std::uint64_t value = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '7'; ++i) {
    if (value > (std::numeric_limits<std::uint64_t>::max() >> 3))
      malformed(header_at, fmt::format("has a {} field too large to read", name));
    value = value * 8 + static_cast<std::uint64_t>(text[i] - '0');
  }
  if (i < text.size() && text[i] != ' ' && text[i] != '\0') {
    malformed(header_at, fmt::format("has a {} field that is not an octal number", name));
  }
  return value;
}

void check_checksum(std::string_view header, std::size_t header_at) {
  const std::uint64_t stored = read_number(header, ustar::chksum, "checksum", header_at);
  const std::uint32_t sum = unsigned_sum(header);
  const std::int32_t old_sum = signed_sum(header);
  if (stored != sum && !(old_sum >= 0 && stored == static_cast<std::uint64_t>(old_sum))) {
    malformed(header_at, fmt::format("fails its checksum: it records {} but its bytes sum to {}",
                                     stored, sum));
  }
}

// The `size` bytes of data after the header at `header_at`, all of which must be in `tar`.
std::string_view data_of(std::string_view tar, std::size_t header_at, std::uint64_t size) {
  const std::size_t data_at = header_at + block_size;
  if (size > tar.size() - data_at) {
    truncated(header_at, fmt::format("declares {} bytes of data but only {} follow", size,
                                     tar.size() - data_at));
  }
  return tar.substr(data_at, static_cast<std::size_t>(size));
}

// What pax extended ('x') headers and GNU long-name ('L') entries say about the entry after them.
struct overrides {
  std::optional<std::string_view> path;
  std::optional<std::uint64_t> size;
  bool any = false;  // some header is waiting for its entry
};

std::uint64_t pax_decimal(std::string_view text, std::string_view keyword, std::size_t header_at) {
  if (text.empty() || text.size() > 19) {
    malformed(header_at, fmt::format("has a pax {} record that is not a decimal number", keyword));
  }
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      malformed(header_at,
                fmt::format("has a pax {} record that is not a decimal number", keyword));
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return value;
}

void apply_pax_records(std::string_view records, overrides& next, std::size_t header_at) {
  while (!records.empty()) {
    const auto space = records.find(' ');
    if (space == std::string_view::npos || space > 19)
      malformed(header_at, "has a pax record without a length");
    const std::uint64_t length = pax_decimal(records.substr(0, space), "length", header_at);
    if (length <= space + 1 || length > records.size()) {
      malformed(header_at, fmt::format("has a pax record of {} bytes where {} remain", length,
                                       records.size()));
    }
    const std::string_view record = records.substr(0, static_cast<std::size_t>(length));
    if (record.back() != '\n')
      malformed(header_at, "has a pax record that does not end in a newline");
    const std::string_view pair = record.substr(space + 1, record.size() - space - 2);
    const auto equals = pair.find('=');
    if (equals == std::string_view::npos || equals == 0)
      malformed(header_at, "has a pax record without keyword=value");
    const std::string_view keyword = pair.substr(0, equals);
    const std::string_view value = pair.substr(equals + 1);
    // An empty value takes the keyword's override away again (POSIX).
    if (keyword == "path") {
      next.path = value.empty() ? std::nullopt : std::optional(value);
    } else if (keyword == "size") {
      next.size =
          value.empty() ? std::nullopt : std::optional(pax_decimal(value, keyword, header_at));
    } else if (keyword.substr(0, 11) == "GNU.sparse.") {
      // Its data would be a sparse map followed by fragments, not the file's bytes.
      malformed(header_at, "describes a GNU sparse file, which this reader does not support");
    }
    records.remove_prefix(static_cast<std::size_t>(length));
  }
}

bool all_zero(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == '\0'; });
}

}  // namespace

std::string make_single_file_tar(std::string_view name, std::string_view data, unsigned mode) {
  if (name.empty()) throw std::invalid_argument("a tar entry needs a file name");
  if (name.find('\0') != std::string_view::npos)
    throw std::invalid_argument("a tar file name may not hold a NUL");
  const auto since_epoch = std::chrono::duration_cast<std::chrono::seconds>(
      std::chrono::system_clock::now().time_since_epoch());
  // The clamp keeps a clock set before 1970 (or after 2242, octal's end) from wrapping.
  const auto mtime =
      static_cast<std::uint64_t>(std::clamp<std::int64_t>(since_epoch.count(), 0, 077777777777));

  std::string pax;
  if (name.size() > ustar::name.length) pax += pax_record("path", name);
  if (!fits_octal(ustar::size, data.size()))
    pax += pax_record("size", fmt::format("{}", data.size()));

  std::string out;
  out.reserve(3 * block_size + padded_size(pax.size()) + padded_size(data.size()) + 2 * block_size);
  if (!pax.empty()) {
    // The extended header's own name only shows with readers that do not know pax.
    out +=
        make_header(fmt::format("PaxHeaders/{}", name.substr(0, 89)), 'x', pax.size(), 0644, mtime);
    append_padded(out, pax);
  }
  out += make_header(name, '0', data.size(), mode, mtime);
  append_padded(out, data);
  out.append(2 * block_size, '\0');  // the end of the archive
  return out;
}

tar_entry read_first_tar_entry(std::string_view tar, std::size_t limit) {
  overrides next;
  std::size_t at = 0;  // where the header being read starts; always <= tar.size()
  for (;;) {
    const std::size_t left = tar.size() - at;
    // The end: no bytes left, or a zero block (an archive ends with two; one is enough here).
    if (left == 0 || (left >= block_size && all_zero(tar.substr(at, block_size)))) {
      if (next.any) {
        throw std::runtime_error(
            fmt::format("truncated tar archive: it ends at byte {} after an extended header, "
                        "before the entry that header describes",
                        at));
      }
      return {};
    }
    if (left < block_size) truncated(at, fmt::format("has only {} of its 512 bytes", left));
    const std::string_view header = tar.substr(at, block_size);
    check_checksum(header, at);
    const char type = header[ustar::typeflag.offset];
    const std::uint64_t header_size = read_number(header, ustar::size, "size", at);

    // Headers that describe the next entry or the archive rather than being an entry.
    if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
      const std::string_view data = data_of(tar, at, header_size);
      if (type == 'x') apply_pax_records(data, next, at);
      // GNU tar ends the long name with a NUL and counts it in the size.
      if (type == 'L') next.path = data.substr(0, data.find('\0'));
      if (type != 'g') next.any = true;
      const std::size_t skip = block_size + padded_size(data.size());
      if (skip > tar.size() - at) truncated(at, "is missing the padding after its data");
      at += skip;
      continue;
    }

    tar_entry out;
    out.found = true;
    // The prefix field does not matter here: only the name's last byte does.
    const std::string_view name_field = field_of(header, ustar::name);
    const std::string_view name = next.path.value_or(name_field.substr(0, name_field.find('\0')));
    // '\0' is the pre-POSIX regular type and '7' (contiguous) reads as regular (POSIX). Old
    // archivers marked directories only by a trailing slash.
    const bool regular_type = type == '0' || type == '\0' || type == '7';
    out.regular = regular_type && (name.empty() || name.back() != '/');
    if (!out.regular) return out;
    const std::uint64_t size = next.size.value_or(header_size);
    // lease_service answers this one with payload_too_large, by its type.
    if (size > limit) {
      throw std::length_error(
          fmt::format("the file is {} bytes; at most {} can be read at once", size, limit));
    }
    out.data.assign(data_of(tar, at, size));
    return out;
  }
}

}  // namespace sandlot::orchestrator
