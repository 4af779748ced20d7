"""Incremental vulnerability re-matching: per tenant, the digest of what the feeds said about each vulnerability when
its findings were last matched, the SBOMs each release's findings were matched from, and the devices of each profile
per group list as the last scan mapped them (read by fleet exposure).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vuln_cve_digests",
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("cve", sa.String(64), primary_key=True),
        sa.Column("digest", sa.String(32), nullable=False),
    )
    op.create_table(
        "vuln_release_scans",
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("releases.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("sboms", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("rows_digest", sa.String(32)),
    )
    op.create_table(
        "vuln_profile_groups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("profile_id", sa.Integer(), sa.ForeignKey("vuln_profiles.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("groups", sa.Text(), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
    )
    # Counted now from the existing mapping, so exposure counts do not wait for the next scan.
    op.execute(
        "INSERT INTO vuln_profile_groups (tenant_id, profile_id, groups, devices) "
        "SELECT tenant_id, profile_id, groups, count(*) FROM vuln_device_profiles GROUP BY tenant_id, profile_id, groups"
    )


def downgrade() -> None:
    op.drop_table("vuln_profile_groups")
    op.drop_table("vuln_release_scans")
    op.drop_table("vuln_cve_digests")
