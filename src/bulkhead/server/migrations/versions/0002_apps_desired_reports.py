"""Apps, desired apps/files per device and group, registry credentials, agent reports.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("containers", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "name", "version"),
    )
    op.create_index("ix_apps_tenant_id", "apps", ["tenant_id"])
    op.create_table(
        "device_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("phase", sa.String(length=32), nullable=True),
        sa.Column("release_id", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("device_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_device_events_tenant_id", "device_events", ["tenant_id"])
    op.create_index("ix_device_events_device_id", "device_events", ["device_id"])
    with op.batch_alter_table("tenants") as b:
        b.add_column(sa.Column("registries", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("device_groups") as b:
        b.add_column(sa.Column("desired", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("devices") as b:
        b.add_column(sa.Column("desired", sa.JSON(), nullable=False, server_default="{}"))
        b.add_column(sa.Column("update_status", sa.JSON(), nullable=False, server_default="{}"))
        b.add_column(sa.Column("report_seq", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("devices") as b:
        b.drop_column("report_seq")
        b.drop_column("update_status")
        b.drop_column("desired")
    with op.batch_alter_table("device_groups") as b:
        b.drop_column("desired")
    with op.batch_alter_table("tenants") as b:
        b.drop_column("registries")
    op.drop_table("device_events")
    op.drop_table("apps")
