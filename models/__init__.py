"""SQLAlchemy 2.0 tables, engine/session setup, Alembic migrations."""

from models.base import Base
from models.tables import (
    Achievement,
    IngestError,
    IngestRun,
    Need,
    Organisation,
)

__all__ = ["Achievement", "Base", "IngestError", "IngestRun", "Need", "Organisation"]
