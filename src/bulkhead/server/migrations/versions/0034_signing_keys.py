"""The tenants' OpenPGP signing keys in the database (sealed with the server secret), so that every server host
signs advisories and the overlay's apt indexes with the same key; before, each host had its own GnuPG homes.

Existing keys are not copied here: a host takes the keys its homes hold into this table at their first use.

Revision ID: 0034
Revises: 0033
"""

import sqlalchemy as sa
from alembic import op

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("purpose", sa.String(16), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("retiring", sa.String(64), nullable=True),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("secret_sealed", sa.Text, nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    # After the upgrade the table is the only record of the keys (the GnuPG homes are copies, and retired keys are
    # deleted from them): dropping it would lose the keys every consumer has pinned.
    kept = op.get_bind().execute(sa.text("SELECT count(*) FROM signing_keys")).scalar()
    if kept:
        raise RuntimeError(
            f"signing_keys holds {kept} signing key set(s) that exist nowhere else: downgrading would lose them. "
            "Keep this version, or restore the database from a backup made before the upgrade."
        )
    op.drop_table("signing_keys")
