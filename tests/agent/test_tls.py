"""TLS on the agent against a real local HTTPS server: the server is verified against ca_file, mutual TLS works."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bulkhead.agent.agent import Agent
from bulkhead.agent.client import Client
from bulkhead.agent.config import load_config
from bulkhead.agent.errors import AgentError, ConfigError, TLSError

from .httpd import Answer, Request, serve


@dataclass
class Pki:
    ca: Path  # the CA that signed the server's certificate
    other_ca: Path  # a CA that signed nothing here
    server_cert: Path
    server_key: Path
    client_ca: Path
    client_cert: Path
    client_key: Path
    client_bundle: Path  # certificate and key in one file


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    ca: bool = False, ip: str | None = None,
) -> x509.Certificate:  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if issuer:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False)
    if ip:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    return b.sign(issuer[1] if issuer else key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key, client_ca_key = _key(), _key(), _key()
    ca = _cert("Test Server CA", ca_key, None, ca=True)
    other = _cert("Some Other CA", other_key, None, ca=True)
    client_ca = _cert("Device CA", client_ca_key, None, ca=True)
    server_key, client_key = _key(), _key()
    server = _cert("127.0.0.1", server_key, (ca, ca_key), ip="127.0.0.1")
    client = _cert("dev-1", client_key, (client_ca, client_ca_key))
    files = {
        "ca": _pem(ca), "other_ca": _pem(other), "server_cert": _pem(server), "server_key": _key_pem(server_key),
        "client_ca": _pem(client_ca), "client_cert": _pem(client), "client_key": _key_pem(client_key),
        "client_bundle": _pem(client) + _key_pem(client_key),
    }  # fmt: skip
    for name, data in files.items():
        (d / f"{name}.pem").write_bytes(data)
    return Pki(**{name: d / f"{name}.pem" for name in files})


def _server_context(pki: Pki, require_client: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client:  # as nginx with ssl_verify_client on
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki.client_ca)
    return ctx


def _ok(r: Request) -> Answer:
    return Answer(200, json.dumps({"ok": True}).encode(), [("content-type", "application/json")])


@pytest.fixture
def https(pki: Pki) -> Iterator[str]:
    with serve(_ok, _server_context(pki)) as url:
        yield url


def test_the_right_ca_passes(pki: Pki, https: str) -> None:
    assert Client(https, pki.ca).request("GET", "/healthz").json() == {"ok": True}


def test_a_wrong_ca_fails_with_a_clear_agent_error(pki: Pki, https: str) -> None:
    with pytest.raises(TLSError) as e:
        Client(https, pki.other_ca).request("GET", "/healthz")
    assert f"not trusted by the CA bundle {pki.other_ca}" in str(e.value)
    with (pki.ca.parent / "out").open("wb") as out, pytest.raises(TLSError, match=r"download interrupted.*not trusted"):
        Client(https, pki.other_ca).download(https + "/bundle", out, 0, None)


def test_without_ca_file_the_system_trust_store_is_used(https: str) -> None:
    with pytest.raises(TLSError, match=r"system trust store \(set ca_file in agent.toml\)"):
        Client(https).request("GET", "/healthz")


def test_the_server_name_is_checked_too(pki: Pki, https: str) -> None:
    with pytest.raises(TLSError, match=r"not trusted|match"):
        Client(https.replace("127.0.0.1", "localhost"), pki.ca).request("GET", "/healthz")


def test_mutual_tls_with_the_devices_client_certificate(pki: Pki) -> None:
    with serve(_ok, _server_context(pki, require_client=True)) as url:
        assert Client(url, pki.ca, client_cert=pki.client_cert, client_key=pki.client_key).request("GET", "/x").status == 200
        assert Client(url, pki.ca, client_cert=pki.client_bundle).request("GET", "/x").status == 200
        with pytest.raises(AgentError):  # no certificate: the server ends the handshake, the agent says so
            Client(url, pki.ca).request("GET", "/x")


def test_the_agent_takes_ca_file_and_client_certificate_from_its_config(pki: Pki, tmp_path: Path) -> None:
    seen: list[str] = []

    def handler(r: Request) -> Answer:
        seen.append(r.path)
        return _ok(r)

    with serve(handler, _server_context(pki, require_client=True)) as url:
        conf = tmp_path / "agent.toml"
        conf.write_text(
            f'server = "{url}"\nname = "dev-1"\ndata_dir = "{tmp_path / "data"}"\nca_file = "{pki.ca}"\n'
            f'client_cert = "{pki.client_cert}"\nclient_key = "{pki.client_key}"\n[podman]\nenabled = false\n'
        )
        cfg = load_config(conf)
        assert (cfg.ca_file, cfg.client_cert, cfg.client_key) == (pki.ca, pki.client_cert, pki.client_key)
        agent = Agent(cfg)
        assert agent._server_reachable() is None and seen == ["/healthz"]


def test_unusable_tls_files_are_config_errors(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ca_file .*cannot load the CA bundle"):
        Client("https://x", tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"ca_file .*cannot load"):
        Client("https://x", pki.server_key)  # a key is not a CA bundle
    with pytest.raises(ConfigError, match=r"client_cert .*cannot load"):
        Client("https://x", pki.ca, client_cert=pki.client_cert, client_key=pki.server_key)  # not its key
    conf = tmp_path / "agent.toml"
    conf.write_text(f'server = "https://x"\nname = "d"\nclient_key = "{pki.client_key}"\n')
    with pytest.raises(ConfigError, match="'client_key' needs 'client_cert'"):
        load_config(conf)
