"""App version SBOMs (CycloneDX, stored content-addressed), the app a device finding comes from, and the state of a
scan run (queued, running, done, failed: scans run as jobs).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_sboms",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("app_id", sa.Integer(), sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False, unique=True),
        sa.Column("spec_version", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, index=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("components", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("vuln_findings") as b:
        b.add_column(sa.Column("app", sa.String(128)))
        b.add_column(sa.Column("app_version", sa.String(128)))
    with op.batch_alter_table("vuln_scan_runs") as b:
        b.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="done"))
        b.add_column(sa.Column("error", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("vuln_scan_runs") as b:
        b.drop_column("error")
        b.drop_column("status")
    with op.batch_alter_table("vuln_findings") as b:
        b.drop_column("app_version")
        b.drop_column("app")
    op.drop_table("app_sboms")
