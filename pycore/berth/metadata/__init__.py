"""Metadata: the daemon's SQLite database (``metadata.db``).

Public interface: :class:`Database` (``transaction()``, ``query``,
``query_one``, ``execute``, ``migrate(component, migrations)``,
``schema_version``). Each component keeps its own ordered migration list and
calls ``migrate`` at start-up; see :mod:`berth.metadata.database`.
"""

from berth.metadata.database import Database, Migration

__all__ = ["Database", "Migration"]
