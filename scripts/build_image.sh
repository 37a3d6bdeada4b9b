#!/usr/bin/env bash
# Build the ONE image (container/Dockerfile, context = repository root) and print its tag, and only
# its tag, on stdout:   export MLOPS_IMAGE="$(bash scripts/build_image.sh)"
# Everything else goes to stderr; build logs go to files under /tmp (their tail is shown on failure).
#
# The base image:
#   BASE_IMAGE set          use it as is (e.g. a mirror of python:3.11-slim, or an ECR repository).
#   BASE_IMAGE not set      use the Dockerfile's default when it is present locally or can be pulled;
#                           otherwise (no registry reachable, as on CI here) build a Debian bookworm base
#                           locally with debootstrap + `docker import`, cached as LOCAL_BASE_TAG.
#   MLOPS_LOCAL_BASE=1      always use the locally built base.
#
# The local base stands in for python:3.11-slim: Python 3.11 with `python`, `python3`, `pip` and venv on
# PATH, pip allowed to install into the system interpreter (no PEP 668 marker, as in the official
# image), and the host's extra CA certificates (a TLS-intercepting proxy's) so pip reaches PyPI from
# inside `docker build` exactly as it does on the host.
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKERFILE="${MLOPS_DOCKERFILE:-container/Dockerfile}"
IMAGE_REPO="${MLOPS_IMAGE_REPO:-mlops-image}"
LOCAL_BASE_TAG="${LOCAL_BASE_TAG:-mlops-base:bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
HOST_CA_BUNDLE="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
LOG_DIR="${MLOPS_BUILD_LOG_DIR:-/tmp}"
# Bump when the recipe of the local base changes, so a cached base built by an older recipe is rebuilt.
LOCAL_BASE_RECIPE=4

log() { echo "build_image: $*" >&2; }
die() {
    echo "build_image: ERROR: $*" >&2
    exit 1
}
# Run a command with its output in a log file; on failure show the tail and stop.
run_logged() {
    local logfile="$1"
    shift
    if ! "$@" >>"$logfile" 2>&1; then
        echo "---- last lines of $logfile ----" >&2
        tail -n 60 "$logfile" >&2
        die "'$*' failed (full log: $logfile)"
    fi
}

command -v docker >/dev/null 2>&1 || die "no docker client on PATH (run scripts/docker_engine.sh first)"
docker info >/dev/null 2>&1 || die "no Docker engine answers 'docker info' (run scripts/docker_engine.sh first)"
[ -f "$DOCKERFILE" ] || die "$DOCKERFILE not found (run from a checkout of the repository)"

dockerfile_default_base() {
    sed -n 's/^[[:space:]]*ARG[[:space:]]\{1,\}BASE_IMAGE=\([^[:space:]]\{1,\}\).*/\1/p' "$DOCKERFILE" | head -n 1
}

# ---------------------------------------------------------------------------------------------------
# The local base image
# ---------------------------------------------------------------------------------------------------
host_ca_sha() { sha256sum "$HOST_CA_BUNDLE" | cut -c1-16; }

local_base_is_current() {
    local labels
    labels="$(docker image inspect -f '{{index .Config.Labels "mlops.base.recipe"}} {{index .Config.Labels "mlops.base.host_ca"}}' "$LOCAL_BASE_TAG" 2>/dev/null)" || return 1
    [ "$labels" = "$LOCAL_BASE_RECIPE $(host_ca_sha)" ]
}

# Write the PEM certificates of $1 that are not in $2 to $3 (one file). These are the host's own
# additions (e.g. a TLS proxy's CA); stock Debian roots are already in the base.
extra_certificates() {
    python3 - "$1" "$2" "$3" <<'PY'
import re, sys
pem = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
def certs(path):
    with open(path, encoding="ascii", errors="ignore") as f:
        return [c.strip() for c in pem.findall(f.read())]
def key(c):
    return "".join(c.split())
host, base = certs(sys.argv[1]), {key(c) for c in certs(sys.argv[2])}
extra = [c for c in host if key(c) not in base]
with open(sys.argv[3], "w", encoding="ascii") as f:
    f.write("\n".join(extra) + ("\n" if extra else ""))
print(len(extra))
PY
}

