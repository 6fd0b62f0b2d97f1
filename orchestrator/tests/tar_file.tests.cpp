// The tar code the file endpoints use: our own archives read back, hand-made odd ones (pax and GNU
// headers, base-256, damage), and both directions against the system's GNU tar.
#include "tar_file.hpp"

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

namespace {

using Catch::Matchers::Contains;
using sandlot::orchestrator::make_single_file_tar;
using sandlot::orchestrator::read_first_tar_entry;

constexpr std::size_t block = 512;
constexpr std::size_t typeflag_at = 156;

/// A fresh directory under the temp directory, removed with everything in it when the test ends.
class temp_dir {
 public:
  temp_dir() {
    std::string path = (std::filesystem::temp_directory_path() / "sandlot-tar-XXXXXX").string();
    if (::mkdtemp(path.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = path;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  /// `name` inside the directory, single-quoted for the shell (names here hold no quote).
  std::string quoted(const std::string& name = "") const {
    return "'" + (path_ / name).string() + "'";
  }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct command_result {
  int status = -1;
  std::string out;
};

/// Runs `command` with /bin/sh and returns its exit status and standard output.
command_result run(const std::string& command) {
  command_result r;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) r.out.append(buffer, n);
  r.status = ::pclose(pipe);
  return r;
}

/// Rewrites the checksum of the header at `at` after a test has changed it on purpose.
void fix_checksum(std::string& tar, std::size_t at) {
  unsigned sum = 0;
  for (std::size_t i = 0; i < block; ++i) {
    sum +=
        (i >= 148 && i < 156) ? unsigned{' '} : unsigned{static_cast<unsigned char>(tar[at + i])};
  }
  const std::string text = fmt::format("{:06o}", sum);
  tar.replace(at + 148, 8, text + std::string("\0 ", 2));
}

/// A header of type `type` with `payload` as its data, padded, without the end-of-archive blocks.
std::string header_with(char type, const std::string& payload, const std::string& name = "meta") {
  std::string tar = make_single_file_tar(name, payload, 0644);
  tar.resize(tar.size() - 2 * block);
  tar[typeflag_at] = type;
  fix_checksum(tar, 0);
  return tar;
}

/// A header's name field rewritten (at most 100 bytes), its checksum fixed.
std::string renamed(std::string tar, const std::string& name) {
  tar.replace(0, 100, std::string(100, '\0'));
  tar.replace(0, name.size(), name);
  fix_checksum(tar, 0);
  return tar;
}

std::string every_byte_value(std::size_t size) {
  std::string data(size, '\0');
  for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<char>((i * 7) % 256);
  return data;
}

}  // namespace

// --- our own archives ----------------------------------------------------------------------

TEST_CASE("a file with a short name is one ustar header, its data and two zero blocks",
          "[tar_file]") {
  const std::string tar = make_single_file_tar("note.txt", "hello\n", 0640);
  CHECK(tar.size() == block + block + 2 * block);
  CHECK(tar.substr(0, 9) == std::string("note.txt\0", 9));
  CHECK(tar.substr(100, 8) == std::string("0000640\0", 8));
  CHECK(tar.substr(124, 12) == std::string("00000000006\0", 12));
  CHECK(tar[typeflag_at] == '0');
  CHECK(tar.substr(257, 8) == std::string("ustar") + '\0' + "00");
  CHECK(tar.substr(2 * block) == std::string(2 * block, '\0'));

  const auto entry = read_first_tar_entry(tar, 1024);
  CHECK(entry.found);
  CHECK(entry.regular);
  CHECK(entry.data == "hello\n");
}

TEST_CASE("a name of exactly 100 bytes fits the ustar header without a pax header", "[tar_file]") {
  const std::string name(100, 'a');
  const std::string tar = make_single_file_tar(name, "x", 0644);
  CHECK(tar[typeflag_at] == '0');
  CHECK(tar.substr(0, 100) == name);
  CHECK(read_first_tar_entry(tar, 16).data == "x");
}

TEST_CASE("a name over 100 bytes goes in a pax path record before the file", "[tar_file]") {
  const std::string name = std::string(150, 'n') + ".txt";
  const std::string tar = make_single_file_tar(name, "long\n", 0644);
  REQUIRE(tar[typeflag_at] == 'x');
  // 3 digits + space + "path=" + 154 bytes + newline = 164.
  const std::string record = "164 path=" + name + "\n";
  CHECK(tar.substr(block, record.size()) == record);
  CHECK(tar[2 * block + typeflag_at] == '0');
  CHECK(tar.substr(2 * block, 100) == name.substr(0, 100));

  const auto entry = read_first_tar_entry(tar, 1024);
  CHECK(entry.found);
  CHECK(entry.regular);
  CHECK(entry.data == "long\n");
}

TEST_CASE("a pax record's length counts its own digits where they grow from 3 to 4", "[tar_file]") {
  // " path=" and "\n" are 7 bytes: 989 + 7 + 3 digits is 999; 990 + 7 would be 1000 with 3
  // digits, so it takes 4 and is 1001.
  CHECK(make_single_file_tar(std::string(989, 'a'), "", 0644).substr(block, 4) == "999 ");
  CHECK(make_single_file_tar(std::string(990, 'a'), "", 0644).substr(block, 5) == "1001 ");
  CHECK(read_first_tar_entry(make_single_file_tar(std::string(990, 'a'), "ok", 0644), 16).data ==
        "ok");
}

TEST_CASE("an empty file has a header and no data blocks", "[tar_file]") {
  const std::string tar = make_single_file_tar("empty", "", 0600);
  CHECK(tar.size() == block + 2 * block);
  const auto entry = read_first_tar_entry(tar, 0);
  CHECK(entry.found);
  CHECK(entry.regular);
  CHECK(entry.data.empty());
}

TEST_CASE("binary data with NULs and every byte value reads back unchanged", "[tar_file]") {
  const std::string data = every_byte_value(1000) + std::string(40, '\0');
  const std::string tar = make_single_file_tar("blob.bin", data, 0644);
  CHECK(tar.size() == block + 3 * block + 2 * block);
  CHECK(read_first_tar_entry(tar, data.size()).data == data);
}

TEST_CASE("a file name must be there and hold no NUL", "[tar_file]") {
  CHECK_THROWS_AS(make_single_file_tar("", "x", 0644), std::invalid_argument);
  CHECK_THROWS_AS(make_single_file_tar(std::string("a\0b", 3), "x", 0644), std::invalid_argument);
}

TEST_CASE("a file of exactly the limit is read and one byte more is refused", "[tar_file]") {
  const std::string tar = make_single_file_tar("f", std::string(100, 'z'), 0644);
  CHECK(read_first_tar_entry(tar, 100).data == std::string(100, 'z'));
  // lease_service turns std::length_error into payload_too_large, and shows the message.
  CHECK_THROWS_AS(read_first_tar_entry(tar, 99), std::length_error);
  CHECK_THROWS_WITH(read_first_tar_entry(tar, 99),
                    "the file is 100 bytes; at most 99 can be read at once");
  CHECK_THROWS_AS(read_first_tar_entry(tar, 0), std::length_error);
}

// --- entries that are not regular files ------------------------------------------------------

TEST_CASE("a directory, a link or a device is found but is not a regular file", "[tar_file]") {
  for (const char type : {'5', '1', '2', '3', '4', '6'}) {
    std::string tar = make_single_file_tar("thing", "", 0755);
    tar[typeflag_at] = type;
    fix_checksum(tar, 0);
    const auto entry = read_first_tar_entry(tar, 0);
    CHECK(entry.found);
    CHECK_FALSE(entry.regular);
  }
}

TEST_CASE("a non-regular entry is not refused for its size", "[tar_file]") {
  std::string tar = make_single_file_tar("dir", std::string(600, 'd'), 0755);
  tar[typeflag_at] = '5';
  fix_checksum(tar, 0);
  const auto entry = read_first_tar_entry(tar, 0);
  CHECK(entry.found);
  CHECK_FALSE(entry.regular);
  CHECK(entry.data.empty());
}

TEST_CASE("old regular types count as regular, unless the name ends in a slash", "[tar_file]") {
  for (const char type : {'\0', '7'}) {
    std::string tar = make_single_file_tar("old", "v7", 0644);
    tar[typeflag_at] = type;
    fix_checksum(tar, 0);
    CHECK(read_first_tar_entry(tar, 16).regular);
    CHECK_FALSE(read_first_tar_entry(renamed(tar, "old/"), 16).regular);
  }
}

// --- damage ----------------------------------------------------------------------------------

TEST_CASE("a header whose bytes do not match its checksum is rejected", "[tar_file]") {
  const std::string good = make_single_file_tar("note.txt", "hello\n", 0644);
  std::string changed_name = good;
  changed_name[0] = 'm';
  CHECK_THROWS_WITH(read_first_tar_entry(changed_name, 1024),
                    Contains("header at byte 0") && Contains("fails its checksum"));

  std::string changed_sum = good;
  changed_sum[148] = changed_sum[148] == '1' ? '2' : '1';
  CHECK_THROWS_WITH(read_first_tar_entry(changed_sum, 1024), Contains("checksum"));

  std::string not_octal = good;
  not_octal[150] = '9';
  CHECK_THROWS_WITH(read_first_tar_entry(not_octal, 1024),
                    Contains("checksum field that is not an octal number"));

  CHECK_THROWS_WITH(read_first_tar_entry(std::string(block, 'x'), 1024), Contains("checksum"));
}

TEST_CASE("the pax header of a long name is checked like any header", "[tar_file]") {
  std::string tar = make_single_file_tar(std::string(120, 'l'), "x", 0644);
  tar[block + 10] = 'X';  // in the pax path, which no checksum covers: only the name changes
  CHECK(read_first_tar_entry(tar, 16).data == "x");
  tar[2 * block + 5] = 'X';  // in the file's header
  CHECK_THROWS_WITH(read_first_tar_entry(tar, 16),
                    Contains("header at byte 1024") && Contains("checksum"));
}

TEST_CASE("a truncated archive is rejected and never read past its end", "[tar_file]") {
  const std::string tar = make_single_file_tar("note.txt", std::string(100, 'y'), 0644);
  for (const std::size_t cut : {std::size_t{1}, std::size_t{100}, block - 1}) {
    CHECK_THROWS_WITH(read_first_tar_entry(tar.substr(0, cut), 1024),
                      Contains("truncated tar archive") && Contains("of its 512 bytes"));
  }
  for (const std::size_t cut : {block, block + 1, block + 99}) {
    CHECK_THROWS_WITH(read_first_tar_entry(tar.substr(0, cut), 1024),
                      Contains("truncated tar archive") && Contains("declares 100 bytes of data"));
  }
  // The data is all there; the end-of-archive blocks are not needed for the first entry.
  CHECK(read_first_tar_entry(tar.substr(0, 2 * block), 1024).data == std::string(100, 'y'));

  const std::string long_name = make_single_file_tar(std::string(120, 'l'), "x", 0644);
  CHECK_THROWS_WITH(read_first_tar_entry(long_name.substr(0, block + 50), 16),
                    Contains("truncated"));
  CHECK_THROWS_WITH(read_first_tar_entry(long_name.substr(0, 2 * block), 16),
                    Contains("truncated"));
  CHECK_THROWS_WITH(
      read_first_tar_entry(long_name.substr(0, 2 * block) + std::string(2 * block, '\0'), 16),
      Contains("after an extended header"));
}

TEST_CASE("an archive without entries has nothing to find", "[tar_file]") {
  for (const std::size_t size : {std::size_t{0}, block, 2 * block, 20 * block}) {
    const auto entry = read_first_tar_entry(std::string(size, '\0'), 1024);
    CHECK_FALSE(entry.found);
    CHECK_FALSE(entry.regular);
  }
}

// --- pax and GNU headers, base-256 -----------------------------------------------------------

TEST_CASE("a pax size record overrides the header's size", "[tar_file]") {
  const std::string tar =
      header_with('x', "9 size=4\n") + make_single_file_tar("f", "abcdefgh", 0644);
  CHECK(read_first_tar_entry(tar, 16).data == "abcd");
  CHECK_THROWS_AS(read_first_tar_entry(tar, 3), std::length_error);
  // An empty value takes the override back.
  const std::string undone =
      header_with('x', "9 size=4\n8 size=\n") + make_single_file_tar("f", "abcdefgh", 0644);
  CHECK(read_first_tar_entry(undone, 16).data == "abcdefgh");
}

TEST_CASE("a pax path record ending in a slash makes the entry a directory", "[tar_file]") {
  const std::string tar =
      header_with('x', "15 path=a/b/c/\n") + make_single_file_tar("f", "", 0644);
  CHECK_FALSE(read_first_tar_entry(tar, 16).regular);
}

TEST_CASE("malformed pax records are rejected naming what is wrong", "[tar_file]") {
  const std::string file = make_single_file_tar("f", "abc", 0644);
  CHECK_THROWS_WITH(read_first_tar_entry(header_with('x', "11 size=4\n") + file, 16),
                    Contains("pax record of 11 bytes where 10 remain"));
  CHECK_THROWS_WITH(read_first_tar_entry(header_with('x', "9 size=4x") + file, 16),
                    Contains("does not end in a newline"));
  CHECK_THROWS_WITH(read_first_tar_entry(header_with('x', "9 size=x\n") + file, 16),
                    Contains("pax size record that is not a decimal number"));
  CHECK_THROWS_WITH(read_first_tar_entry(header_with('x', "8 size4\n") + file, 16),
                    Contains("keyword=value"));
  CHECK_THROWS_WITH(read_first_tar_entry(header_with('x', "size=4\n") + file, 16),
                    Contains("length"));
  CHECK_THROWS_WITH(read_first_tar_entry(header_with('x', "22 GNU.sparse.major=1\n") + file, 16),
                    Contains("sparse"));
}

TEST_CASE("global pax headers and GNU long link names are skipped", "[tar_file]") {
  const std::string file = make_single_file_tar("f", "abc", 0644);
  CHECK(read_first_tar_entry(header_with('g', "9 size=1\n") + file, 16).data == "abc");
  CHECK(read_first_tar_entry(header_with('K', std::string(300, 't') + '\0') + file, 16).data ==
        "abc");
}

TEST_CASE("a GNU long name applies to the entry after it", "[tar_file]") {
  const std::string file = make_single_file_tar("f", "abc", 0644);
  CHECK(read_first_tar_entry(header_with('L', std::string(300, 'n') + '\0') + file, 16).data ==
        "abc");
  CHECK_FALSE(
      read_first_tar_entry(header_with('L', std::string(300, 'n') + "/\0") + file, 16).regular);
}

TEST_CASE("a size in GNU base-256 is read and a negative one rejected", "[tar_file]") {
  std::string tar = make_single_file_tar("f", "hello", 0644);
  tar.replace(124, 12, std::string("\x80\0\0\0\0\0\0\0\0\0\0\x03", 12));
  fix_checksum(tar, 0);
  CHECK(read_first_tar_entry(tar, 16).data == "hel");

  tar.replace(124, 12, std::string(12, '\xff'));
  fix_checksum(tar, 0);
  CHECK_THROWS_WITH(read_first_tar_entry(tar, 16), Contains("negative size field"));
}

TEST_CASE("a header checksummed over signed bytes, as old archivers did, is accepted",
          "[tar_file]") {
  std::string tar = make_single_file_tar("f", "x", 0644);
  tar.replace(265, 3, "\xe9t\xe9");  // a uname with bytes above 127
  int sum = 0;
  for (std::size_t i = 0; i < block; ++i)
    sum += (i >= 148 && i < 156) ? ' ' : static_cast<signed char>(tar[i]);
  tar.replace(148, 8, fmt::format("{:06o}", sum) + std::string("\0 ", 2));
  CHECK(read_first_tar_entry(tar, 16).data == "x");
}

// --- GNU tar ---------------------------------------------------------------------------------

TEST_CASE("archives written by GNU tar are read, in ustar, pax and gnu format", "[tar_file]") {
  temp_dir dir;
  const std::string data = every_byte_value(70000);
  write_file(dir / "data.bin", data);
  const std::string long_name = std::string(150, 'q') + ".bin";
  write_file(dir / long_name, data);
  std::filesystem::create_directory(dir / "sub");

  for (const char* format : {"ustar", "pax", "gnu"}) {
    INFO(format);
    REQUIRE(run(fmt::format("tar -C {} --format={} -cf {} data.bin sub", dir.quoted(), format,
                            dir.quoted("short.tar")))
                .status == 0);
    const auto entry = read_first_tar_entry(read_file(dir / "short.tar"), data.size());
    CHECK(entry.found);
    CHECK(entry.regular);
    CHECK(entry.data == data);

    REQUIRE(run(fmt::format("tar -C {} --format={} -cf {} sub", dir.quoted(), format,
                            dir.quoted("dir.tar")))
                .status == 0);
    const auto directory = read_first_tar_entry(read_file(dir / "dir.tar"), 0);
    CHECK(directory.found);
    CHECK_FALSE(directory.regular);
  }

  for (const auto& [format, type] : {std::pair{"pax", 'x'}, std::pair{"gnu", 'L'}}) {
    INFO(format);
    REQUIRE(run(fmt::format("tar -C {} --format={} -cf {} {}", dir.quoted(), format,
                            dir.quoted("long.tar"), long_name))
                .status == 0);
    const std::string tar = read_file(dir / "long.tar");
    CHECK(tar[typeflag_at] == type);
    CHECK(read_first_tar_entry(tar, data.size()).data == data);
  }
}

TEST_CASE("GNU tar's global pax headers and long link names are skipped", "[tar_file]") {
  temp_dir dir;
  write_file(dir / "data.bin", "global\n");
  // GNU tar puts `keyword=value` in a global ('g') header and `keyword:=value` in each file's 'x'.
  REQUIRE(run(fmt::format("tar -C {} --format=pax --pax-option=comment=sandlot -cf {} data.bin",
                          dir.quoted(), dir.quoted("global.tar")))
              .status == 0);
  const std::string global = read_file(dir / "global.tar");
  CHECK(global[typeflag_at] == 'g');
  CHECK(read_first_tar_entry(global, 16).data == "global\n");

  std::filesystem::create_symlink(std::string(150, 't'), dir / "link");
  REQUIRE(
      run(fmt::format("tar -C {} --format=gnu -cf {} link", dir.quoted(), dir.quoted("link.tar")))
          .status == 0);
  const std::string link = read_file(dir / "link.tar");
  CHECK(link[typeflag_at] == 'K');
  const auto entry = read_first_tar_entry(link, 16);
  CHECK(entry.found);
  CHECK_FALSE(entry.regular);
}

TEST_CASE("GNU tar lists and extracts what we write, without complaint", "[tar_file]") {
  temp_dir dir;
  const std::string data = every_byte_value(1000) + std::string(24, '\0');
  const std::string long_name = std::string(150, 'w') + ".bin";
  struct written {
    std::string name;
    std::string data;
    unsigned mode;
    std::string listed_mode;
  };
  for (const auto& w :
       {written{"blob.bin", data, 0750, "-rwxr-x---"}, written{long_name, data, 0644, "-rw-r--r--"},
        written{"empty", "", 0600, "-rw-------"},
        written{std::string(990, 'v'), "v", 0644, "-rw-r--r--"}}) {
    INFO(w.name.size());
    write_file(dir / "ours.tar", make_single_file_tar(w.name, w.data, w.mode));
    const auto listing =
        run(fmt::format("tar -tvf {} 2>{}", dir.quoted("ours.tar"), dir.quoted("err")));
    CHECK(listing.status == 0);
    CHECK(read_file(dir / "err").empty());
    CHECK(listing.out.rfind(w.listed_mode + " 0/0", 0) == 0);
    CHECK_THAT(listing.out, Contains(fmt::format(" {} ", w.data.size())));
    CHECK_THAT(listing.out, Contains(" " + w.name + "\n"));

    const auto names = run(fmt::format("tar -tf {}", dir.quoted("ours.tar")));
    CHECK(names.out == w.name + "\n");

    const auto extracted =
        run(fmt::format("tar -xOf {} 2>{}", dir.quoted("ours.tar"), dir.quoted("err")));
    CHECK(extracted.status == 0);
    CHECK(read_file(dir / "err").empty());
    CHECK(extracted.out == w.data);
  }
}
