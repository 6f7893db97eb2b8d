#!/usr/bin/env bash
# Install, start and stop the container engine and registry that goldmaster's
# tests and CI use, and build the base images they need.
#
#   scripts/services.sh install       apt packages and the engine configuration
#   scripts/services.sh start         Podman's Docker API and a registry on loopback
#   scripts/services.sh stop          stop both
#   scripts/services.sh base-images   build the local base images
#   scripts/services.sh status        show what is running
#
# Several commands run in order: scripts/services.sh install start base-images
#
# Run as root on Debian 12. Podman serves the Docker Engine API on a Unix
# socket, so the Docker SDK for Python talks to it unchanged. Nothing is pulled
# from a public registry: the base images are built locally with debootstrap.
set -euo pipefail

SOCKET_PATH="${GOLDMASTER_PODMAN_SOCKET:-/tmp/goldmaster-podman.sock}"
REGISTRY_ADDR="${GOLDMASTER_REGISTRY_ADDR:-127.0.0.1:5000}"
STATE_DIR="${GOLDMASTER_SERVICES_DIR:-/tmp/goldmaster-services}"
REGISTRY_DATA="${GOLDMASTER_REGISTRY_DATA:-/tmp/goldmaster-registry-data}"
CACHE_DIR="${GOLDMASTER_CACHE_DIR:-/var/cache/goldmaster}"
DEBIAN_MIRROR="${GOLDMASTER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CONTAINERS_CONF=/etc/containers/containers.conf

BUSYBOX_IMAGE=localhost/busybox:local
PYTHON_IMAGE=localhost/debian-python:bookworm
PYTHON_ROOTFS_TAR="$CACHE_DIR/debian-python-bookworm-rootfs.tar"
IMAGE_PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# crun fails on hosts with cgroups v1 in hybrid mode, where a process may not
# raise its own rlimits. runc works with rlimits at or below the current ones.
CONTAINERS_CONF_TEXT='[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"'

step() {
    printf 'services: %s\n' "$*"
}

die() {
    printf 'services: error: %s\n' "$*" >&2
    exit 1
}

require_root() {
    [[ $(id -u) -eq 0 ]] || die "run as root: $1 needs root"
}

# --- install ---------------------------------------------------------------

install_packages() {
    # apache2-utils provides htpasswd, which the registry tests use to write
    # the password file of a registry that requires credentials; pass, gnupg
    # and golang-docker-credential-helpers give a real Docker credential
    # helper; e2fsprogs makes the small file systems of the full-disk tests.
    local packages=(podman runc buildah skopeo docker-registry debootstrap zstd curl
        busybox-static apache2-utils git pass gnupg golang-docker-credential-helpers e2fsprogs)
    local missing=()
    local package
    for package in "${packages[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed'; then
            missing+=("$package")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        step "packages already installed"
        return
    fi

    step "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
        "${missing[@]}" >/dev/null
    step "packages installed"
}

write_containers_conf() {
    if [[ -f $CONTAINERS_CONF ]] && [[ "$(cat "$CONTAINERS_CONF")" == "$CONTAINERS_CONF_TEXT" ]]; then
        step "$CONTAINERS_CONF already set"
        return
    fi
    mkdir -p "$(dirname "$CONTAINERS_CONF")"
    if [[ -f $CONTAINERS_CONF ]]; then
        cp "$CONTAINERS_CONF" "$CONTAINERS_CONF.before-goldmaster"
        step "kept the previous $CONTAINERS_CONF as $CONTAINERS_CONF.before-goldmaster"
    fi
    printf '%s\n' "$CONTAINERS_CONF_TEXT" >"$CONTAINERS_CONF"
    step "wrote $CONTAINERS_CONF (runtime runc, ulimits nofile and nproc 1024)"
}

cmd_install() {
    require_root install
    install_packages
    write_containers_conf
}

# --- start and stop --------------------------------------------------------

engine_answers() {
    curl -sf --max-time 2 --unix-socket "$SOCKET_PATH" http://localhost/_ping >/dev/null 2>&1
}

registry_answers() {
    curl -sf --max-time 2 "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1
}

