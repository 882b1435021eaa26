"""Live trading: trailing-stop peak price and re-placed orders.

- ``positions.peak_price`` (Double, nullable): highest price (KRW per share) since entry, for
  a trailing stop; ``NULL`` for rows written before (no peak known yet).
- ``orders.replaces`` (String(64), nullable): client order id of the timed-out order this
  order re-places; ``NULL`` for an original order.
- ``orders.attempt`` (Integer, not null, server default 0): 0 for an original order, n for
  its n-th re-placement. Existing rows get 0.

SQLite: batch mode emits plain ``ALTER TABLE ... ADD COLUMN`` for these (a constant server
default, no expression), never a table copy. That matters: a copy drops ``orders``, and with
``PRAGMA foreign_keys=ON`` (set by ``db.engine``) that would cascade-delete
``order_status_history``. The downgrade therefore forbids the copy too (``recreate="never"``:
SQLite >= 3.35 drops a plain column natively).

Revision ID: 0002_live_trading
Revises: 0001_initial
Create Date: 2024-06-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_live_trading"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("positions") as batch:
        batch.add_column(sa.Column("peak_price", sa.Double(), nullable=True))
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("replaces", sa.String(64), nullable=True))
        # A string default (not sa.text): SQLite batch mode would copy the table for an
        # expression default; '0' is an integer 0 on both back ends.
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("orders", recreate="never") as batch:
        batch.drop_column("attempt")
        batch.drop_column("replaces")
    with op.batch_alter_table("positions", recreate="never") as batch:
        batch.drop_column("peak_price")
