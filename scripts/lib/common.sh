# Shared by scripts/run-e2e and scripts/test-all: build, environment and daemon helpers.
# Every service started here logs to a file and is stopped by the pid we recorded.

SANDLOT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SANDLOT_PRESET=${SANDLOT_PRESET:-dev}
SANDLOT_BUILD_DIR=$SANDLOT_ROOT/build/$SANDLOT_PRESET
SANDLOT_LOG_DIR=${SANDLOT_LOG_DIR:-$SANDLOT_ROOT/build/logs}
SANDLOT_DAEMON_PID=
SANDLOT_ENV_OWNED=0
SANDLOT_ENGINE2_OWNED=0
SANDLOT_PODMAN_OWNED=0
declare -a SANDLOT_DAEMON_ARGS=("${SANDLOT_DAEMON_ARGS[@]+"${SANDLOT_DAEMON_ARGS[@]}"}")

say() { printf '%s: %s\n' "$(basename "$0")" "$*"; }

sandlot_build() {
  say "configuring and building (preset $SANDLOT_PRESET) ..."
  cmake --preset "$SANDLOT_PRESET" >"$SANDLOT_LOG_DIR/configure.log" 2>&1 ||
    { tail -30 "$SANDLOT_LOG_DIR/configure.log"; return 1; }
  cmake --build --preset "$SANDLOT_PRESET" -j "${SANDLOT_BUILD_JOBS:-2}" >"$SANDLOT_LOG_DIR/build.log" 2>&1 ||
    { grep -E 'error|Error' "$SANDLOT_LOG_DIR/build.log" | head -40; return 1; }
}

# Brings the test environment up; remembers whether it was already there, so that
# sandlot_env_down leaves someone else's environment alone. SANDLOT_E2E_ENGINES=2 asks for the
# second engine too (scripts/e2e-env up --engines 2); one this call started is stopped again by
# sandlot_env_down even in an environment that was already there.
sandlot_env_up() {
  local env_file=${SANDLOT_E2E_STATE:-/tmp/sandlot-e2e}/env
  if docker version >/dev/null 2>&1 && curl -fsS -o /dev/null http://127.0.0.1:5000/v2/ 2>/dev/null &&
     [[ -f "$env_file" ]]; then
    SANDLOT_ENV_OWNED=0
    if [[ "${SANDLOT_E2E_ENGINES:-1}" == 2 ]] && ! grep -q '^SANDLOT_DOCKER_HOST_2=' "$env_file"; then
      SANDLOT_ENGINE2_OWNED=1
    fi
    if [[ "${SANDLOT_E2E_PODMAN:-0}" == 1 ]] && ! grep -q '^SANDLOT_PODMAN_HOST=' "$env_file"; then
      SANDLOT_PODMAN_OWNED=1
    fi
  else
    SANDLOT_ENV_OWNED=1
    [[ "${SANDLOT_E2E_ENGINES:-1}" != 2 ]] || SANDLOT_ENGINE2_OWNED=1
    [[ "${SANDLOT_E2E_PODMAN:-0}" != 1 ]] || SANDLOT_PODMAN_OWNED=1
  fi
  "$SANDLOT_ROOT/scripts/e2e-env" up >"$SANDLOT_LOG_DIR/e2e-env.log" 2>&1 ||
    { cat "$SANDLOT_LOG_DIR/e2e-env.log"; return 1; }
  set -a
  # shellcheck disable=SC1091
  . "$env_file"
  set +a
}

sandlot_env_down() {
  if [[ "$SANDLOT_ENV_OWNED" == 1 ]]; then
    "$SANDLOT_ROOT/scripts/e2e-env" down >>"$SANDLOT_LOG_DIR/e2e-env.log" 2>&1 || say "e2e-env down failed; see $SANDLOT_LOG_DIR/e2e-env.log"
    SANDLOT_ENV_OWNED=0
  else
    if [[ "$SANDLOT_ENGINE2_OWNED" == 1 ]]; then
      "$SANDLOT_ROOT/scripts/e2e-env" engine2 stop >>"$SANDLOT_LOG_DIR/e2e-env.log" 2>&1 ||
        say "stopping the second engine failed; see $SANDLOT_LOG_DIR/e2e-env.log"
    fi
    if [[ "$SANDLOT_PODMAN_OWNED" == 1 ]]; then
      "$SANDLOT_ROOT/scripts/e2e-env" podman stop >>"$SANDLOT_LOG_DIR/e2e-env.log" 2>&1 ||
        say "stopping the podman service failed; see $SANDLOT_LOG_DIR/e2e-env.log"
    fi
  fi
  SANDLOT_ENGINE2_OWNED=0
  SANDLOT_PODMAN_OWNED=0
}

