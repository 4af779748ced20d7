"""Security updates by policy: releases marked security updates, policies (tenant, group, device), postponements.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def _tenant() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True)


def upgrade() -> None:
    op.create_table(
        "security_releases",
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("releases.id", ondelete="CASCADE"), primary_key=True),
        _tenant(),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("marked_by", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "security_policies",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("group_name", sa.String(128)),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), index=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(256), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "key"),
    )
    op.create_table(
        "security_postponements",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("releases.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("group_name", sa.String(128)),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), index=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("postponed_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("release_id", "key"),
    )


def downgrade() -> None:
    op.drop_table("security_postponements")
    op.drop_table("security_policies")
    op.drop_table("security_releases")