pid_alive() {
    local pid_file=$1
    [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

# wait_for NAME CHECK_FUNCTION PID_FILE LOG_FILE: poll for up to 60 s.
wait_for() {
    local name=$1 check=$2 pid_file=$3 log_file=$4
    local attempt
    for attempt in $(seq 1 120); do
        if "$check"; then
            return 0
        fi
        if ! pid_alive "$pid_file"; then
            tail -n 20 "$log_file" >&2 || true
            die "$name exited during start; its log is $log_file"
        fi
        sleep 0.5
    done
    tail -n 20 "$log_file" >&2 || true
    die "$name did not respond within 60 s; its log is $log_file"
}

start_engine() {
    local pid_file="$STATE_DIR/podman.pid" log_file="$STATE_DIR/podman.log"
    if engine_answers; then
        step "engine already answers on unix://$SOCKET_PATH"
        return
    fi
    command -v podman >/dev/null || die "podman not found; run: $0 install"

    rm -f "$SOCKET_PATH"
    setsid nohup podman system service --time=0 "unix://$SOCKET_PATH" \
        >"$log_file" 2>&1 </dev/null &
    echo $! >"$pid_file"
    wait_for "podman system service" engine_answers "$pid_file" "$log_file"
    step "engine answers on unix://$SOCKET_PATH (pid $(cat "$pid_file"))"
}

start_registry() {
    local pid_file="$STATE_DIR/registry.pid" log_file="$STATE_DIR/registry.log"
    local config="$STATE_DIR/registry.yml"
    if registry_answers; then
        step "registry already answers on http://$REGISTRY_ADDR"
        return
    fi
    command -v docker-registry >/dev/null || die "docker-registry not found; run: $0 install"

    mkdir -p "$REGISTRY_DATA"
    cat >"$config" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGISTRY_DATA
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
EOF
    setsid nohup docker-registry serve "$config" >"$log_file" 2>&1 </dev/null &
    echo $! >"$pid_file"
    wait_for "docker-registry" registry_answers "$pid_file" "$log_file"
    step "registry answers on http://$REGISTRY_ADDR (pid $(cat "$pid_file"), data in $REGISTRY_DATA)"
}

cmd_start() {
    mkdir -p "$STATE_DIR"
    start_engine
    start_registry
    step "export DOCKER_HOST=unix://$SOCKET_PATH"
}

stop_process() {
    local name=$1 pid_file=$2
    if ! pid_alive "$pid_file"; then
        rm -f "$pid_file"
        step "$name not running from $STATE_DIR"
        return
    fi

    local pid
    pid=$(cat "$pid_file")
    kill "$pid"
    local attempt
    for attempt in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid"
        step "$name (pid $pid) did not stop within 10 s and was killed"
    else
        step "$name (pid $pid) stopped"
    fi
    rm -f "$pid_file"
}

cmd_stop() {
    stop_process "podman system service" "$STATE_DIR/podman.pid"
    stop_process "docker-registry" "$STATE_DIR/registry.pid"
    if ! engine_answers; then
        rm -f "$SOCKET_PATH"
    fi
}

cmd_status() {
    if engine_answers; then
        step "engine answers on unix://$SOCKET_PATH"
    else
        step "engine does not answer on unix://$SOCKET_PATH"
    fi
    if registry_answers; then
        step "registry answers on http://$REGISTRY_ADDR"
    else
        step "registry does not answer on http://$REGISTRY_ADDR"
    fi
}

# --- base images -----------------------------------------------------------

image_exists() {
    podman image exists "$1"
}

build_busybox_image() {
    if image_exists "$BUSYBOX_IMAGE"; then
        step "$BUSYBOX_IMAGE already exists"
        return
    fi
    [[ -x /bin/busybox ]] || die "/bin/busybox not found; install it with: apt-get install -y busybox-static"

    local root
    root=$(mktemp -d)
    mkdir -p "$root/bin" "$root/tmp"
    cp /bin/busybox "$root/bin/"
    local applet
    for applet in $(/bin/busybox --list); do
        [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
    done
    tar -C "$root" -c . | podman import --quiet \
        --change "ENV $IMAGE_PATH_ENV" --change 'CMD ["/bin/sh"]' \
        - "$BUSYBOX_IMAGE" >/dev/null
    rm -rf "$root"
    step "built $BUSYBOX_IMAGE"
}

build_python_rootfs() {
    if [[ -s $PYTHON_ROOTFS_TAR ]]; then
        step "using the cached root filesystem $PYTHON_ROOTFS_TAR"
        return
    fi
    command -v debootstrap >/dev/null || die "debootstrap not found; run: $0 install"

    local root
    root=$(mktemp -d /tmp/goldmaster-rootfs.XXXXXX)
    step "running debootstrap for Debian bookworm with Python 3.11 (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip \
        bookworm "$root" "$DEBIAN_MIRROR" >"$STATE_DIR/debootstrap.log" 2>&1 ||
        die "debootstrap failed; its log is $STATE_DIR/debootstrap.log"

    # The package cache is not needed in an image and is a third of its size.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    mkdir -p "$CACHE_DIR"
    tar -C "$root" -cf "$PYTHON_ROOTFS_TAR.partial" .
    mv "$PYTHON_ROOTFS_TAR.partial" "$PYTHON_ROOTFS_TAR"
    rm -rf "$root"
    step "cached the root filesystem as $PYTHON_ROOTFS_TAR"
}

build_python_image() {
    if image_exists "$PYTHON_IMAGE"; then
        step "$PYTHON_IMAGE already exists"
        return
    fi
    build_python_rootfs
    podman import --quiet \
        --change "ENV $IMAGE_PATH_ENV" --change 'CMD ["/bin/bash"]' \
        "$PYTHON_ROOTFS_TAR" "$PYTHON_IMAGE" >/dev/null
    step "built $PYTHON_IMAGE"
}

cmd_base_images() {
    require_root base-images
    command -v podman >/dev/null || die "podman not found; run: $0 install"
    mkdir -p "$STATE_DIR"
    build_busybox_image
    build_python_image
}

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
}

run_command() {
    case "$1" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    base-images) cmd_base_images ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

# Several commands run in the order given: install start base-images.
main() {
    if [[ $# -eq 0 ]]; then
        usage >&2
        exit 2
    fi
    local command
    for command in "$@"; do
        run_command "$command"
    done
}

main "$@"