# sandlot_daemon_start SLOTS PORT: orchestratord in the background, logging to a file. The suite's
# network tests and its shared mock server need host networking, which is opt-in. What it learns
# of test durations stays in SANDLOT_STATE_DIR (default build/state), so the next run of the
# suite is scheduled by it; SANDLOT_DAEMON_ARGS (an array) adds flags.
sandlot_daemon_start() {
  local slots=$1 port=$2
  SANDLOT_DAEMON_LOG=$SANDLOT_LOG_DIR/orchestratord.log
  # The daemon's own stdout/stderr go to its log, and stdin is closed: nothing it holds keeps
  # the caller's output open.
  "$SANDLOT_BUILD_DIR/orchestrator/orchestratord" --slots "$slots" --listen "127.0.0.1:$port" \
    --instance "sandlot-e2e-$$" --prepull "$SANDLOT_TEST_IMAGE" \
    --allow-host-network --state-dir "${SANDLOT_STATE_DIR:-$SANDLOT_ROOT/build/state}" \
    "${SANDLOT_DAEMON_ARGS[@]}" \
    </dev/null >"$SANDLOT_DAEMON_LOG" 2>&1 &
  SANDLOT_DAEMON_PID=$!
  export SANDLOT_URL="http://127.0.0.1:$port"
  local deadline=$((SECONDS + 60))
  until curl -fsS -o /dev/null "$SANDLOT_URL/readyz" 2>/dev/null; do
    if ! kill -0 "$SANDLOT_DAEMON_PID" 2>/dev/null || ((SECONDS > deadline)); then
      say "orchestratord did not become ready; its log:"
      tail -30 "$SANDLOT_DAEMON_LOG"
      return 1
    fi
    sleep 0.2
  done
  say "orchestratord pid $SANDLOT_DAEMON_PID ready at $SANDLOT_URL with $slots slots (log: $SANDLOT_DAEMON_LOG)"
}

sandlot_daemon_stop() {
  [[ -n "$SANDLOT_DAEMON_PID" ]] || return 0
  if kill -0 "$SANDLOT_DAEMON_PID" 2>/dev/null; then
    kill -TERM "$SANDLOT_DAEMON_PID" 2>/dev/null || true
    local deadline=$((SECONDS + 60))
    while kill -0 "$SANDLOT_DAEMON_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$SANDLOT_DAEMON_PID" 2>/dev/null; then
      say "orchestratord did not stop within 60 s; killing it"
      kill -KILL "$SANDLOT_DAEMON_PID" 2>/dev/null || true
    fi
  fi
  wait "$SANDLOT_DAEMON_PID" 2>/dev/null
  local rc=$?
  SANDLOT_DAEMON_PID=
  return "$rc"
}

# Containers any Sandlot daemon left behind (there should be none), on the engine and, when the
# environment has them, on the second engine and in the podman service.
sandlot_leftovers() {
  local n
  n=$(docker ps -aq --filter label=sandlot.daemon | wc -l)
  if [[ -n "${SANDLOT_DOCKER_HOST_2:-}" ]]; then
    n=$((n + $(DOCKER_HOST=$SANDLOT_DOCKER_HOST_2 docker ps -aq --filter label=sandlot.daemon | wc -l)))
  fi
  if [[ -n "${SANDLOT_PODMAN_HOST:-}" && -S "${SANDLOT_PODMAN_HOST#unix://}" ]]; then
    n=$((n + $(curl -fsS --max-time 10 --unix-socket "${SANDLOT_PODMAN_HOST#unix://}" \
      'http://podman/containers/json?all=true&filters=%7B%22label%22%3A%5B%22sandlot.daemon%22%5D%7D' | jq length)))
  fi
  echo "$n"
}

# sandlot_pool_args SLOTS: when the environment has a second engine, appends to
# SANDLOT_DAEMON_ARGS the two engines of a pool that splits SLOTS between them (the larger half on
# the first), so the daemon started next places leases on both (docs/scale-out.md). Says which.
sandlot_pool_args() {
  local slots=$1
  [[ -n "${SANDLOT_DOCKER_HOST_2:-}" ]] || { say "one engine (no second engine in the environment)"; return 0; }
  local two=$((slots / 2))
  local one=$((slots - two))
  ((two >= 1)) || { say "one engine ($slots slot(s) do not split over two)"; return 0; }
  SANDLOT_DAEMON_ARGS+=(--engine "one=$DOCKER_HOST;slots=$one" --engine "two=$SANDLOT_DOCKER_HOST_2;slots=$two")
  say "a pool of two engines: one ($DOCKER_HOST, $one slots) and two ($SANDLOT_DOCKER_HOST_2, $two slots)"
}

