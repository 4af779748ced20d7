"""The vulnerability feeds shared by every server host: which file of the feed directory has which bytes.

Several hosts share one database and one artifact store; each keeps the feeds in its own data directory. The host
that fetches or imports a feed puts its changed files into the store and records them here; the others bring their
copy up to date from these rows before they read the feeds (server/feed_replica.py).

Revision ID: 0033
Revises: 0032
"""

import sqlalchemy as sa
from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feed_files",
        sa.Column("path", sa.String(512), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("previous_sha256", sa.String(64), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("feed_files")
