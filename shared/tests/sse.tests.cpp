#include <catch2/catch.hpp>

#include <sandlot/sse.hpp>

using sandlot::client::sse_event;
using sandlot::client::sse_parser;

TEST_CASE("a status event is parsed with its type, id and data", "[sse]") {
  sse_parser p;
  auto evs = p.feed("event: status\nid: 412\ndata: {\"seq\":412}\n\n");
  REQUIRE(evs.size() == 1);
  CHECK(evs[0].event == "status");
  CHECK(evs[0].id == "412");
  CHECK(evs[0].data == "{\"seq\":412}");
}

TEST_CASE("an event split across feeds arrives once it is complete", "[sse]") {
  sse_parser p;
  CHECK(p.feed("event: sta").empty());
  CHECK(p.feed("tus\r").empty());
  CHECK(p.feed("\ndata: {}\r\n").empty());
  auto evs = p.feed("\r\n");
  REQUIRE(evs.size() == 1);
  CHECK(evs[0].event == "status");
  CHECK(evs[0].data == "{}");
}

TEST_CASE("keep-alive comments dispatch nothing", "[sse]") {
  sse_parser p;
  CHECK(p.feed(": keep-alive\n\n: keep-alive\n\n").empty());
  auto evs = p.feed(": hi\ndata: x\n\n");
  REQUIRE(evs.size() == 1);
  CHECK(evs[0].event == "message");
  CHECK(evs[0].data == "x");
}

TEST_CASE("several data lines are joined with newlines and the id persists", "[sse]") {
  sse_parser p;
  auto evs = p.feed("id: 7\ndata: a\ndata:b\n\ndata: c\n\n");
  REQUIRE(evs.size() == 2);
  CHECK(evs[0].data == "a\nb");
  CHECK(evs[0].id == "7");
  CHECK(evs[1].id == "7");
  CHECK(evs[1].event == "message");
}

TEST_CASE("two events in one feed come out in order", "[sse]") {
  sse_parser p;
  auto evs = p.feed("event: status\ndata: 1\n\nevent: status\ndata: 2\n\n");
  REQUIRE(evs.size() == 2);
  CHECK(evs[0].data == "1");
  CHECK(evs[1].data == "2");
}
