#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`, installing and starting one if needed (CI machines
# come without one). Idempotent: a working engine is left alone. Quiet on success; on failure it says
# why and shows the tail of the daemon log.
#
# Environment:
#   DOCKERD_LOG        daemon log file            (default /tmp/mlops-dockerd.log)
#   DOCKERD_WAIT       seconds to wait per start  (default 60)
#   DOCKER_STORAGE     force a storage driver     (default: overlay2, then vfs if overlay2 cannot start)
set -euo pipefail

DOCKERD_LOG="${DOCKERD_LOG:-/tmp/mlops-dockerd.log}"
DOCKERD_WAIT="${DOCKERD_WAIT:-60}"
APT_LOG="${APT_LOG:-/tmp/mlops-apt-docker.log}"

die() {
    echo "docker_engine: ERROR: $*" >&2
    exit 1
}

engine_answers() { docker info >/dev/null 2>&1; }

if engine_answers; then
    exit 0
fi

[ "$(id -u)" = 0 ] || die "no Docker engine answers 'docker info' and installing one needs root (run as root, or start dockerd yourself)"

# Debian's docker.io brings dockerd, containerd, runc and iptables. Its postinst tries to start the
# service; on a machine without an init system that is harmless, we start dockerd ourselves below.
if ! command -v dockerd >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    {
        apt-get update -qq &&
            apt-get install -y -qq --no-install-recommends docker.io iptables ca-certificates
    } >"$APT_LOG" 2>&1 || {
        tail -n 30 "$APT_LOG" >&2
        die "installing docker.io with apt-get failed (full log: $APT_LOG)"
    }
    command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is not on PATH"
fi
# The Debian client (/usr/bin/docker) is used when no other client is on PATH.
command -v docker >/dev/null 2>&1 || die "dockerd is installed but no docker client is on PATH"

dockerd_pid=""

stop_our_dockerd() {
    if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
        kill "$dockerd_pid" 2>/dev/null || true
        for _ in $(seq 1 20); do
            kill -0 "$dockerd_pid" 2>/dev/null || break
            sleep 0.5
        done
    fi
    dockerd_pid=""
}

# start_dockerd DRIVER: start dockerd in the background with that storage driver and wait until it
# answers. Returns non-zero (daemon stopped) if it dies or does not answer in time.
start_dockerd() {
    local driver="$1"
    # A dead daemon can leave its pid file behind, and dockerd then refuses to start.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid 2>/dev/null)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    echo "=== $(date -u +%FT%TZ) starting dockerd --storage-driver=$driver" >>"$DOCKERD_LOG"
    # setsid: the daemon must outlive this script and must not get the caller's terminal signals.
    setsid dockerd --storage-driver="$driver" >>"$DOCKERD_LOG" 2>&1 </dev/null &
    dockerd_pid=$!
    local deadline=$((SECONDS + DOCKERD_WAIT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if engine_answers; then
            return 0
        fi
        if ! kill -0 "$dockerd_pid" 2>/dev/null; then
            echo "docker_engine: dockerd (storage driver $driver) exited during startup" >&2
            dockerd_pid=""
            return 1
        fi
        sleep 1
    done
    echo "docker_engine: dockerd (storage driver $driver) did not answer within ${DOCKERD_WAIT}s" >&2
    stop_our_dockerd
    return 1
}

if pgrep -x dockerd >/dev/null 2>&1; then
    # Someone else's daemon is starting up (or is stuck): give it the same bounded wait.
    deadline=$((SECONDS + DOCKERD_WAIT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        engine_answers && exit 0
        sleep 1
    done
    die "a dockerd process runs but 'docker info' does not answer after ${DOCKERD_WAIT}s; see its log"
fi

if [ -n "${DOCKER_STORAGE:-}" ]; then
    drivers=("$DOCKER_STORAGE")
else
    # overlay2 is fast and small; vfs (full copies per layer) works on any filesystem.
    drivers=(overlay2 vfs)
fi

for driver in "${drivers[@]}"; do
    if start_dockerd "$driver"; then
        exit 0
    fi
done

# The daemon logs a lot at info level: show its errors, or its last lines when it logged none.
echo "---- errors in $DOCKERD_LOG ----" >&2
grep -E 'level=(error|fatal)|^failed|Error' "$DOCKERD_LOG" | tail -n 20 >&2 || tail -n 40 "$DOCKERD_LOG" >&2 || true
die "could not start a Docker engine (tried storage drivers: ${drivers[*]}); full log: $DOCKERD_LOG"
