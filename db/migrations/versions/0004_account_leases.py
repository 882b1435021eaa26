"""One bot per account: the ``account_leases`` heartbeat table.

- ``account_leases``: one row per lease key (``<mode>-<env>-<account hash>``, the book id):
  the holder's host and pid, when it took the lease (``since``), its last heartbeat and,
  after a clean stop, ``released_at``. The lock itself is an OS file lock or a PostgreSQL
  advisory lock (:mod:`core.lease`); this row says who holds it and whether the previous
  holder stopped cleanly.

Revision ID: 0004_account_leases
Revises: 0003_fill_journal
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_account_leases"
down_revision: str | Sequence[str] | None = "0003_fill_journal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "account_leases",
        sa.Column("key", sa.String(64), primary_key=True, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.BigInteger(), nullable=False),
        sa.Column("since", TIME, nullable=False),
        sa.Column("heartbeat_at", TIME, nullable=False),
        sa.Column("released_at", TIME, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("account_leases")
