"""CSAF advisories (per tenant and product; published bytes, hashes, signature) and each tenant's CSAF provider.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cra_advisories",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("tracking_id", sa.String(128), nullable=False),
        sa.Column("compatible", sa.String(256), nullable=False),
        sa.Column("cves", sa.JSON(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text()),
        sa.Column("cvss", sa.JSON(), nullable=False),
        sa.Column("change", sa.Text()),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("revisions", sa.JSON(), nullable=False),
        sa.Column("initial_release_date", sa.DateTime(timezone=True)),
        sa.Column("current_release_date", sa.DateTime(timezone=True)),
        sa.Column("published", sa.Text()),
        sa.Column("sha256", sa.String(64)),
        sa.Column("sha512", sa.String(128)),
        sa.Column("signature", sa.Text()),
        sa.Column("signer", sa.String(64)),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "tracking_id"),
    )
    op.create_table(
        "cra_providers",
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("publisher_name", sa.String(256)),
        sa.Column("namespace", sa.String(512)),
        sa.Column("contact", sa.String(512)),
        sa.Column("policy", sa.String(512)),
        sa.Column("key_fingerprint", sa.String(64)),
        sa.Column("public_key", sa.Text()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cra_providers")
    op.drop_table("cra_advisories")
