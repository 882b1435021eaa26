"""Alembic revisions, oldest first: ``0001_initial``, ``0002_live_trading``."""
