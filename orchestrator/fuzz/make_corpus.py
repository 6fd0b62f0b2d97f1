#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (docs/fuzzing.md).

The corpus is checked in; run this after changing the seeds below, then commit what changed:
    orchestrator/fuzz/make_corpus.py
Files are named for what they hold, so a failing seed says what it was meant to exercise. Inputs
the fuzzers found (crashes made into regression seeds) live next to them under their own names and
are not touched by this script.
"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent / "corpus"

# fuzz_protocol: first byte picks the type (index in this order), the rest is the body.
TYPES = ["lease_request", "exec_request", "outcome_request", "fixture_request", "fixture_ready_request"]

LEASE = {"image": "127.0.0.1:5000/busybox:1", "run": "r1", "test": "t1", "request_id": "q1", "slots": 2,
         "ttl_s": 30, "ready_timeout_s": 60, "network": "host", "env": {"A": "1", "B": ""},
         "memory_mb": 512, "cpus": 0.5, "pids_limit": 64, "read_only": True,
         "locks": [{"name": "db", "mode": "exclusive"}, {"name": "cache/1", "mode": "shared"}]}
EXEC = {"argv": ["sh", "-c", "echo hi"], "stdin": "input\n", "env": {"K": "v"}, "workdir": "/tmp",
        "timeout_s": 5}
OUTCOME = {"outcome": "passed"}
FIXTURE = {"name": "postgres", "image": "127.0.0.1:5000/pg:15", "network": "none", "env": {"X": "y"},
           "port": True, "grace_s": 10, "memory_mb": 128, "cpus": 2, "pids_limit": 100}
READY = {"lease": "0123abcd", "data": {"dsn": "postgres://x", "nested": [1, 2.5, None, True, {"k": "v"}]}}

PROTOCOL = {
    "lease_valid": (0, LEASE),
    "lease_minimal": (0, {"image": "x:1"}),
    "lease_missing_image": (0, {"run": "r"}),
    "lease_slots_string": (0, {"image": "x:1", "slots": "2"}),
    "lease_slots_negative": (0, {"image": "x:1", "slots": -1}),
    "lease_memory_huge": (0, {"image": "x:1", "memory_mb": 18446744073709551615}),
    "lease_cpus_exp": (0, {"image": "x:1", "cpus": 1e308}),
    "lease_network_bad": (0, {"image": "x:1", "network": "bridge"}),
    "lease_env_not_string": (0, {"image": "x:1", "env": {"A": 1}}),
    "lease_locks_bad_name": (0, {"image": "x:1", "locks": [{"name": "", "mode": "shared"}]}),
    "lease_locks_not_array": (0, {"image": "x:1", "locks": {"name": "a"}}),
    "lease_nulls": (0, {"image": "x:1", "run": None, "slots": None, "env": None, "locks": None}),
    "exec_valid": (1, EXEC),
    "exec_empty_argv": (1, {"argv": []}),
    "exec_argv_mixed": (1, {"argv": ["ls", 1, None]}),
    "exec_timeout_float": (1, {"argv": ["true"], "timeout_s": 1.5}),
    "outcome_valid": (2, OUTCOME),
    "outcome_other": (2, {"outcome": "flaky"}),
    "outcome_number": (2, {"outcome": 1}),
    "fixture_valid": (3, FIXTURE),
    "fixture_bad_name": (3, {"name": "a b", "image": "x:1"}),
    "fixture_no_image": (3, {"name": "db"}),
    "ready_valid": (4, READY),
    "ready_data_not_object": (4, {"lease": "ab", "data": [1, 2]}),
    "ready_unicode": (4, {"lease": "ab", "data": {"\u00e9\U0001F600": "\u0000"}}),
}
RAW_PROTOCOL = {
    "not_json": (0, b"{image: x}"),
    "array_body": (1, b"[\"ls\"]"),
    "empty_body": (2, b""),
    "truncated": (3, b"{\"name\":\"db\",\"image\":\"x"),
    "deep_nesting": (4, b"{\"lease\":\"a\",\"data\":" + b"[" * 200 + b"]" * 200 + b"}"),
    "bad_utf8": (0, b"{\"image\":\"\xff\xfe\"}"),
    "escaped_surrogate": (1, b"{\"argv\":[\"\\ud800\"]}"),
    "duplicate_keys": (0, b"{\"image\":\"a:1\",\"image\":\"b:2\",\"slots\":1,\"slots\":3}"),
}


def http(method, target, body=b"", headers=None, version="1.1"):
    headers = dict(headers or {})
    if body and "Content-Length" not in headers and "Transfer-Encoding" not in headers:
        headers["Content-Length"] = str(len(body))
    head = f"{method} {target} HTTP/{version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


def j(v):
    return json.dumps(v).encode()


