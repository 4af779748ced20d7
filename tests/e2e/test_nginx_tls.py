"""TLS: the server's own (`--tls-cert/--tls-key`), and real nginx in front with contrib/nginx/bulkhead.conf.

Behind nginx, devices authenticate with client certificates (DDI, through the trusted header nginx sets) or
with tokens over TLS; a lab device with real RAUC updates through it with the rauc-hawkbit client.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bulkhead.server.errors import SettingsError
from bulkhead.server.settings import load_settings
from tests.conftest import RAUC_DATA
from tests.live import free_port, live_server, stop

CONF = Path(__file__).parents[2] / "contrib" / "nginx" / "bulkhead.conf"
GOOD = RAUC_DATA / "good-verity-bundle.raucb"


# -- a test PKI: one CA for the server's certificate and the devices' -------------------------------------------
@dataclass(frozen=True)
class TlsPki:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path

    def client(self, cn: str) -> tuple[str, str]:
        """A device certificate with this CN, signed by the CA: (cert path, key path) as httpx's `cert` takes."""
        cert, key = self.dir / f"{cn}.pem", self.dir / f"{cn}.key"
        if not cert.exists():
            _issue(self, cn, cert, key, client=True)
        return str(cert), str(key)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bulkhead Test"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _issue(pki: TlsPki, cn: str, cert_path: Path, key_path: Path, client: bool) -> None:
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key((pki.dir / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if client:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert_path.write_bytes(b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)


def make_tls_pki(directory: Path) -> TlsPki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Bulkhead Test TLS CA"))
        .issuer_name(_name("Bulkhead Test TLS CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(ca_key, directory / "ca.key")
    pki = TlsPki(directory, directory / "ca.pem", directory / "server.pem", directory / "server.key")
    _issue(pki, "localhost", pki.server_cert, pki.server_key, client=False)
    return pki


def tls_context(ca: Path, cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    """Trust only `ca`; present `cert` (certificate, key) as the client certificate."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


def _wait_tls(port: int, ca: Path, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited: {log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), 1) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{what} did not accept TLS on port {port} in 30 s: {log.read_text()[-3000:]}")


# -- native TLS -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("http_server", ["granian", "uvicorn"])
def test_server_serves_https_itself(tmp_path: Path, http_server: str) -> None:
    pki = make_tls_pki(tmp_path / "tls")
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "BULKHEAD_ADMIN_TOKEN": "", "BULKHEAD_HTTP_SERVER": http_server}
    env.pop("BULKHEAD_PUBLIC_URL", None)
    cmd = [sys.executable, "-m", "bulkhead.cli", "server", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    proc = subprocess.Popen(
        [*cmd, "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_tls(port, pki.ca, "bulkhead server", proc, log)
        url = f"https://127.0.0.1:{port}"
        with httpx.Client(base_url=url, verify=tls_context(pki.ca), timeout=30) as c:
            assert c.get("/healthz").status_code == 200
            admin = (tmp_path / "data" / "admin.token").read_text().strip()
            r = c.post(
                "/api/v1/tenants", json={"name": f"t-{uuid.uuid4().hex[:8]}"}, headers={"authorization": f"Bearer {admin}"}
            )
            assert r.status_code == 201, r.text
            t = c.get("/api/v1/tenant", headers={"authorization": f"Bearer {r.json()['token']}"}).json()["name"]
            tok = r.json()["token"]
            dev = c.post(
                "/api/v1/devices",
                json={"name": "tls-1", "compatible": "Test Config"},
                headers={"authorization": f"Bearer {tok}"},
            ).json()["target_token"]
            root = c.get(f"/{t}/controller/v1/tls-1", headers={"authorization": f"TargetToken {dev}"}).json()
            # URLs handed to devices follow the scheme the request came in with.
            assert root["_links"]["configData"]["href"] == f"{url}/{t}/controller/v1/tls-1/configData"
            if "strict-transport-security" in (h := c.get("/healthz").headers):  # if the security headers are there
                assert "max-age=" in h["strict-transport-security"]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)  # plain HTTP on the TLS port does not work
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=5)  # nor does TLS without trusting the CA
    finally:
        stop(proc, 20)


def test_server_refuses_a_tls_key_that_does_not_fit(tmp_path: Path) -> None:
    pki = make_tls_pki(tmp_path / "tls")
    other = make_tls_pki(tmp_path / "other")
    cli = [sys.executable, "-m", "bulkhead.cli", "server", "--data-dir", str(tmp_path / "data"), "--port", str(free_port())]
    env = {**os.environ, "BULKHEAD_ADMIN_TOKEN": ""}
    r = subprocess.run(
        [*cli, "--tls-cert", str(pki.server_cert), "--tls-key", str(other.server_key)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "do not load as a PEM certificate and its key" in " ".join(r.stderr.split()), r.stderr
    r = subprocess.run([*cli, "--tls-cert", str(pki.server_cert)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--tls-cert and --tls-key go together" in " ".join(r.stderr.split()), r.stderr


def test_public_url_must_be_an_absolute_http_url(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path, public_url="https://updates.example.com/fleet/").public_url == (
        "https://updates.example.com/fleet"
    )
    for bad in ("updates.example.com", "ftp://updates.example.com", "https://", "https://x.example/?a=1"):
        with pytest.raises(SettingsError, match=r"BULKHEAD_PUBLIC_URL: .*must be the URL devices reach this server at"):
            load_settings(data_dir=tmp_path, public_url=bad)


# -- nginx in front ---------------------------------------------------------------------------------------------
@contextmanager
def nginx(work: Path, pki: TlsPki, upstream_port: int, port: int) -> Iterator[str]:
    """Real nginx running contrib/nginx/bulkhead.conf (paths and ports pointed here) as a child process."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if exe is None:
        pytest.skip("nginx is not installed: apt install nginx-light")
    work.mkdir(parents=True, exist_ok=True)
    conf = CONF.read_text()
    for old, new in [
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{port} ssl http2;"),
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream_port};"),
        ("/etc/bulkhead/tls/server.pem", str(pki.server_cert)),
        ("/etc/bulkhead/tls/server.key", str(pki.server_key)),
        ("/etc/bulkhead/tls/device-ca.pem", str(pki.ca)),
    ]:
        assert old in conf, f"contrib/nginx/bulkhead.conf no longer has {old!r}: update this test with it"
        conf = conf.replace(old, new)
    (work / "bulkhead.conf").write_text(conf)
    temp = "\n".join(f"    {k}_temp_path {work / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (work / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {work / 'nginx.pid'};\nerror_log {work / 'error.log'} info;\n"
        f"events {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n{temp}\n    include {work / 'bulkhead.conf'};\n}}\n"
    )
    log = work / "nginx.out"
    proc = subprocess.Popen(
        [exe, "-p", str(work), "-c", str(work / "nginx.conf"), "-e", str(work / "error.log")],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_tls(port, pki.ca, "nginx", proc, work / "error.log")
        yield f"https://127.0.0.1:{port}"
    finally:
        stop(proc, 10)


@dataclass
class Front:
    url: str  # nginx's, the public URL
    pki: TlsPki
    admin: httpx.Client  # a tenant admin, through nginx
    tenant: str
    work: Path


@pytest.fixture
def front(tmp_path: Path) -> Iterator[Front]:
    pki = make_tls_pki(tmp_path / "tls")
    port, nginx_port = free_port(), free_port()
    public = f"https://127.0.0.1:{nginx_port}"
    env = {"BULKHEAD_PUBLIC_URL": public, "BULKHEAD_DDI_CERT_HEADER": "X-Ssl-Client-Cn", "BULKHEAD_POLL_INTERVAL": "5"}
    with live_server(tmp_path / "server", env, port=port) as srv, nginx(tmp_path / "nginx", pki, port, nginx_port) as url:
        token = srv.tenant(keyring=True)
        c = httpx.Client(base_url=url, verify=tls_context(pki.ca), headers={"authorization": f"Bearer {token}"}, timeout=60)
        yield Front(url, pki, c, c.get("/api/v1/tenant").json()["name"], tmp_path)
        c.close()


class _Ddi(httpx.Client):
    """A DDI client for one controller id: paths are relative to its root resource."""

    def __init__(self, front: Front, cid: str, cert: tuple[str, str] | None, **headers: str) -> None:
        super().__init__(verify=tls_context(front.pki.ca, cert), headers=headers, timeout=60)
        self.root = f"{front.url}/{front.tenant}/controller/v1/{cid}"

    def at(self, path: str = "") -> str:
        return path if path.startswith("https://") else self.root + path


def _ddi(front: Front, cid: str, cert: tuple[str, str] | None, **headers: str) -> _Ddi:
    return _Ddi(front, cid, cert, **headers)


def test_nginx_speaks_http2_to_devices_and_answers_ranges_over_it(front: Front) -> None:
    """RAUC (libcurl) streams a bundle over HTTP/2 when the server offers it: many ranges on one connection."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed: apt install curl")
    blob = GOOD.read_bytes()
    rel = front.admin.post("/api/v1/releases", content=blob)
    assert rel.status_code == 201, rel.text
    url = f"{front.url}/api/v1/releases/{rel.json()['id']}/bundle"
    auth = "authorization: " + front.admin.headers["authorization"]
    out = subprocess.run(
        ["curl", "-s", "--http2", "--cacert", str(front.pki.ca), "-H", auth, "-r", "100-199", "-o", "-",
         "-w", "\n%{http_version} %{http_code}", url],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    body, _, tail = out.rpartition(b"\n")
    assert tail == b"2 206" and body == blob[100:200]


def test_nginx_authenticates_ddi_devices_by_client_certificate(front: Front) -> None:
    c = front.admin
    c.put("/api/v1/ddi", json={"auto_register": True, "default_compatible": "Test Config"}).raise_for_status()
    rel = c.post("/api/v1/releases", content=GOOD.read_bytes())
    assert rel.status_code == 201, rel.text
    cert = front.pki.client("cert-dev-1")

    # No certificate, a forged header, another device's certificate: refused.
    with _ddi(front, "cert-dev-1", None) as anon:
        assert anon.get(anon.at("")).status_code == 401
    with _ddi(front, "cert-dev-1", None, **{"X-Ssl-Client-Cn": "cert-dev-1"}) as forged:
        assert forged.get(forged.at("")).status_code == 401
    with _ddi(front, "cert-dev-2", cert) as wrong:
        assert wrong.get(wrong.at("")).status_code == 403

    with _ddi(front, "cert-dev-1", cert) as dev:
        root = dev.get(dev.at(""))
        assert root.status_code == 200 and root.json()["_links"]["configData"]["href"].startswith(front.url + "/")
        assert c.get("/api/v1/devices/cert-dev-1").json()["compatible"] == "Test Config"  # registered on first contact
        assert dev.put(dev.at("/configData"), json={"data": {"hw": "rev1"}}).status_code == 200
        # A release set on the device (no rollout) reaches it; every link it gets is the public https URL.
        c.put("/api/v1/devices/cert-dev-1/desired-release", json={"release_id": rel.json()["id"]}).raise_for_status()
        deadline = time.monotonic() + 20
        while "deploymentBase" not in (links := dev.get(dev.at("")).json().get("_links", {})) and time.monotonic() < deadline:
            time.sleep(0.2)
        href = links["deploymentBase"]["href"]
        assert href.startswith(front.url + "/")
        dep = dev.get(dev.at(href)).json()
        action = dep["id"]
        art = dep["deployment"]["chunks"][0]["artifacts"][0]["_links"]["download"]["href"]
        assert art.startswith(f"{front.url}/{front.tenant}/controller/v1/cert-dev-1/softwaremodules/")
        blob = GOOD.read_bytes()
        part = dev.get(dev.at(art), headers={"range": "bytes=100-199"})  # Range passes through nginx untouched
        assert part.status_code == 206 and part.content == blob[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(blob)}"
        assert dev.get(dev.at(art)).content == blob
        fb = {"id": action, "status": {"execution": "closed", "result": {"finished": "success"}, "details": ["ok"]}}
        assert dev.post(dev.at(f"/deploymentBase/{action}/feedback"), json=fb).status_code == 200
    shown = c.get("/api/v1/devices/cert-dev-1").json()
    assert shown["update"]["phase"] == "success" and shown["attributes"] == {"hw": "rev1"}
    assert c.get("/api/v1/devices/cert-dev-1/events").json()[0]["phase"] == "success"


def test_a_lab_device_updates_through_nginx_with_rauc_hawkbit(front: Front) -> None:
    """Real RAUC in a lab device, driven by the rauc-hawkbit client over TLS (server verified against the test CA,
    TargetToken), through nginx with contrib's configuration."""
    from bulkhead.lab import images
    from bulkhead.lab.pki import make_pki
    from bulkhead.lab.rauc_service import RaucDevice
    from tests.e2e.conftest import COMPATIBLE, need_lab
    from tests.interop import wait_for

    need_lab()
    client = shutil.which("rauc-hawkbit-client") or str(Path(sys.executable).parent / "rauc-hawkbit-client")
    if not Path(client).exists():
        pytest.skip("rauc-hawkbit is not installed: pip install rauc-hawkbit (needs libgirepository1.0-dev libcairo2-dev)")
    signing = make_pki(front.work / "signing")
    c = front.admin
    c.put("/api/v1/keyring", json={"pem": signing.ca.read_text()}).raise_for_status()
    bundle = images.build_release(front.work, COMPATIBLE, "2.0", signing.cert, signing.key)
    rel = c.post("/api/v1/releases", content=bundle.read_bytes())
    assert rel.status_code == 201, rel.text
    token = c.post("/api/v1/devices", json={"name": "lab-tls", "compatible": COMPATIBLE, "groups": ["tls"]}).json()[
        "target_token"
    ]
    c.post(
        "/api/v1/rollouts", json={"name": "tls", "release_id": rel.json()["id"], "type": "forced", "target": {"groups": ["tls"]}}
    ).raise_for_status()
    with RaucDevice(front.work / "dev", COMPATIBLE, signing.ca, slot_size=8 << 20) as rauc:
        rauc.start("A")
        cfg = front.work / "client.cfg"
        cfg.write_text(
            "[client]\n"
            f"hawkbit_server = {front.url.removeprefix('https://')}\nssl = true\ntenant_id = {front.tenant}\n"
            f"target_name = lab-tls\nauth_token = {token}\nmac_address = 02:00:00:00:00:02\n"
            f"bundle_download_location = {front.work / 'bundle.raucb'}\nlog_level = debug\n"
        )
        log = front.work / "client.log"
        env = {**rauc.env, "SSL_CERT_FILE": str(front.pki.ca)}  # the client trusts only the test CA
        proc = subprocess.Popen([client, "-c", str(cfg)], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        try:

            def action() -> dict[str, Any]:
                rows: list[dict[str, Any]] = c.get("/api/v1/rollouts/tls/actions").json()
                return rows[0]

            done = wait_for(lambda: not (a := action())["active"] and a, 120, "the install through nginx", log)
            assert done["status"] == "success", done
            status = json.loads(rauc.rauc("status", "--detailed", "--output-format=json").stdout)
            slot_b = next(s for s in status["slots"] for name, s in s.items() if s.get("bootname") == "B")
            assert slot_b["slot_status"]["bundle"]["version"] == "2.0"
            assert rauc.primary() == "B"
        finally:
            proc.terminate()
            proc.wait(10)
    assert c.get("/api/v1/devices/lab-tls").json()["bytes_served"] >= 0


def test_a_lab_agent_updates_through_nginx_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Bulkhead agent (token auth) enrolls, polls and downloads its bundle through nginx over TLS, verifying
    the server against the test CA, and its lab device boots the new release."""
    from tests.e2e.conftest import build_release, make_fleet, need_lab

    need_lab()
    pki = make_tls_pki(tmp_path / "tls")
    port, nginx_port = free_port(), free_port()
    env = {"BULKHEAD_PUBLIC_URL": f"https://127.0.0.1:{nginx_port}"}
    with live_server(tmp_path / "server", env, port=port) as srv, nginx(tmp_path / "nginx", pki, port, nginx_port) as url:
        fleet = make_fleet(srv, tmp_path)  # the test's own API calls go to the server directly
        try:
            # The agent trusts only the test CA (SSL_CERT_FILE; or `ca_file` in agent.toml) and knows only nginx.
            monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
            fleet.server.url, direct = url, fleet.server.url
            try:
                dev = fleet.device("tls-dev", initial_version="1.0")
            finally:
                fleet.server.url = direct
            v2 = fleet.upload(build_release(fleet.work, "2.0", fleet.pki))
            fleet.wait(lambda: fleet.show("tls-dev")["last_seen"], 60, "the agent to enroll through nginx")
            with fleet.api() as c:
                c.put("/api/v1/devices/tls-dev/desired-release", json={"release_id": v2["id"]}).raise_for_status()
            fleet.wait(lambda: fleet.show("tls-dev")["update"].get("phase") == "success", 240, "the update through nginx")
            assert dev.spec.server == url and url.startswith("https://")
            assert dev.booted == "B" and fleet.show("tls-dev")["update"]["version"] == "2.0"
            served = fleet.wait(lambda: fleet.show("tls-dev")["bytes_served"], 30, "the byte count")
            assert served >= v2["size"]  # the bundle came through nginx (the only address the agent has)
            assert f"127.0.0.1:{port}" not in (dev.root / "agent.log").read_text()
        finally:
            fleet.shutdown()


def test_a_remote_shell_goes_through_nginx_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Remote sessions behind the shipped nginx configuration: the agent's tunnel (a WebSocket over TLS, trusting
    only the test CA) and the operator's `bulkhead device shell` both reach the server through nginx only."""
    from tests.agent.fakes import lab_agent

    pki = make_tls_pki(tmp_path / "tls")
    port, nginx_port = free_port(), free_port()
    env = {"BULKHEAD_PUBLIC_URL": f"https://127.0.0.1:{nginx_port}"}
    with live_server(tmp_path / "server", env, port=port) as srv, nginx(tmp_path / "nginx", pki, port, nginx_port) as url:
        admin = srv.tenant(keyring=False)
        with srv.client(admin) as c:
            c.put("/api/v1/remote-access", json={"enabled": True}).raise_for_status()
            boot = c.post("/api/v1/bootstrap-tokens", json={"name": "tls-remote"}).json()["token"]
        monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
        agent = lab_agent(url, tmp_path / "agent", "tls-remote", boot)
        try:
            agent.run_once()
            deadline = time.monotonic() + 20
            while agent.tunnel._ws is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert agent.tunnel._ws is not None, "the agent's control channel did not come up through nginx"
            run = subprocess.run(
                [sys.executable, "-m", "bulkhead.cli", "device", "shell", "tls-remote"],
                input="echo tls-$((40+2))\nexit 5\n",
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, "BULKHEAD_SERVER": url, "BULKHEAD_TOKEN": admin},
            )
            assert "tls-42" in run.stdout and run.returncode == 5, run.stderr
        finally:
            agent.tunnel.stop()