build_local_base() {
    local started=$SECONDS
    local logfile="$LOG_DIR/mlops-base-build.log"
    : >"$logfile"
    [ "$(id -u)" = 0 ] || die "building the local base image needs root (debootstrap); or set BASE_IMAGE"
    [ -r "$HOST_CA_BUNDLE" ] || die "host CA bundle $HOST_CA_BUNDLE not readable (set HOST_CA_BUNDLE)"
    if ! command -v debootstrap >/dev/null 2>&1; then
        log "installing debootstrap (apt)"
        export DEBIAN_FRONTEND=noninteractive
        run_logged "$logfile" bash -c 'apt-get install -y -qq --no-install-recommends debootstrap ||
            { apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap; }'
    fi

    local rootfs
    rootfs="$(mktemp -d /tmp/mlops-base-rootfs.XXXXXX)"
    # shellcheck disable=SC2064  # expand now: the trap must remove this very directory
    trap "rm -rf '$rootfs'" EXIT

    log "building local base $LOCAL_BASE_TAG with debootstrap (Debian bookworm, minbase; log: $logfile)"
    run_logged "$logfile" debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
        bookworm "$rootfs" "$DEBIAN_MIRROR"

    # Full bookworm sources (updates and security too), so the Dockerfile can apt-get install.
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb $DEBIAN_SECURITY_MIRROR bookworm-security main
EOF

    # The host's extra CAs (a TLS proxy's) go where update-ca-certificates keeps them, so they survive
    # a later `apt-get install ca-certificates` or `update-ca-certificates` in the Dockerfile.
    local n_extra
    n_extra="$(extra_certificates "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt" \
        "$rootfs/usr/local/share/ca-certificates/mlops-host-extra.crt")"
    if [ "$n_extra" -gt 0 ]; then
        run_logged "$logfile" chroot "$rootfs" update-ca-certificates
    else
        rm -f "$rootfs/usr/local/share/ca-certificates/mlops-host-extra.crt"
    fi
    log "added $n_extra host CA certificate(s) to the base"

    # pip: use the system bundle (which now has the host's CAs) and the host's patience. Deliberately NOT
    # the host's find-links / extra-index-url: those are host paths that do not exist in a build.
    cat >"$rootfs/etc/pip.conf" <<'EOF'
[global]
cert = /etc/ssl/certs/ca-certificates.crt
timeout = 180
disable-pip-version-check = true
EOF
    # python:3.11-slim lets `pip install` write to the system interpreter; Debian marks it
    # externally managed (PEP 668). Behave like the image we stand in for.
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
    # Smaller image: no apt caches or lists (a Dockerfile that apt-installs runs apt-get update first).
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
    # Like the slim images: no documentation or translations (dpkg keeps working without them).
    rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/*

    [ -x "$rootfs/usr/bin/python" ] || die "the base has no python executable (python-is-python3 missing?)"
    chroot "$rootfs" python -c 'import venv, ensurepip, ssl' >>"$logfile" 2>&1 ||
        die "the base's python lacks venv/ensurepip/ssl (log: $logfile)"
    chroot "$rootfs" pip --version >>"$logfile" 2>&1 || die "the base has no working pip (log: $logfile)"

    log "importing the root filesystem as $LOCAL_BASE_TAG"
    tar --numeric-owner -C "$rootfs" -cf - . |
        docker import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
            --change "LABEL mlops.base.recipe=$LOCAL_BASE_RECIPE" \
            --change "LABEL mlops.base.host_ca=$(host_ca_sha)" \
            --change 'LABEL mlops.base.source=debootstrap-bookworm-minbase' \
            --change 'CMD ["python3"]' \
            - "$LOCAL_BASE_TAG" >>"$logfile" 2>&1 || {
        tail -n 20 "$logfile" >&2
        die "docker import of the local base failed (log: $logfile)"
    }
    rm -rf "$rootfs"
    trap - EXIT
    log "local base $LOCAL_BASE_TAG built in $((SECONDS - started))s"
}

choose_base() {
    if [ -n "${BASE_IMAGE:-}" ]; then
        echo "$BASE_IMAGE"
        return
    fi
    if [ "${MLOPS_LOCAL_BASE:-0}" != 1 ]; then
        local default
        default="$(dockerfile_default_base)"
        if [ -n "$default" ]; then
            if docker image inspect "$default" >/dev/null 2>&1; then
                echo "$default"
                return
            fi
            # No registry here fails fast (DNS); the timeout bounds a registry that hangs.
            if timeout 120 docker pull -q "$default" >/dev/null 2>&1; then
                echo "$default"
                return
            fi
            log "cannot pull $default (no registry reachable): using a locally built base"
        fi
    fi
    if local_base_is_current; then
        log "local base $LOCAL_BASE_TAG is cached"
    else
        build_local_base
    fi
    echo "$LOCAL_BASE_TAG"
}

# A tag from the content of the build: the files the Dockerfile can see, and the base image itself.
content_hash() {
    local base_id="$1"
    {
        echo "base=$base_id dockerfile=$(sha256sum <"$DOCKERFILE" | cut -c1-64)"
        local -a files
        # The context's files as git sees them (ignored outputs such as data or logs excluded).
        if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
            mapfile -d '' files < <(git ls-files -z --cached --others --exclude-standard -- \
                .dockerignore container kedro_project constraints.txt | sort -zu)
        else
            mapfile -d '' files < <(find .dockerignore container kedro_project constraints.txt \
                -type f -print0 2>/dev/null | sort -zu)
        fi
        local f
        for f in "${files[@]}"; do
            [ -f "$f" ] && printf '%s %s\n' "$(sha256sum <"$f" | cut -c1-64)" "$f"
        done
    } | sha256sum | cut -c1-12
}

base="$(choose_base)"
base_id="$(docker image inspect -f '{{.Id}}' "$base")" || die "base image $base is not available"
tag="$IMAGE_REPO:$(content_hash "$base_id")"

build_log="$LOG_DIR/mlops-image-build.log"
: >"$build_log"
log "building $tag from $DOCKERFILE on base $base (log: $build_log)"
started=$SECONDS
# --network host: RUN steps reach PyPI through the host's network (and its proxy) without relying on
# the bridge's NAT. The classic builder: it needs no buildx plugin (not installed here) and never
# reaches for a registry (BuildKit would, for a `# syntax=` frontend).
if ! DOCKER_BUILDKIT=0 docker build --network host --build-arg "BASE_IMAGE=$base" \
    -f "$DOCKERFILE" -t "$tag" . >>"$build_log" 2>&1; then
    echo "---- last lines of $build_log ----" >&2
    tail -n 80 "$build_log" >&2
    die "docker build failed (full log: $build_log)"
fi
size="$(docker image inspect -f '{{.Size}}' "$tag")"
log "built $tag in $((SECONDS - started))s, $((size / 1000000)) MB"
echo "$tag"
