# Shared by scripts/run-e2e and scripts/test-all: build, environment and daemon helpers.
# Every service started here logs to a file and is stopped by the pid we recorded.

SANDLOT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SANDLOT_PRESET=${SANDLOT_PRESET:-dev}
SANDLOT_BUILD_DIR=$SANDLOT_ROOT/build/$SANDLOT_PRESET
SANDLOT_LOG_DIR=${SANDLOT_LOG_DIR:-$SANDLOT_ROOT/build/logs}
SANDLOT_DAEMON_PID=
SANDLOT_ENV_OWNED=0

say() { printf '%s: %s\n' "$(basename "$0")" "$*"; }

sandlot_build() {
  say "configuring and building (preset $SANDLOT_PRESET) ..."
  cmake --preset "$SANDLOT_PRESET" >"$SANDLOT_LOG_DIR/configure.log" 2>&1 ||
    { tail -30 "$SANDLOT_LOG_DIR/configure.log"; return 1; }
  cmake --build --preset "$SANDLOT_PRESET" -j "${SANDLOT_BUILD_JOBS:-2}" >"$SANDLOT_LOG_DIR/build.log" 2>&1 ||
    { grep -E 'error|Error' "$SANDLOT_LOG_DIR/build.log" | head -40; return 1; }
}

# Brings the test environment up; remembers whether it was already there, so that
# sandlot_env_down leaves someone else's environment alone.
sandlot_env_up() {
  if docker version >/dev/null 2>&1 && curl -fsS -o /dev/null http://127.0.0.1:5000/v2/ 2>/dev/null &&
     [[ -f "${SANDLOT_E2E_STATE:-/tmp/sandlot-e2e}/env" ]]; then
    SANDLOT_ENV_OWNED=0
  else
    SANDLOT_ENV_OWNED=1
  fi
  "$SANDLOT_ROOT/scripts/e2e-env" up >"$SANDLOT_LOG_DIR/e2e-env.log" 2>&1 ||
    { cat "$SANDLOT_LOG_DIR/e2e-env.log"; return 1; }
  set -a
  # shellcheck disable=SC1091
  . "${SANDLOT_E2E_STATE:-/tmp/sandlot-e2e}/env"
  set +a
}

sandlot_env_down() {
  if [[ "$SANDLOT_ENV_OWNED" == 1 ]]; then
    "$SANDLOT_ROOT/scripts/e2e-env" down >>"$SANDLOT_LOG_DIR/e2e-env.log" 2>&1 || say "e2e-env down failed; see $SANDLOT_LOG_DIR/e2e-env.log"
    SANDLOT_ENV_OWNED=0
  fi
}

# sandlot_daemon_start SLOTS PORT: orchestratord in the background, logging to a file.
sandlot_daemon_start() {
  local slots=$1 port=$2
  SANDLOT_DAEMON_LOG=$SANDLOT_LOG_DIR/orchestratord.log
  # The daemon's own stdout/stderr go to its log, and stdin is closed: nothing it holds keeps
  # the caller's output open.
  "$SANDLOT_BUILD_DIR/orchestrator/orchestratord" --slots "$slots" --listen "127.0.0.1:$port" \
    --instance "sandlot-e2e-$$" --prepull "$SANDLOT_TEST_IMAGE" \
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

# Containers any Sandlot daemon left behind (there should be none).
sandlot_leftovers() {
  docker ps -aq --filter label=sandlot.daemon | wc -l
}