H = {"Host": "127.0.0.1:7345", "Content-Type": "application/json"}
HTTP = {
    "healthz": http("GET", "/healthz", headers=H),
    "readyz": http("GET", "/readyz", headers=H),
    "metrics": http("GET", "/metrics", headers=H),
    "status": http("GET", "/v1/status", headers=H),
    "status_post": http("POST", "/v1/status", headers=H),
    "lease_create": http("POST", "/v1/leases", j(LEASE), H),
    "lease_create_bad_json": http("POST", "/v1/leases", b"{nope", H),
    "lease_get": http("GET", "/v1/leases/0123abcd?wait_s=0", headers=H),
    "lease_get_bad_wait": http("GET", "/v1/leases/0123abcd?wait_s=-1", headers=H),
    "lease_bad_id": http("GET", "/v1/leases/NOT_AN_ID", headers=H),
    "lease_delete": http("DELETE", "/v1/leases/0123abcd", headers=H),
    "lease_put": http("PUT", "/v1/leases/0123abcd", headers=H),
    "renew": http("POST", "/v1/leases/0123abcd/renew", headers=H),
    "exec": http("POST", "/v1/leases/0123abcd/exec", j(EXEC), H),
    "outcome": http("POST", "/v1/leases/0123abcd/outcome", j(OUTCOME), H),
    "fixture_acquire": http("POST", "/v1/leases/0123abcd/fixtures", j(FIXTURE), H),
    "fixture_get": http("GET", "/v1/fixtures/f1?lease=0123abcd&wait_s=1", headers=H),
    "fixture_ready": http("POST", "/v1/fixtures/f1/ready", j(READY), H),
    "fixture_exec": http("POST", "/v1/fixtures/f1/exec?lease=0123abcd", j(EXEC), H),
    "runs": http("GET", "/v1/runs", headers=H),
    "run_get": http("GET", "/v1/runs/r1", headers=H),
    "run_report": http("GET", "/v1/runs/r1/report.html", headers=H),
    "run_delete": http("DELETE", "/v1/runs/r1", headers=H),
    "no_route": http("GET", "/v2/nothing", headers=H),
    "root": http("GET", "/", headers=H),
    "target_utf8": http("GET", "/v1/leases/\u00e9t\u00e9", headers=H),
    "http10_close": http("GET", "/healthz", version="1.0"),
    "keepalive_pipeline": http("GET", "/healthz", headers=H) + http("POST", "/v1/leases", j({"image": "x:1"}), H)
    + http("GET", "/v1/status", headers={**H, "Connection": "close"}),
    "create_then_longpoll": http("POST", "/v1/leases", j({"image": "x:1", "run": "r"}), H)
    + http("GET", "/v1/runs/r", headers=H),
    "chunked_lease": http("POST", "/v1/leases", b"5\r\n{\"ima\r\n" + b"f\r\nge\":\"x:1\",\"run\"\r\n6\r\n:\"r\"}\n\r\n0\r\n\r\n",
                          {**H, "Transfer-Encoding": "chunked"}),
    "chunked_bad_size": http("POST", "/v1/leases", b"zz\r\n{}\r\n0\r\n\r\n", {**H, "Transfer-Encoding": "chunked"}),
    "chunked_extensions": http("POST", "/v1/leases/ab/outcome", b"2;x=y\r\n{}\r\n0\r\nTrailer: 1\r\n\r\n",
                               {**H, "Transfer-Encoding": "chunked"}),
    "huge_content_length": http("POST", "/v1/leases", b"{}", {**H, "Content-Length": "99999999999"}),
    "content_length_overflow": http("POST", "/v1/leases", b"{}", {**H, "Content-Length": "184467440737095516160"}),
    "two_content_lengths": http("POST", "/v1/leases", b"{}", {**H, "Content-Length": "2, 3"}),
    "cl_and_chunked": http("POST", "/v1/leases", b"2\r\n{}\r\n0\r\n\r\n",
                           {**H, "Content-Length": "2", "Transfer-Encoding": "chunked"}),
    "header_folding": b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n",
    "header_too_large": http("GET", "/healthz", headers={**H, "X-Pad": "a" * 17000}),
    "body_over_limit_declared": http("POST", "/v1/leases", b"", {**H, "Content-Length": str(1024 * 1024 + 1)}),
    "bad_method": b"BREW /coffee HTTP/1.1\r\nHost: a\r\n\r\n",
    "bad_version": b"GET /healthz HTTP/9.9\r\nHost: a\r\n\r\n",
    "bare_lf": b"GET /healthz HTTP/1.1\nHost: a\n\n",
    "nul_in_target": b"GET /v1/\x00leases HTTP/1.1\r\nHost: a\r\n\r\n",
    "truncated_header": b"POST /v1/leases HTTP/1.1\r\nContent-Len",
    "truncated_body": http("POST", "/v1/leases", b"{\"image\"", {**H, "Content-Length": "40"}),
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}


def write(target, name, data):
    d = HERE / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


for name, (t, body) in PROTOCOL.items():
    write("fuzz_protocol", name, bytes([t]) + j(body))
for name, (t, body) in RAW_PROTOCOL.items():
    write("fuzz_protocol", name, bytes([t]) + body)
for name, data in HTTP.items():
    write("fuzz_http", name, data)
print(f"wrote {len(PROTOCOL) + len(RAW_PROTOCOL)} fuzz_protocol and {len(HTTP)} fuzz_http seeds under {HERE}")
