"""History for the UI's plots: when each action closed, and the fleet's exposure after each change.

- `actions.closed_at`: set when an action reaches a final status (or `downloaded` for a download-only one), so a
  rollout's progress over time is counted from its own rows. Actions closed before this migration take their
  `updated_at` (the time of their last history entry: the close, or a late note after it).
- `vuln_exposure_samples`: the fleet's exposure summary (CVEs by severity, known exploited, exposed devices) written
  after each scan run, KEV update and VEX change that moved it.

Revision ID: 0027
Revises: 0026
"""

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE actions SET closed_at = updated_at WHERE active = false")
    op.create_table(
        "vuln_exposure_samples",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cause", sa.String(64), nullable=False),
        sa.Column("cves", sa.Integer, nullable=False),
        sa.Column("kev", sa.Integer, nullable=False),
        sa.Column("devices", sa.Integer, nullable=False),
        sa.Column("by_severity", sa.JSON, nullable=False),
    )
    op.create_index("ix_vuln_exposure_samples_tenant_at", "vuln_exposure_samples", ["tenant_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_vuln_exposure_samples_tenant_at", "vuln_exposure_samples")
    op.drop_table("vuln_exposure_samples")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("closed_at")
