"""Per-vulnerability digests of the stored findings of each release and device profile: a full re-scan rewrites only
the findings of the vulnerabilities whose rows changed (JSON text `{id: digest}`; NULL until the next full write),
and the ids incremental runs rewrote since.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("vuln_release_scans", sa.Column("id_digests", sa.Text(), nullable=True))
    op.add_column("vuln_profiles", sa.Column("id_digests", sa.Text(), nullable=True))
    # The ids incremental runs rewrote since the last full write (JSON list): the next full run writes their rows.
    op.add_column("vuln_release_scans", sa.Column("stale_ids", sa.Text(), nullable=True))
    op.add_column("vuln_profiles", sa.Column("stale_ids", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vuln_profiles") as b:
        b.drop_column("stale_ids")
        b.drop_column("id_digests")
    with op.batch_alter_table("vuln_release_scans") as b:
        b.drop_column("stale_ids")
        b.drop_column("id_digests")
