"""Package overlay (issue 23): index regeneration and signing at 5,000 packages, and `apt-get update` + `apt-get
install` from our repository side by side with the same packages in a reprepro repository served by nginx.

5,000 tiny real .debs are built with dpkg-deb. Ours: they go into a `bulkhead server --workers 2` data directory
(SQLite) through the overlay service itself (rows and artifacts, as uploads store them; uploading 5,000 one by one
would publish the suite 5,000 times), then the suite is published (Packages, its gzip and xz, by-hash, Release,
InRelease and Release.gpg signed by gpg) and timed; a device enrolled on the server runs apt against it, with its
credential (auth.conf) and the tenant's key. Reference: reprepro includes the same .debs, `reprepro export` is timed,
nginx serves the repository without authentication, apt runs against it with reprepro's key.

apt runs as a device's would, in a root of its own (its lists, cache and dpkg status; dpkg --root installs into
it): `apt-get update` from empty lists, then `apt-get install` of --install packages; each side --rounds times,
alternating, fresh root each round, after one warm-up round each.

Goal: regeneration and signing of the 5,000-package suite <= 2 s. Writes bench/results/overlay.md. Needs root
(dpkg --root), dpkg-deb, gpg, reprepro, nginx, apt. Run:
    .venv/bin/python bench/overlay.py [--packages 5000] [--install 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import free_port, new_tenant, start_bulkhead, write_result  # noqa: E402

SUITE = "bookworm"
GOAL = 2.0


def build_debs(work: Path, n: int) -> list[Path]:
    """n packages bench-pkg-00000 .. of one small file each, built by dpkg-deb (two at a time)."""
    work.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> Path:
        name = f"bench-pkg-{i:05d}"
        out = work / f"{name}_1.0-1_all.deb"
        if out.exists():
            return out
        root = work / "src" / name
        (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
        (root / "DEBIAN" / "control").write_text(
            f"Package: {name}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: Bench <bench@example.com>\n"
            f"Section: misc\nPriority: optional\nDescription: overlay bench package {i}\n a package of the overlay bench\n"
        )
        (root / "usr/share" / name).mkdir(parents=True, exist_ok=True)
        (root / "usr/share" / name / "data").write_bytes(os.urandom(2048))
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)], check=True, capture_output=True
        )
        shutil.rmtree(root)
        return out

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, range(n)))


def seed_ours(data: Path, tid: int, tenant: str, debs: list[Path]) -> tuple[Any, Any, Any]:
    """The packages into the server's database and store, as the upload path stores them; the service and keys."""
    from bulkhead.server.db import Database
    from bulkhead.server.overlay_debs import read_deb
    from bulkhead.server.overlay_keys import RepoPgp
    from bulkhead.server.overlay_models import OverlayPackage
    from bulkhead.server.security import load_secret
    from bulkhead.server.services.overlay import OverlayService
    from bulkhead.server.settings import load_settings
    from bulkhead.server.store import open_store

    settings = load_settings(data_dir=data)
    db = Database(settings.db_url)
    store = open_store(settings)
    svc = OverlayService(db, store, RepoPgp(data / "openpgp-apt"), load_secret(data), settings.overlay_arches, 7, 1 << 30)
    keys = svc._key(tid, tenant)
    rows = []
    for deb in debs:
        info = read_deb(deb, settings.overlay_arches)
        body = deb.read_bytes()
        import hashlib

        sha, md5 = hashlib.sha256(body).hexdigest(), hashlib.md5(body).hexdigest()
        store.commit(store.stage_bytes(body), sha)
        rows.append(
            OverlayPackage(
                tenant_id=tid, suite=SUITE, name=info.name, version=info.version, architecture=info.architecture,
                control=info.control, sha256=sha, md5=md5, size=len(body), uploaded_by="bench", fixes=[],
            )
        )  # fmt: skip
    with db.session() as s:
        s.add_all(rows)
    return svc, db, keys


