"""Delta bundles per (target, source) release, the OS version each device runs, and a tenant's delta signing key.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delta_bundles",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("releases.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column(
            "source_release_id", sa.Integer(), sa.ForeignKey("releases.id", ondelete="CASCADE"), nullable=False, index=True
        ),
        sa.Column("sha256", sa.String(64), nullable=False, index=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("signer", sa.Text()),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("release_id", "source_release_id"),
    )
    with op.batch_alter_table("devices") as b:
        b.add_column(sa.Column("os_version", sa.String(256)))
    with op.batch_alter_table("tenants") as b:
        b.add_column(sa.Column("delta_signing", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as b:
        b.drop_column("delta_signing")
    with op.batch_alter_table("devices") as b:
        b.drop_column("os_version")
    op.drop_table("delta_bundles")
