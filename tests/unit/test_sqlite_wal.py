"""The hub's database: write-ahead log, no sync per commit, and what it commits stays."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from gallery_hub.sqlite_wal import use_write_ahead_log


def test_sqlite_connections_use_the_write_ahead_log_and_keep_their_commits(tmp_path):
    use_write_ahead_log()
    use_write_ahead_log()  # twice is once
    url = f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
    engine = create_engine(url)
    with engine.begin() as db:
        assert db.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        db.execute(text("CREATE TABLE users (name TEXT)"))
        db.execute(text("INSERT INTO users VALUES ('gallery-1')"))
    engine.dispose()  # as a hub that stopped; a new one reads what was committed
    with create_engine(url).connect() as db:
        assert db.execute(text("SELECT name FROM users")).scalars().all() == ["gallery-1"]