# sandlot_run_report RUN: ends the run on the daemon (its fixtures are torn down), saves its
# timeline and HTML report under build/reports/, prints the summary, and checks that each
# once-per-run fixture (SANDLOT_ONCE_FIXTURES) was made exactly once and that every fixture is
# gone. Sets SANDLOT_REPORT_HTML.
sandlot_run_report() {
  local run=$1 dir=$SANDLOT_ROOT/build/reports
  mkdir -p "$dir"
  local json=$dir/$run.json
  SANDLOT_REPORT_HTML=$dir/$run.html
  curl -fsS -X DELETE "$SANDLOT_URL/v1/runs/$run" -o "$json" || { say "could not end run $run"; return 1; }
  curl -fsS "$SANDLOT_URL/v1/runs/$run/report.html" -o "$SANDLOT_REPORT_HTML" ||
    { say "could not fetch the report of run $run"; return 1; }
  jq -r '.summary as $s | .slots_total as $n |
    "run \(.run): \($s.leases) leases, \($s.failed) failed, \($n) slots",
    "  wall \($s.wall_s)s, sum of test times \($s.sum_test_s)s, speedup \($s.speedup)",
    "  ideal max(sum/N, longest) \($s.ideal_s)s, efficiency \($s.efficiency)",
    "  queue time \($s.queue_s)s, pull time \($s.pull_s)s",
    ([.leases[] | select(.engine != "" and .engine != null)] | group_by(.engine) |
      select(length > 0) | "  engines: " + (map("\(.[0].engine) \(length) lease(s)") | join(", "))),
    (.fixtures[] | "  fixture \(.name): made \(.creations) time(s), \(.acquisitions) hold(s), \(.state)")' "$json"
  local bad
  # The suite's run-wide fixtures; its other fixtures are per test (one is remade on purpose).
  bad=$(jq -r --arg names "${SANDLOT_ONCE_FIXTURES:-mock-inference cluster-config}" '
    ($names | split(" ")) as $once |
    ($once[] as $n | select([.fixtures[] | select(.name == $n)] | length != 1) |
      "fixture \($n) appears \([.fixtures[] | select(.name == $n)] | length) time(s) in the run, not once"),
    (.fixtures[] | select((.name as $n | $once | index($n)) and .creations != 1) |
      "fixture \(.name) was made \(.creations) time(s), not once"),
    (.fixtures[] | select(.state != "gone") | "fixture \(.name) is \(.state) after the run ended")' "$json")
  # From the daemon's own records: no exclusive holder of a lock overlapped any other holder.
  local lock
  for lock in ${SANDLOT_CHECK_LOCKS:-cluster-config}; do
    local line
    line=$(jq -r --arg lock "$lock" '
      [.leases[] | select(.admitted_s != null) | {id, a: .admitted_s, e: (.ended_s // 1e18),
        m: (.locks[]? | select(.name == $lock) | .mode)}] as $h |
      ([$h[] | select(.m == "exclusive")] | length) as $x |
      ([$h[] as $w | select($w.m == "exclusive") | $h[] as $o |
        select($o.id != $w.id and $w.a < $o.e and $o.a < $w.e)] | length) as $overlaps |
      "\($h | length) \($x) \($overlaps)"' "$json")
    local holders exclusive overlaps
    read -r holders exclusive overlaps <<<"$line"
    echo "  lock $lock: $holders holder(s), $exclusive exclusive, $overlaps overlap(s) of an exclusive holder"
    if [[ "$overlaps" != 0 ]]; then
      bad+="lock $lock: an exclusive holder overlapped $overlaps other holder(s)"
    fi
  done
  if [[ -n "$bad" ]]; then
    say "ERROR: $bad"
    return 1
  fi
}

# sandlot_junit_failures: prints the failures recorded in the e2e JUnit files (ctest shows
# nothing of them: Catch2 writes its junit report to the file only).
sandlot_junit_failures() {
  local f
  for f in $(grep -l -E '<(failure|error)' "$SANDLOT_BUILD_DIR"/junit/*.xml 2>/dev/null); do
    say "--- $f"
    sed -n '/<testcase/,/<\/testcase>/p' "$f" | head -60
  done
}
