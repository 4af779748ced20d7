"""Server settings: from arguments and BULKHEAD_* environment variables, validated before start."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError, field_validator

from .errors import SettingsError

__all__ = ["Settings", "load_settings"]


class Settings(BaseModel):
    data_dir: Path = Path("bulkhead-data")
    database_url: str | None = None
    max_upload_bytes: int = Field(default=8 * 1024**3, gt=0)
    signed_url_ttl: int = Field(default=3600, gt=0, le=7 * 86400)
    poll_interval: int = Field(default=60, ge=5, le=86400)
    # The longest an application's update lock on a device may delay an OS install (the agent then installs anyway).
    update_lock_max_minutes: int = Field(default=60, ge=0, le=7 * 1440)
    counter_flush_seconds: float = Field(default=5.0, gt=0)
    # Poll answers kept in memory per server process (agent state and DDI root; about 1 KiB each).
    poll_cache_entries: int = Field(default=200_000, ge=0)
    public_url: str | None = None
    jobs_url: str | None = None
    # hawkBit DDI: the header a trusted TLS-terminating proxy sets to the client certificate's CN
    # (e.g. nginx `proxy_set_header X-Ssl-Client-Cn $ssl_client_s_dn_cn`); unset = certificates not accepted.
    ddi_cert_header: str | None = None
    # A device is offered a delta bundle only when it is at most this fraction of the full bundle.
    delta_max_ratio: float = Field(default=0.75, gt=0, le=1)
    # Request bodies other than uploads: the limit for JSON bodies, and the larger one for desired-state patches
    # (they carry file contents). Checked before anything parses them (limits.py).
    max_json_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_desired_json_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Failed authentications per client address and window before it gets 429 (0: no limit; edge.py).
    auth_fail_limit: int = Field(default=60, ge=0)
    auth_fail_window: float = Field(default=60.0, gt=0, le=86400)
    # Server logs as text (as the HTTP server sets them up) or as JSON lines with the request id (logs.py).
    log_format: Literal["text", "json"] = "text"
    # Vulnerability feeds fetched from this mirror (an internal HTTP server holding each feed's file under its usual
    # name: debian-tracker.json, cisa-kev.json, first-epss.csv.gz) instead of their publishers (vuln_feeds.py).
    feed_mirror: str | None = None
    # CRA: a deployed release of a registered product is kept this many years after its last deployment or the
    # product's support end (0: not retained); products are flagged when their support ends within this many days.
    release_retention_years: int = Field(default=10, ge=0, le=100)
    support_warning_days: int = Field(default=180, ge=0, le=3650)
    # Security updates by policy: installed within this many days of their availability unless a policy says otherwise,
    # and postponed by at most this many days past that due date in total (services/security.py).
    security_window_days: int = Field(default=7, ge=0, le=365)
    security_max_postpone_days: int = Field(default=30, ge=0, le=365)
    # The app ecosystems whose OSV.dev export the osv feed keeps (comma-separated OSV ecosystem names; empty: PyPI,
    # npm, Go, crates.io, Maven).
    osv_ecosystems: str | None = None
    # Notifications by e-mail go through this SMTP server (unset: e-mail deliveries fail and say so; webhooks work).
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "bulkhead@localhost"
    smtp_starttls: bool = False
    # Artifacts (bundles, deltas, SBOMs) on the local disk (the data directory) or in an S3-compatible bucket
    # (store_s3.py; credentials from the standard AWS environment or the s3_access_key/s3_secret_key settings).
    store: Literal["fs", "s3"] = "fs"
    s3_endpoint: str | None = None  # e.g. http://seaweedfs:8333; unset: AWS
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    # Devices download from the bucket through presigned URLs (a redirect) instead of through the server: bytes per
    # device are then estimated from the requested ranges, not counted as they go out.
    s3_presign: bool = False
    # CSAF advisories and security.txt (services/cra_advisories.py): the default security contact (mailto: or https:
    # URL, or an e-mail address) and disclosure policy URL of every tenant's provider (a tenant may set its own),
    # how long a served security.txt stays valid, and which Host serves which tenant at the root /.well-known/
    # ("advisories.acme.example=acme,*=acme"; every tenant is always at /{tenant}/.well-known/ too).
    security_contact: str | None = None
    security_policy: str | None = None
    security_txt_days: int = Field(default=180, ge=1, le=365)
    csaf_hosts: str | None = None

    @field_validator("csaf_hosts")
    @classmethod
    def _csaf_hosts(cls, v: str | None) -> str | None:
        if not v or not v.strip():
            return None
        for item in (i.strip() for i in v.split(",")):
            host, sep, tenant = item.partition("=")
            if item and (not sep or not tenant.strip() or not re.fullmatch(r"\*|[A-Za-z0-9.-]+(:[0-9]+)?", host.strip())):
                raise ValueError(f"{item!r} is not HOST=TENANT: give e.g. advisories.acme.example=acme,*=acme")
        return v

    # Artifact delivery through nginx (docs/deployment.md): "x-accel" answers authorized downloads with
    # X-Accel-Redirect to this internal location of nginx, which serves the artifact store; nginx's JSON access
    # log of those downloads (offload_log) is read for the devices' byte counters. Unset: the server sends the bytes.
    delivery_offload: Literal["x-accel"] | None = None
    delivery_offload_prefix: str = Field(default="/_store/", pattern=r"^/([A-Za-z0-9._~-]+/)+$")
    delivery_offload_log: Path | None = None
    # Where signed URLs handed to nginx are granted to it (delivery/grants.py; nginx checks for the file itself):
    # nginx's configuration names the same directory. Unset: `<data dir>/offload-grants`.
    delivery_offload_grants: Path | None = None
    # Remote sessions (server/tunnel): server processes on several hosts relay a device's connection to the process
    # its operator waits in over TCP on this address of theirs (an internal one); unset: a Unix socket (one host).
    tunnel_relay_host: str | None = None
    # Device metrics (services/device_metrics.py): samples kept as sent this many hours, then as hourly averages this
    # many days.
    metrics_raw_hours: int = Field(default=48, ge=1, le=24 * 90)
    metrics_retention_days: int = Field(default=90, ge=1, le=3650)
    # The filesystem store somewhere else than `<data dir>/artifacts`: a directory every server host mounts (NFS,
    # CephFS) when several hosts share one store (docs/deployment.md, "Several hosts"); unset: the data directory's.
    store_dir: Path | None = None
    # The package overlay (ADR 9): a published suite's Release is valid this many days (re-signed when half has
    # passed), the architectures it serves (space- or comma-separated; `all` packages go into each), the .deb size limit.
    overlay_valid_days: int = Field(default=7, ge=1, le=365)
    overlay_architectures: str = Field(default="amd64 arm64 armhf", pattern=r"^[a-z0-9][a-z0-9-]*([ ,]+[a-z0-9][a-z0-9-]*)*$")
    overlay_max_deb_bytes: int = Field(default=512 * 1024**2, gt=0)

    @field_validator("public_url")
    @classmethod
    def _public(cls, v: str | None) -> str | None:
        if not v:
            return None
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(
                "must be the URL devices reach this server at, such as https://updates.example.com "
                "(scheme and host, optionally a port and a path prefix)"
            )
        return v.rstrip("/")

    @field_validator("osv_ecosystems")
    @classmethod
    def _ecosystems(cls, v: str | None) -> str | None:
        if not v or not v.strip():
            return None
        for item in (e.strip() for e in v.split(",")):
            if item and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 .:_-]{0,63}", item):
                raise ValueError(
                    f"{item!r} is not an OSV ecosystem name: give a comma-separated list such as PyPI,npm,Go,crates.io,Maven"
                )
        return v

    @field_validator("feed_mirror")
    @classmethod
    def _mirror(cls, v: str | None) -> str | None:
        if not v:
            return None
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(
                "must be the http(s) URL of a directory holding the feed files, such as https://mirror.example/feeds"
            )
        return v.rstrip("/")

    @field_validator("jobs_url")
    @classmethod
    def _jobs(cls, v: str | None) -> str | None:
        if v and not v.startswith(("redis://", "rediss://")):
            raise ValueError("must be redis://HOST:PORT/DB (unset: the embedded SQLite queue)")
        return v or None

    @field_validator("database_url")
    @classmethod
    def _db(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not v.startswith(("sqlite", "postgresql")):
            raise ValueError("must be sqlite:///PATH or postgresql://USER:PASS@HOST/DB")
        if v.startswith("postgresql://"):
            v = "postgresql+psycopg://" + v.removeprefix("postgresql://")
        return v

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'bulkhead.db').resolve()}"

    @property
    def overlay_arches(self) -> tuple[str, ...]:
        return tuple(a for a in re.split(r"[ ,]+", self.overlay_architectures) if a and a != "all")

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"


_ENV = {
    "database_url": "BULKHEAD_DATABASE_URL",
    "max_upload_bytes": "BULKHEAD_MAX_UPLOAD_BYTES",
    "signed_url_ttl": "BULKHEAD_SIGNED_URL_TTL",
    "poll_interval": "BULKHEAD_POLL_INTERVAL",
    "update_lock_max_minutes": "BULKHEAD_UPDATE_LOCK_MAX_MINUTES",
    "poll_cache_entries": "BULKHEAD_POLL_CACHE_ENTRIES",
    "public_url": "BULKHEAD_PUBLIC_URL",
    "jobs_url": "BULKHEAD_JOBS_URL",
    "ddi_cert_header": "BULKHEAD_DDI_CERT_HEADER",
    "data_dir": "BULKHEAD_DATA_DIR",
    "delta_max_ratio": "BULKHEAD_DELTA_MAX_RATIO",
    "max_json_bytes": "BULKHEAD_MAX_JSON_BYTES",
    "max_desired_json_bytes": "BULKHEAD_MAX_DESIRED_JSON_BYTES",
    "auth_fail_limit": "BULKHEAD_AUTH_FAIL_LIMIT",
    "auth_fail_window": "BULKHEAD_AUTH_FAIL_WINDOW",
    "log_format": "BULKHEAD_LOG_FORMAT",
    "feed_mirror": "BULKHEAD_FEED_MIRROR",
    "release_retention_years": "BULKHEAD_RELEASE_RETENTION_YEARS",
    "support_warning_days": "BULKHEAD_SUPPORT_WARNING_DAYS",
    "security_window_days": "BULKHEAD_SECURITY_WINDOW_DAYS",
    "security_max_postpone_days": "BULKHEAD_SECURITY_MAX_POSTPONE_DAYS",
    "osv_ecosystems": "BULKHEAD_OSV_ECOSYSTEMS",
    "smtp_host": "BULKHEAD_SMTP_HOST",
    "smtp_port": "BULKHEAD_SMTP_PORT",
    "smtp_user": "BULKHEAD_SMTP_USER",
    "smtp_password": "BULKHEAD_SMTP_PASSWORD",
    "smtp_from": "BULKHEAD_SMTP_FROM",
    "smtp_starttls": "BULKHEAD_SMTP_STARTTLS",
    "store": "BULKHEAD_STORE",
    "s3_endpoint": "BULKHEAD_S3_ENDPOINT",
    "s3_bucket": "BULKHEAD_S3_BUCKET",
    "s3_prefix": "BULKHEAD_S3_PREFIX",
    "s3_region": "BULKHEAD_S3_REGION",
    "s3_access_key": "BULKHEAD_S3_ACCESS_KEY",
    "s3_secret_key": "BULKHEAD_S3_SECRET_KEY",
    "s3_presign": "BULKHEAD_S3_PRESIGN",
    "security_contact": "BULKHEAD_SECURITY_CONTACT",
    "security_policy": "BULKHEAD_SECURITY_POLICY",
    "security_txt_days": "BULKHEAD_SECURITY_TXT_DAYS",
    "csaf_hosts": "BULKHEAD_CSAF_HOSTS",
    "delivery_offload": "BULKHEAD_DELIVERY_OFFLOAD",
    "delivery_offload_prefix": "BULKHEAD_DELIVERY_OFFLOAD_PREFIX",
    "delivery_offload_log": "BULKHEAD_DELIVERY_OFFLOAD_LOG",
    "delivery_offload_grants": "BULKHEAD_DELIVERY_OFFLOAD_GRANTS",
    "tunnel_relay_host": "BULKHEAD_TUNNEL_RELAY_HOST",
    "metrics_raw_hours": "BULKHEAD_METRICS_RAW_HOURS",
    "metrics_retention_days": "BULKHEAD_METRICS_RETENTION_DAYS",
    "store_dir": "BULKHEAD_STORE_DIR",
    "overlay_valid_days": "BULKHEAD_OVERLAY_VALID_DAYS",
    "overlay_architectures": "BULKHEAD_OVERLAY_ARCHITECTURES",
    "overlay_max_deb_bytes": "BULKHEAD_OVERLAY_MAX_DEB_BYTES",
}


def _private(path: Path) -> None:
    """Make the data directory readable by its owner only (it holds the database, keys and tokens)."""
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    except OSError:
        pass  # not ours to change (e.g. a mount point): the files inside are still created 0600


def load_settings(**overrides: object) -> Settings:
    """Merge environment and explicit overrides; raise SettingsError naming every bad value."""
    values: dict[str, object] = {k: os.environ[e] for k, e in _ENV.items() if os.environ.get(e)}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        settings = Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{_ENV.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"invalid settings: {problems}") from exc
    if settings.store == "s3" and not settings.s3_bucket:
        raise SettingsError("invalid settings: BULKHEAD_STORE=s3 needs BULKHEAD_S3_BUCKET (the bucket the artifacts go to)")
    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        settings.artifacts_dir.mkdir(mode=0o700, exist_ok=True)
        if settings.store_dir is not None:
            settings.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _private(settings.data_dir)
    except OSError as exc:
        raise SettingsError(f"data directory {settings.data_dir} cannot be created: {exc.strerror}") from exc
    if not os.access(settings.data_dir, os.W_OK):
        raise SettingsError(f"data directory {settings.data_dir} is not writable")
    return settings
