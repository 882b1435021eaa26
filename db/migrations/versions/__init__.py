"""Alembic revisions, oldest first: ``0001_initial``, ``0002_live_trading``,
``0003_fill_journal``, ``0004_account_leases``."""
