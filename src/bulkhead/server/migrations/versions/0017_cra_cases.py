"""CRA duties: products (per compatible, with their support end), Article 14 cases and each case's log.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def _tenant() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True)


def upgrade() -> None:
    op.create_table(
        "cra_products",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column("compatible", sa.String(256), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("manufacturer", sa.String(256), nullable=False),
        sa.Column("support_end", sa.Date()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "compatible"),
    )
    op.create_table(
        "cra_cases",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("kev_cve", sa.String(64)),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("state", sa.String(24), nullable=False, index=True),
        sa.Column("cves", sa.JSON(), nullable=False),
        sa.Column("compatible", sa.String(256)),
        sa.Column("suggested_awareness_at", sa.DateTime(timezone=True)),
        sa.Column("awareness_at", sa.DateTime(timezone=True)),
        sa.Column("awareness_by", sa.String(256)),
        sa.Column("corrective_at", sa.DateTime(timezone=True)),
        sa.Column("corrective", sa.JSON()),
        sa.Column("notified_at", sa.DateTime(timezone=True)),
        sa.Column("assignee", sa.String(256)),
        sa.Column("mitigations", sa.Text()),
        sa.Column("dismissed_reason", sa.Text()),
        sa.Column("signal", sa.JSON(), nullable=False),
        sa.Column("opened_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "kev_cve"),
    )
    op.create_table(
        "cra_case_entries",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cra_cases.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("submission", sa.String(24)),
        sa.Column("reference", sa.String(256)),
        sa.Column("text", sa.Text()),
        sa.Column("payload", sa.JSON()),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cra_case_entries")
    op.drop_table("cra_cases")
    op.drop_table("cra_products")
