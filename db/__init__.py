"""Database layer: SQLAlchemy models, engine set-up, migrations and the :class:`Repository`.

The ``db`` package imports ``framework`` (and ``utils``) only, never ``core``, ``api`` or
``strategies``. Schema metadata for Alembic: ``db.models.Base.metadata``; the migrations
(``db/migrations``) run at start-up through :func:`create_schema` / :func:`upgrade_schema`.
"""

from db.engine import create_schema, database_url, make_engine
from db.migrate import current_revision, upgrade_schema
from db.models import Base
from db.repository import Repository

__all__ = [
    "Base",
    "Repository",
    "create_schema",
    "current_revision",
    "database_url",
    "make_engine",
    "upgrade_schema",
]
