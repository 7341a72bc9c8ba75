"""The hub's SQLite database in write-ahead-log mode: a commit waits for no disk sync.

JupyterHub commits several times per launch (the visitor, its roles, its server, its
tokens) on its one event loop. With SQLite's default rollback journal each commit waits
for the disk to sync more than once; under twenty simultaneous launches the hub's loop
spent most of its time there (py-spy), and every other request waited behind it. In WAL
mode with `synchronous=NORMAL` a commit is a write to the log, which is synced at
checkpoints: a crash of the hub's process or container loses nothing it committed; a
power loss of the host may lose the last commits (SQLite's documented trade for WAL).
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine


def use_write_ahead_log() -> None:
    """Every SQLite connection the process opens from now on: WAL, synchronous=NORMAL."""
    if not event.contains(Engine, "connect", _on_connect):
        event.listen(Engine, "connect", _on_connect)


def _on_connect(dbapi_connection, _record) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()
