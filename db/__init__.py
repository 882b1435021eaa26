"""Database layer: SQLAlchemy models, engine set-up and the :class:`Repository`.

The ``db`` package imports ``framework`` (and ``utils``) only, never ``core``, ``api`` or
``strategies``. Schema metadata for Alembic: ``db.models.Base.metadata``.
"""

from db.engine import create_schema, database_url, make_engine
from db.models import Base
from db.repository import Repository

__all__ = ["Base", "Repository", "create_schema", "database_url", "make_engine"]
