"""Schema migrations that would lose data on the way back refuse to run (docs/deploy.md, Upgrading)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from bulkhead.server.db import _alembic_config
from tests.pg import pg_url


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_downgrade_past_0034_that_would_lose_signing_keys_is_refused(kind: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}" if kind == "sqlite" else "postgresql+psycopg://" + pg_url()[13:]
    cfg = _alembic_config(url)
    command.upgrade(cfg, "0034")
    command.downgrade(cfg, "0033")  # no keys yet: nothing to lose
    command.upgrade(cfg, "0034")
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(
            text("INSERT INTO tenants (name, created_at, keyring_check_purpose) VALUES ('t', CURRENT_TIMESTAMP, 'smimesign')")
        )
        c.execute(
            text(
                "INSERT INTO signing_keys (tenant_id, purpose, fingerprint, secret_sealed, public_key, created_at) "
                "SELECT id, 'advisories', 'F00D', 'sealed', 'public', CURRENT_TIMESTAMP FROM tenants"
            )
        )
    with pytest.raises(RuntimeError, match="exist nowhere else"):
        command.downgrade(cfg, "0033")
    assert "signing_keys" in inspect(engine).get_table_names()
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM signing_keys")).scalar() == 1
    engine.dispose()
