# A second dockerd for the engine-pool tests (--engine), sourced by scripts/e2e-env, which owns the
# helpers used here (spawn, stop_pid, pid_is, mounts_under, record, log, die).
#
# It shares nothing with the first engine that either could disturb: its own socket, pidfile,
# data root, exec root, config file (so /etc/docker/daemon.json never applies), containerd (it
# starts its own, as no system containerd socket exists) and containerd namespaces. Same network
# safety flags as the first: no bridge, no iptables, no masquerading. It starts empty and pulls
# from the loopback registry like any engine of the pool.
#
# Record keys: ENGINE2=started, ENGINE2_PID, ENGINE2_CONTAINERD_PID.

ENGINE2_DIR=$STATE/engine2
ENGINE2_SOCK=$ENGINE2_DIR/docker.sock
ENGINE2_HOST=unix://$ENGINE2_SOCK
ENGINE2_DATA=$ENGINE2_DIR/data
# Short and outside /run/docker: sockets under it (containerd's, libnetwork's) are limited to 108
# bytes, and the first engine's leftover scan must not match it.
ENGINE2_EXEC=/run/sandlot-docker2
ENGINE2_PIDFILE=$ENGINE2_DIR/dockerd.pid
ENGINE2_LAUNCH_PIDFILE=$ENGINE2_DIR/dockerd.launch.pid
ENGINE2_CONFIG=$ENGINE2_DIR/daemon.json
ENGINE2_LOG=$STATE/dockerd2.log

engine2_running() {
    local pid
    pid=$(rec ENGINE2_PID)
    [[ "$(rec ENGINE2)" == started ]] && pid_is "$pid" dockerd && pid_alive "$pid"
}

engine2_shims() {
    local sock=$ENGINE2_EXEC/containerd/containerd.sock p
    for p in /proc/[0-9]*; do
        [[ -r "$p/cmdline" ]] || continue
        if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "-address $sock"; then
            printf '%s\n' "${p#/proc/}"
        fi
    done
}

engine2_unmount_leftovers() {
    local mp
    while IFS= read -r mp; do
        [[ -n "$mp" ]] || continue
        umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "warning: could not unmount $mp"
    done < <(mounts_under "$ENGINE2_DATA" "$ENGINE2_EXEC")
}

# engine2_start: starts it (or finds it running) and waits until it answers.
engine2_start() {
    if engine2_running; then
        ENGINE2_NOTE="second dockerd (pid $(rec ENGINE2_PID)) at $ENGINE2_HOST, still running"
        return 0
    fi
    command -v dockerd >/dev/null 2>&1 || die "dockerd not found; run scripts/bootstrap (package docker.io)"
    if [[ "$(rec ENGINE2)" == started ]]; then
        log "second dockerd recorded but gone; cleaning up after it"
        engine2_cleanup
    fi
    mkdir -p "$ENGINE2_DIR" "$ENGINE2_DATA"
    printf '{}\n' >"$ENGINE2_CONFIG"
    rm -f "$ENGINE2_PIDFILE" "$ENGINE2_SOCK"
    local cpid
    if cpid=$(read_pidfile "$ENGINE2_EXEC/containerd/containerd.pid"); then
        pid_is "$cpid" containerd && pid_alive "$cpid" || rm -f "$ENGINE2_EXEC/containerd/containerd.pid"
    fi
    rotate_log "$ENGINE2_LOG"
    log "starting a second dockerd at $ENGINE2_HOST (log: $ENGINE2_LOG)"
    spawn "$ENGINE2_LAUNCH_PIDFILE" "$ENGINE2_LOG" \
        dockerd \
        --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
        -H "$ENGINE2_HOST" --pidfile "$ENGINE2_PIDFILE" \
        --data-root "$ENGINE2_DATA" --exec-root "$ENGINE2_EXEC" --config-file "$ENGINE2_CONFIG" \
        --containerd-namespace sandlot2 --containerd-plugins-namespace sandlot2.plugins \
        --shutdown-timeout 5 ||
        die "could not launch the second dockerd"
    local pid
    pid=$(read_pidfile "$ENGINE2_LAUNCH_PIDFILE")
    REC[ENGINE2]=started
    REC[ENGINE2_PID]=$pid
    REC[ENGINE2_CONTAINERD_PID]=
    record_save
    if ! wait_answers "$pid" "the second dockerd" engine_answers "$ENGINE2_HOST"; then
        log "the second dockerd did not come up; last lines of $ENGINE2_LOG:"
        tail -n 30 "$ENGINE2_LOG" >&2 || true
        engine2_stop
        exit 1
    fi
    REC[ENGINE2_CONTAINERD_PID]=$(containerd_child_of "$pid")
    record_save
    ENGINE2_NOTE="started a second dockerd (pid $pid) at $ENGINE2_HOST"
}

# engine2_clear: removes what orchestratord left in it and stops what else runs, so its
# shutdown does not wait for containers.
engine2_clear() {
    engine_answers "$ENGINE2_HOST" || return 0
    local ids
    ids=$(docker -H "$ENGINE2_HOST" ps -aq --filter label=sandlot.daemon 2>/dev/null || true)
    if [[ -n "$ids" ]]; then
        log "removing $(echo "$ids" | wc -l) container(s) labelled sandlot.daemon from the second engine"
        echo "$ids" | xargs -r docker -H "$ENGINE2_HOST" rm -f >/dev/null || true
    fi
    ids=$(docker -H "$ENGINE2_HOST" ps -q 2>/dev/null || true)
    [[ -z "$ids" ]] || echo "$ids" | xargs -r docker -H "$ENGINE2_HOST" stop -t 1 >/dev/null || true
}

# engine2_stop: stops the dockerd by its pid and its containerd, as an engine going away would
# (its containers stop; they stay in its data root until it starts again).
engine2_stop() {
    local pid cpid
    pid=$(rec ENGINE2_PID)
    cpid=$(rec ENGINE2_CONTAINERD_PID)
    if [[ -n "$pid" ]]; then
        [[ -n "$cpid" ]] || ! pid_is "$pid" dockerd || cpid=$(containerd_child_of "$pid")
        stop_pid "$pid" dockerd 30
    fi
    REC[ENGINE2_CONTAINERD_PID]=$cpid
    engine2_cleanup
}

# After the dockerd is gone: its containerd, shims and mounts.
engine2_cleanup() {
    local cpid shims
    cpid=$(rec ENGINE2_CONTAINERD_PID)
    if [[ -n "$cpid" ]] && pid_is "$cpid" containerd && pid_alive "$cpid"; then
        stop_pid "$cpid" containerd 10
    fi
    shims=$(engine2_shims)
    if [[ -n "$shims" ]]; then
        log "warning: shims of the second engine still running (pids: $(echo "$shims" | tr '\n' ' '))"
    else
        engine2_unmount_leftovers
    fi
    rm -f "$ENGINE2_PIDFILE" "$ENGINE2_LAUNCH_PIDFILE"
    REC[ENGINE2]=
    REC[ENGINE2_PID]=
    REC[ENGINE2_CONTAINERD_PID]=
    record_save
}
