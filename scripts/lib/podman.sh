# Podman's Docker-compatible API service as an engine (scripts/e2e-env up --engine podman),
# sourced by scripts/e2e-env, which owns the helpers used here (spawn, stop_pid, pid_is, mounts_under,
# record, log, die).
#
# A rootful `podman system service` with everything of its own: storage root, run root, tmp dir,
# socket, and the three config files given through CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and
# CONTAINERS_REGISTRIES_CONF, so nothing under /etc/containers is read or changed. What Debian's
# podman 4.3 needs on these machines (docs/scale-out.md, "Podman"):
#   - cgroupfs and file events: there is no systemd or journald;
#   - init_path under [engine] pointing at catatonit (the compat API's Init uses that one);
#   - default_ulimits = []: otherwise podman sets RLIMIT_NOFILE to 1048576 in every container,
#     over this machine's hard limit of 20000, and every create fails;
#   - lock_type = "file": the default SHM lock is shared by every rootful podman on the host;
#   - the loopback registry marked insecure (dockerd assumes that for 127.0.0.0/8; podman does not).
# Containers have no network but none/host, so no network backend is ever called.
#
# Containers outlive the service (conmon is their parent): stopping it removes this service's
# containers first, then stops the service by its pid, then checks for conmons and mounts left.
#
# Record keys: PODMAN=started, PODMAN_PID.

PODMAN_DIR=$STATE/podman
PODMAN_SOCK=$PODMAN_DIR/podman.sock
PODMAN_HOST=unix://$PODMAN_SOCK
PODMAN_ROOT=$PODMAN_DIR/root
# podman refuses a run root over 50 characters: a short fixed path, like the second engine's.
PODMAN_RUN=/run/sandlot-podman
PODMAN_RUNROOT=$PODMAN_RUN/run
PODMAN_TMP=$PODMAN_RUN/tmp
PODMAN_LAUNCH_PIDFILE=$PODMAN_DIR/podman.launch.pid
PODMAN_LOG=$STATE/podman.log

podman_api() {
    curl -fsS --max-time "${2:-10}" --unix-socket "$PODMAN_SOCK" "http://podman$1"
}

podman_answers() {
    [[ -S "$PODMAN_SOCK" ]] && podman_api /_ping 3 >/dev/null 2>&1
}

podman_running() {
    local pid
    pid=$(rec PODMAN_PID)
    [[ "$(rec PODMAN)" == started ]] && pid_is "$pid" podman && pid_alive "$pid"
}

podman_init_path() {
    local p
    for p in /usr/libexec/podman/catatonit /usr/bin/catatonit; do
        [[ -x "$p" ]] && { printf '%s\n' "$p"; return 0; }
    done
    return 1
}

podman_write_config() {
    local init=$1
    mkdir -p "$PODMAN_DIR" "$PODMAN_ROOT" "$PODMAN_RUNROOT" "$PODMAN_TMP"
    cat >"$PODMAN_DIR/containers.conf" <<EOF
# Written by scripts/e2e-env (lib/podman.sh); see there for why each setting is here.
[containers]
default_ulimits = []
log_driver = "k8s-file"
init_path = "$init"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
init_path = "$init"
runtime = "runc"
tmp_dir = "$PODMAN_TMP"
lock_type = "file"

[network]
network_backend = "netavark"
EOF
    cat >"$PODMAN_DIR/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$PODMAN_ROOT"
runroot = "$PODMAN_RUNROOT"
EOF
    cat >"$PODMAN_DIR/registries.conf" <<EOF
unqualified-search-registries = []

[[registry]]
location = "$REGISTRY"
insecure = true
EOF
}

