"""Vulnerability monitoring: scan runs (every one kept), device inventory profiles, findings, VEX statements, and
the description of each CVE a finding names.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _tenant() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True)


def upgrade() -> None:
    op.create_table(
        "vuln_scan_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("feeds", sa.JSON(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
    )
    op.create_table(
        "vuln_profiles",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column("compatible", sa.String(256), nullable=False),
        sa.Column("os_version", sa.String(256), nullable=False),
        sa.Column("inventory_sha256", sa.String(64), nullable=False),
        sa.Column("inventory", sa.JSON(), nullable=False),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("releases.id", ondelete="SET NULL")),
        sa.Column("scanned_run_id", sa.Integer()),
        sa.UniqueConstraint("tenant_id", "compatible", "os_version", "inventory_sha256"),
    )
    op.create_table(
        "vuln_device_profiles",
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
        _tenant(),
        sa.Column("profile_id", sa.Integer(), sa.ForeignKey("vuln_profiles.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("reported_sha256", sa.String(64), nullable=False),
        sa.Column("os_version", sa.String(256), nullable=False),
        sa.Column("groups", sa.Text(), nullable=False),
    )
    op.create_table(
        "vex_statements",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column("compatible", sa.String(256), nullable=False),
        sa.Column("cve", sa.String(64), nullable=False),
        sa.Column("component", sa.String(256), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("justification", sa.String(64)),
        sa.Column("impact_statement", sa.Text()),
        sa.Column("action_statement", sa.Text()),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "compatible", "cve", "component"),
    )
    op.create_table(
        "vuln_findings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("releases.id", ondelete="CASCADE")),
        sa.Column("profile_id", sa.Integer(), sa.ForeignKey("vuln_profiles.id", ondelete="CASCADE"), index=True),
        sa.Column("compatible", sa.String(256), nullable=False),
        sa.Column("component", sa.String(256), nullable=False),
        sa.Column("component_version", sa.String(256), nullable=False),
        sa.Column("purl", sa.Text()),
        sa.Column("cve", sa.String(64), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("matcher_status", sa.String(24), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("severity_rank", sa.Integer(), nullable=False),
        sa.Column("cvss", sa.Float()),
        sa.Column("epss", sa.Float()),
        sa.Column("kev", sa.Boolean(), nullable=False),
        sa.Column("kev_date", sa.Date()),
        sa.Column("fixed_version", sa.String(256)),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("kernel", sa.Boolean(), nullable=False),
        sa.Column("vex_id", sa.Integer(), sa.ForeignKey("vex_statements.id", ondelete="SET NULL")),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("vuln_scan_runs.id", ondelete="CASCADE"), nullable=False, index=True),
    )
    op.create_table(
        "vuln_cves",
        sa.Column("cve", sa.String(64), primary_key=True),
        sa.Column("description", sa.Text()),
        sa.Column("published", sa.DateTime(timezone=True)),
        sa.Column("updated", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_vuln_findings_tenant_cve", "vuln_findings", ["tenant_id", "cve", "status"])
    op.create_index("ix_vuln_findings_release", "vuln_findings", ["release_id", "profile_id"])


def downgrade() -> None:
    op.drop_table("vuln_cves")
    op.drop_table("vuln_findings")
    op.drop_table("vex_statements")
    op.drop_table("vuln_device_profiles")
    op.drop_table("vuln_profiles")
    op.drop_table("vuln_scan_runs")
