"""Remote sessions: remote_sessions (an operator's shell or port forward on a device, audited), tunnel_connections
(a connection waiting for the device to dial in), and tenants.remote_access (the tenant's switch, off by default;
whether shells are recorded).

Revision ID: 0037
Revises: 0036
"""

import sqlalchemy as sa
from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("remote_access", sa.JSON(), nullable=True))
    op.create_table(
        "remote_sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(300), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_by", sa.String(256), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("close_reason", sa.String(200), nullable=True),
        sa.Column("connections", sa.Integer(), nullable=False),
        sa.Column("live", sa.Integer(), nullable=False),
        sa.Column("active_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bytes_to_device", sa.BigInteger(), nullable=False),
        sa.Column("bytes_from_device", sa.BigInteger(), nullable=False),
        sa.Column("recording_sha256", sa.String(64), nullable=True),
        sa.Column("recording_bytes", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_remote_sessions_tenant_id", "remote_sessions", ["tenant_id"])
    op.create_index("ix_remote_sessions_device", "remote_sessions", ["device_id", "id"])
    op.create_table(
        "tunnel_connections",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("session_id", sa.Integer(), sa.ForeignKey("remote_sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("relay", sa.String(300), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_tunnel_connections_session_id", "tunnel_connections", ["session_id"])
    op.create_index("ix_tunnel_connections_device_id", "tunnel_connections", ["device_id"])


def downgrade() -> None:
    op.drop_table("tunnel_connections")
    op.drop_table("remote_sessions")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("remote_access")