# podman_start: starts the service (or finds it running) and waits until it answers.
podman_start() {
    if podman_running; then
        PODMAN_NOTE="podman service (pid $(rec PODMAN_PID)) at $PODMAN_HOST, still running"
        return 0
    fi
    command -v podman >/dev/null 2>&1 ||
        die "podman not found; run scripts/bootstrap (packages podman, catatonit, netavark)"
    local init
    init=$(podman_init_path) || die "catatonit not found; run scripts/bootstrap (package catatonit)"
    if [[ "$(rec PODMAN)" == started ]]; then
        log "podman service recorded but gone; cleaning up after it"
        podman_cleanup
    fi
    podman_write_config "$init"
    rm -f "$PODMAN_SOCK"
    rotate_log "$PODMAN_LOG"
    log "starting podman system service at $PODMAN_HOST (log: $PODMAN_LOG)"
    # Run from its own directory: conmon inherits the service's working directory and writes an
    # `oom` file there when a container is killed for memory (the suite does that on purpose).
    spawn "$PODMAN_LAUNCH_PIDFILE" "$PODMAN_LOG" \
        env -C "$PODMAN_DIR" CONTAINERS_CONF="$PODMAN_DIR/containers.conf" \
        CONTAINERS_STORAGE_CONF="$PODMAN_DIR/storage.conf" \
        CONTAINERS_REGISTRIES_CONF="$PODMAN_DIR/registries.conf" \
        podman --root "$PODMAN_ROOT" --runroot "$PODMAN_RUNROOT" --tmpdir "$PODMAN_TMP" \
        --storage-driver overlay --cgroup-manager cgroupfs --events-backend file \
        --log-level info \
        system service --time=0 "$PODMAN_HOST" ||
        die "could not launch podman system service"
    local pid
    pid=$(read_pidfile "$PODMAN_LAUNCH_PIDFILE")
    REC[PODMAN]=started
    REC[PODMAN_PID]=$pid
    record_save
    if ! wait_answers "$pid" "podman system service" podman_answers; then
        log "podman system service did not come up; last lines of $PODMAN_LOG:"
        tail -n 30 "$PODMAN_LOG" >&2 || true
        podman_stop
        exit 1
    fi
    PODMAN_NOTE="started podman system service (pid $pid, $(podman --version)) at $PODMAN_HOST"
}

# podman_clear: removes every container of the service (all of them are ours: it has its own
# storage), so that no conmon or mount outlives it.
podman_clear() {
    podman_answers || return 0
    local ids id n=0
    ids=$(podman_api '/containers/json?all=true' | jq -r '.[].Id' 2>/dev/null || true)
    for id in $ids; do
        curl -fsS --max-time 30 --unix-socket "$PODMAN_SOCK" -X DELETE \
            "http://podman/containers/$id?force=true&v=true" >/dev/null 2>&1 || true
        n=$((n + 1))
    done
    ((n == 0)) || log "removed $n container(s) from the podman service"
}

podman_stop() {
    podman_clear
    local pid
    pid=$(rec PODMAN_PID)
    [[ -z "$pid" ]] || stop_pid "$pid" podman 15
    podman_cleanup
}

# The conmons of this service's containers: their command line names our run root.
podman_conmons() {
    local p
    for p in /proc/[0-9]*; do
        [[ -r "$p/cmdline" ]] || continue
        [[ "$(tr '\0' '\n' <"$p/cmdline" 2>/dev/null | head -n 1)" == */conmon ]] || continue
        if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$PODMAN_RUNROOT"; then
            printf '%s\n' "${p#/proc/}"
        fi
    done
}

# After the service is gone: conmons left (containers the API could not remove), then mounts.
podman_cleanup() {
    local conmons pid mp
    conmons=$(podman_conmons)
    for pid in $conmons; do
        stop_pid "$pid" conmon 5
    done
    while IFS= read -r mp; do
        [[ -n "$mp" ]] || continue
        umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "warning: could not unmount $mp"
    done < <(mounts_under "$PODMAN_ROOT" "$PODMAN_RUN")
    rm -f "$PODMAN_LAUNCH_PIDFILE" "$PODMAN_SOCK"
    REC[PODMAN]=
    REC[PODMAN_PID]=
    record_save
}