def publish_times(svc: Any, db: Any, tid: int, keys: Any, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        with db.session() as s:
            t0 = time.perf_counter()
            svc._publish(s, tid, SUITE, keys)
            times.append(time.perf_counter() - t0)
    return times


def reprepro_repo(work: Path, debs: list[Path]) -> tuple[Path, Path, list[float]]:
    """The same packages in a reprepro repository signed by a key of its own; the repo, the key, export times."""
    home = work / "gnupg"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run(
        [*gpg, "--quick-gen-key", "reprepro bench <bench@example.com>", "ed25519", "sign", "never"],
        check=True,
        capture_output=True,
    )
    fpr = subprocess.run([*gpg, "--with-colons", "--list-keys"], check=True, capture_output=True, text=True).stdout
    fingerprint = next(line.split(":")[9] for line in fpr.splitlines() if line.startswith("fpr:"))
    key = work / "reprepro.asc"
    key.write_bytes(subprocess.run([*gpg, "--export", "--armor", fingerprint], check=True, capture_output=True).stdout)
    repo = work / "repo"
    (repo / "conf").mkdir(parents=True, exist_ok=True)
    (repo / "conf" / "distributions").write_text(
        f"Codename: {SUITE}\nArchitectures: amd64 arm64\nComponents: main\nSignWith: {fingerprint}\nValidFor: 7d\n"
    )
    env = {**os.environ, "GNUPGHOME": str(home)}
    for i in range(0, len(debs), 500):
        subprocess.run(
            ["reprepro", "-b", str(repo), "includedeb", SUITE, *map(str, debs[i : i + 500])],
            env=env,
            check=True,
            capture_output=True,
        )
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(["reprepro", "-b", str(repo), "export", SUITE], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return repo, key, times


def start_nginx(work: Path, repo: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(
        f"daemon off; user root; worker_processes 1; pid {work}/nginx.pid; error_log {work}/nginx-error.log;\n"
        f"events {{ worker_connections 256; }}\n"
        f"http {{ access_log off; sendfile on; client_body_temp_path {work}/tmp; proxy_temp_path {work}/tmp;\n"
        f" fastcgi_temp_path {work}/tmp; uwsgi_temp_path {work}/tmp; scgi_temp_path {work}/tmp;\n"
        f" server {{ listen 127.0.0.1:{port}; root {repo}; location /conf {{ deny all; }} location /db {{ deny all; }} }} }}\n"
    )
    (work / "tmp").mkdir(exist_ok=True)
    proc = subprocess.Popen(["nginx", "-c", str(conf)], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/dists/{SUITE}/Release", timeout=1).raise_for_status()
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc, port


def apt_root(root: Path, source: str, key: Path, auth: str | None) -> dict[str, str]:
    """A device's apt in a root of its own; its environment."""
    shutil.rmtree(root, ignore_errors=True)
    for d in ("etc/apt/sources.list.d", "etc/apt/auth.conf.d", "etc/apt/preferences.d", "etc/apt/apt.conf.d",
              "var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/lib/dpkg/info", "var/lib/dpkg/updates",
              "var/log/apt"):  # fmt: skip
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/status").touch()
    (root / "var/lib/dpkg/available").touch()
    (root / "etc/apt/sources.list.d/bench.sources").write_text(
        f"Types: deb\nURIs: {source}\nSuites: {SUITE}\nComponents: main\nSigned-By: {key}\n"
    )
    if auth:
        (root / "etc/apt/auth.conf.d/bench.conf").write_text(auth)
        (root / "etc/apt/auth.conf.d/bench.conf").chmod(0o600)
    conf = root / "apt.conf"
    settings = {
        "Dir::Etc": root / "etc/apt", "Dir::State": root / "var/lib/apt", "Dir::Cache": root / "var/cache/apt",
        "Dir::State::status": root / "var/lib/dpkg/status", "Dir::Log": root / "var/log/apt", "Debug::NoLocking": "1",
        "APT::Sandbox::User": "root", "Acquire::Languages": "none", "Acquire::http::Proxy": "DIRECT",
    }  # fmt: skip
    conf.write_text(
        "".join(f'{k} "{v}";\n' for k, v in settings.items()) + f'DPkg::Options {{ "--root={root}"; "--force-not-root"; }};\n'
    )
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(APT_CONFIG=str(conf), LC_ALL="C")
    return env


def apt_round(root: Path, source: str, key: Path, auth: str | None, names: list[str]) -> tuple[float, float]:
    env = apt_root(root, source, key, auth)
    t0 = time.perf_counter()
    r = subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True)
    update = time.perf_counter() - t0
    if r.returncode != 0 or "W:" in r.stdout + r.stderr:
        raise SystemExit(f"apt-get update failed against {source}:\n{r.stdout[-1500:]}{r.stderr[-1500:]}")
    t0 = time.perf_counter()
    r = subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *names], env=env, capture_output=True, text=True
    )
    install = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"apt-get install failed against {source}:\n{r.stdout[-1500:]}{r.stderr[-1500:]}")
    return update, install


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--packages", type=int, default=5000)
    ap.add_argument("--install", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bulkhead-bench" / "overlay-debs"
    t0 = time.monotonic()
    debs = build_debs(cache, args.packages)
    print(f"{len(debs)} packages ready in {time.monotonic() - t0:.0f} s", flush=True)
    names = [f"bench-pkg-{i:05d}" for i in range(0, args.packages, max(1, args.packages // args.install))][: args.install]
    server = nginx = None
    with tempfile.TemporaryDirectory(prefix="bench-overlay-") as tmpd:
        work = Path(tmpd)
        try:
            data, port = work / "data", free_port()
            server = start_bulkhead(data, port, workers=2, env_extra={"BULKHEAD_ADMIN_TOKEN": ""})
            base = f"http://127.0.0.1:{port}"
            tid, api = new_tenant(base, data)
            boot = httpx.post(base + "/api/v1/bootstrap-tokens", json={"name": "b"}, headers=api).json()["token"]
            cred = httpx.post(
                base + "/device/v1/enroll", json={"bootstrap_token": boot, "name": "dev", "compatible": "bench"}
            ).json()["credential"]
            t0 = time.monotonic()
            svc, db, keys = seed_ours(data, tid, "bench", debs)
            print(f"seeded ours in {time.monotonic() - t0:.0f} s", flush=True)
            ours_publish = publish_times(svc, db, tid, keys, args.rounds)
            print(f"ours: regeneration and signing {[f'{t:.2f}' for t in ours_publish]} s", flush=True)
            our_key = work / "ours.asc"
            our_key.write_text(httpx.get(base + "/api/v1/overlay/key", headers=api).json()["public_key"])
            t0 = time.monotonic()
            repo, ref_key, ref_export = reprepro_repo(work / "reprepro", debs)
            print(
                f"reprepro repository in {time.monotonic() - t0:.0f} s; export {[f'{t:.2f}' for t in ref_export]} s", flush=True
            )
            nginx, nport = start_nginx(work, repo)
            ours_src, ref_src = f"{base}/overlay/apt", f"http://127.0.0.1:{nport}"
            auth = f"machine {base}/overlay/apt\nlogin dev\npassword {cred}\n"
            timings: dict[str, list[tuple[float, float]]] = {"ours": [], "ref": []}
            apt_round(work / "apt-ours", ours_src, our_key, auth, names[:1])  # warm-up (not counted): the
            apt_round(work / "apt-ref", ref_src, ref_key, None, names[:1])  # server's workers' first requests
            for _ in range(args.rounds):
                timings["ours"].append(apt_round(work / "apt-ours", ours_src, our_key, auth, names))
                timings["ref"].append(apt_round(work / "apt-ref", ref_src, ref_key, None, names))
                print(f"apt rounds: {timings}", flush=True)
        finally:
            for proc in (server, nginx):
                if proc is not None:
                    proc.terminate()
                    proc.wait(30)

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} s"

    ours_up, ours_in = [u for u, _ in timings["ours"]], [i for _, i in timings["ours"]]
    ref_up, ref_in = [u for u, _ in timings["ref"]], [i for _, i in timings["ref"]]
    table = [
        ["what", "Bulkhead overlay", "reprepro + nginx", "goal"],
        [f"regenerate and sign the suite's indexes, {args.packages:,} packages", med(ours_publish), med(ref_export),
         "met" if statistics.median(ours_publish) <= GOAL else "**missed**"],
        ["`apt-get update` from empty lists", med(ours_up), med(ref_up), ""],
        [f"`apt-get install` of {len(names)} packages", med(ours_in), med(ref_in), ""],
    ]  # fmt: skip
    write_result(
        "overlay",
        f"Package overlay at {args.packages:,} packages, side by side with reprepro + nginx",
        table,
        f"Medians of {args.rounds} rounds, alternating ours and the reference, one machine. Ours: `bulkhead server "
        "--workers 2` (SQLite); regeneration is the service's publish (Packages, .gz, .xz, by-hash copies, Release, "
        "InRelease and Release.gpg, two gpg signatures and a key check), timed in process; apt authenticates as an "
        "enrolled device (auth.conf). Reference: reprepro 5.3 `export` (the same indexes, signed by gpg), served by "
        "nginx without authentication. apt in a root of its own per round (empty lists, `dpkg --root`). "
        f"Run: `.venv/bin/python bench/overlay.py --packages {args.packages}`.",
    )


if __name__ == "__main__":
    main()
