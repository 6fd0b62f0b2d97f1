# shellcheck shell=bash
# Helpers that build Sandlot's test images without any network access, from
# the host's statically linked busybox (Debian package busybox-static).
#
# Sourced by scripts/e2e-env.  Every function takes the docker command to use
# as an array named by the caller: set SANDLOT_DOCKER=(docker -H unix://...)
# before calling.

# Path of a statically linked busybox on this host.
sandlot_busybox_path() {
    local p
    for p in /bin/busybox /usr/bin/busybox; do
        if [[ -x "$p" ]]; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    return 1
}

# sandlot_make_rootfs DIR [MARKER]
# Fill DIR with a minimal busybox root filesystem.  MARKER, when given, is
# written to /etc/sandlot-image so that images built from otherwise identical
# trees get distinct layers.
sandlot_make_rootfs() {
    local root=$1 marker=${2:-} bb applet
    bb=$(sandlot_busybox_path) || {
        echo "images: no busybox found (install busybox-static)" >&2
        return 1
    }
    mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,root}
    chmod 1777 "$root/tmp"
    chmod 0700 "$root/root"
    cp "$bb" "$root/bin/busybox"
    chmod 0755 "$root/bin/busybox"
    while IFS= read -r applet; do
        [[ -n "$applet" && "$applet" != busybox && "$applet" != */* ]] || continue
        ln -sfn busybox "$root/bin/$applet"
    done < <("$bb" --list)
    cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
    if [[ -n "$marker" ]]; then
        printf '%s\n' "$marker" >"$root/etc/sandlot-image"
    fi
}

# sandlot_import_image DIR IMAGE
# Tar DIR (reproducibly: fixed owner, order and mtime, so the layer digest is
# the same on every build) and import it as IMAGE with CMD ["/bin/sh"].
sandlot_import_image() {
    local root=$1 image=$2
    tar -C "$root" --numeric-owner --owner=0 --group=0 --sort=name \
        --mtime=@0 -cf - . |
        "${SANDLOT_DOCKER[@]}" import -c 'CMD ["/bin/sh"]' - "$image" >/dev/null
}

# sandlot_build_image IMAGE [MARKER]
# Build IMAGE locally from a fresh busybox rootfs.
sandlot_build_image() {
    local image=$1 marker=${2:-} tmp rc=0
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/sandlot-rootfs.XXXXXX")
    sandlot_make_rootfs "$tmp/rootfs" "$marker" &&
        sandlot_import_image "$tmp/rootfs" "$image" || rc=$?
    rm -rf "$tmp"
    return "$rc"
}

# sandlot_local_image_exists IMAGE
sandlot_local_image_exists() {
    "${SANDLOT_DOCKER[@]}" image inspect "$1" >/dev/null 2>&1
}

# sandlot_registry_has REGISTRY REPO TAG
# True when REGISTRY serves the manifest REPO:TAG.  Uses GET, not HEAD, so it
# never adds a "HEAD /v2/.../manifests/..." line to the registry's access log
# (tests count those lines as pulls).
sandlot_registry_has() {
    local registry=$1 repo=$2 tag=$3
    curl -fsS -o /dev/null --max-time 10 \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$registry/v2/$repo/manifests/$tag" 2>/dev/null
}
