"""Alembic migration environment of the trading database (see :mod:`db.migrate`)."""
