"""Build records and build logs kept in sqlite, so they survive restarts of the builder and hub.

One connection is shared by all threads and guarded by a lock; every write runs in its own
`BEGIN IMMEDIATE` transaction (log lines come in batches, one transaction each). The tornado
layer may call the store directly or through `asyncio.to_thread`.

A build's stored log is capped: its first half of the cap is kept as it came, then one
marker chunk, then the most recent half: older chunks of the tail are deleted as new ones
arrive, and the marker says how much of the middle was elided.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
import stat
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

DB_FILE_MODE = 0o600
DEFAULT_LOG_CAP_BYTES = 5 * 1024 * 1024
SCHEMA_VERSION = 3


def elided_marker(lines: int, size: int) -> str:
    """The chunk between a capped log's head and tail."""
    if not lines:
        return "[... the middle of this log is not kept: only its start and its end ...]\n"
    return (
        f"[... {lines} lines ({size / 1e6:.1f} MB) of this log elided: "
        "only its start and its end are kept ...]\n"
    )


class BuildState(StrEnum):
    """Where a build is in its life; the last three are final.

    A StrEnum is a `str` and an `Enum` (what ruff UP042 asks for), and f"{state}" gives the value.
    """

    QUEUED = "queued"
    BUILDING = "building"
    BUILT = "built"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES: frozenset[BuildState] = frozenset(
    {BuildState.BUILT, BuildState.FAILED, BuildState.CANCELLED}
)
ACTIVE_STATES: frozenset[BuildState] = frozenset({BuildState.QUEUED, BuildState.BUILDING})


@dataclass(frozen=True)
class BuildRecord:
    """A snapshot of one build as stored. There is deliberately no field for credentials."""

    id: str
    name: str
    image: str
    repository: str
    ref: str | None
    resolved_commit: str | None
    memory_gb: float | None
    cpu: float | None
    state: BuildState
    reason: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    image_size: int | None
    reused: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict for the API (state as its plain string value)."""
        data = asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> BuildRecord:
        return cls(
            id=row["id"],
            name=row["name"],
            image=row["image"],
            repository=row["repository"],
            ref=row["ref"],
            resolved_commit=row["resolved_commit"],
            memory_gb=row["memory_gb"],
            cpu=row["cpu"],
            state=BuildState(row["state"]),
            reason=row["reason"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            image_size=row["image_size"],
            reused=bool(row["reused"]),
        )


# Each entry upgrades the schema by one version; PRAGMA user_version records how far a DB got.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE builds (
            pk INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            image TEXT NOT NULL,
            repository TEXT NOT NULL,
            ref TEXT,
            resolved_commit TEXT,
            memory_gb REAL,
            cpu REAL,
            state TEXT NOT NULL
                CHECK (state IN ('queued', 'building', 'built', 'failed', 'cancelled')),
            reason TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            image_size INTEGER,
            reused INTEGER NOT NULL DEFAULT 0,
            log_seq INTEGER NOT NULL DEFAULT 0,
            log_bytes INTEGER NOT NULL DEFAULT 0,
            log_truncated INTEGER NOT NULL DEFAULT 0
        )
        """,
        "CREATE INDEX builds_by_name ON builds (name, pk)",
        "CREATE INDEX builds_by_commit ON builds (repository, resolved_commit, state, pk)",
        """
        CREATE TABLE build_logs (
            build_id TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (build_id, seq)
        ) WITHOUT ROWID
        """,
    ),
    # 2: the latest build of each image (the environments list) by index; nothing looks
    # builds up by commit any more (reuse is decided from the image's labels).
    (
        "CREATE INDEX builds_by_image ON builds (image, pk)",
        "DROP INDEX builds_by_commit",
    ),
    # 3: head and tail of a capped log (log_truncated now means "the tail is being kept").
    (
        "ALTER TABLE builds ADD COLUMN log_marker_seq INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE builds ADD COLUMN log_elided_lines INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE builds ADD COLUMN log_elided_bytes INTEGER NOT NULL DEFAULT 0",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION  # a new migration must bump SCHEMA_VERSION

_SELECT_RECORD = """
    SELECT id, name, image, repository, ref, resolved_commit, memory_gb, cpu, state, reason,
           created_at, started_at, finished_at, image_size, reused
    FROM builds
"""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _has_credentials(url: str) -> bool:
    """True when a repository URL carries a password or, over http(s), any user info (a token)."""
    try:
        parts = urlsplit(url)
        password, username = parts.password, parts.username
    except ValueError:
        return False
    if password is not None:
        return True
    # ssh's "git@host" user is not a secret; an http(s) user name usually is a token
    return parts.scheme.lower() in ("http", "https") and username is not None


def _set_mode(path: Path, mode: int) -> None:
    """Give `path` exactly `mode`, if it exists."""
    try:
        if stat.S_IMODE(path.stat().st_mode) != mode:
            path.chmod(mode)
    except FileNotFoundError:
        pass


class BuildStore:
    """Build records and their logs in one sqlite file; safe to share between threads."""

    def __init__(
        self,
        path: Path | str,
        *,
        log_cap_bytes: int = DEFAULT_LOG_CAP_BYTES,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """Open (creating if missing) the store at `path` and bring its schema up to date.

        `log_cap_bytes` caps the stored log of each build (UTF-8 bytes); `clock` returns
        an aware UTC datetime and exists so tests can control timestamps.
        """
        if log_cap_bytes <= 0:
            raise ValueError("log_cap_bytes must be positive")
        self.path = Path(path)
        self._log_cap = log_cap_bytes
        self._head_cap = log_cap_bytes // 2
        self._tail_cap = log_cap_bytes - self._head_cap
        self._clock = clock
        self._lock = threading.Lock()
        # Per build in tail mode: its tail chunks (seq, bytes) and their total.
        self._tails: dict[str, tuple[deque[tuple[int, int, int]], list[int]]] = {}

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # create the file ourselves so it is never, even briefly, readable by others
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, DB_FILE_MODE))
        _set_mode(self.path, DB_FILE_MODE)

        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        db.row_factory = sqlite3.Row
        self._db: sqlite3.Connection | None = db
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # durable enough under WAL, much faster
            db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except BaseException:
            self.close()
            raise
        # sqlite copies the db file's mode to these, but make sure
        for suffix in ("-wal", "-shm"):
            _set_mode(self.path.with_name(self.path.name + suffix), DB_FILE_MODE)

    # --- plumbing -------------------------------------------------------------------------

    def _now(self) -> str:
        return self._clock().astimezone(UTC).isoformat(timespec="milliseconds")

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the build store is closed")
        return self._db

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._connection()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._connection()
            # IMMEDIATE takes the write lock up front, so read-then-write cannot interleave
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this code "
                    f"({SCHEMA_VERSION}); refusing to touch it"
                )
            for number, statements in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {int(number)}")

    def _get(self, db: sqlite3.Connection, build_id: str) -> BuildRecord | None:
        row = db.execute(_SELECT_RECORD + " WHERE id = ?", (build_id,)).fetchone()
        return BuildRecord._from_row(row) if row else None

    # --- records --------------------------------------------------------------------------

    def create(
        self,
        *,
        name: str,
        image: str,
        repository: str,
        ref: str | None = None,
        resolved_commit: str | None = None,
        memory_gb: float | None = None,
        cpu: float | None = None,
        build_id: str | None = None,
    ) -> BuildRecord:
        """Store a new QUEUED build and return it. Repository URLs with credentials are refused."""
        for label, value in (("name", name), ("image", image), ("repository", repository)):
            if not value:
                raise ValueError(f"{label} must not be empty")
        if _has_credentials(repository):
            # the message must not echo the URL: it holds the secret
            raise ValueError("repository URL must not contain credentials")
        build_id = build_id or uuid.uuid4().hex
        with self._transaction() as db:
            db.execute(
                """
                INSERT INTO builds (id, name, image, repository, ref, resolved_commit,
                                    memory_gb, cpu, state, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                (
                    build_id,
                    name,
                    image,
                    repository,
                    ref,
                    resolved_commit,
                    memory_gb,
                    cpu,
                    BuildState.QUEUED.value,
                    self._now(),
                ),
            )
            record = self._get(db, build_id)
        assert record is not None
        return record

    def get(self, build_id: str) -> BuildRecord | None:
        """The build with this id, or None."""
        with self._read() as db:
            return self._get(db, build_id)

    def list(self, limit: int = 100) -> builtins.list[BuildRecord]:
        """Up to `limit` builds, newest first."""
        if limit <= 0:
            return []
        with self._read() as db:
            rows = db.execute(_SELECT_RECORD + " ORDER BY pk DESC LIMIT ?", (limit,)).fetchall()
        return [BuildRecord._from_row(row) for row in rows]

    def latest_for_name(self, name: str) -> BuildRecord | None:
        """The newest build of `name`, in any state, or None."""
        with self._read() as db:
            row = db.execute(
                _SELECT_RECORD + " WHERE name = ? ORDER BY pk DESC LIMIT 1", (name,)
            ).fetchone()
        return BuildRecord._from_row(row) if row else None

    def builds_of_image(self, image: str) -> builtins.list[BuildRecord]:
        """Every build recorded for `image`, newest first."""
        with self._read() as db:
            rows = db.execute(
                _SELECT_RECORD + " WHERE image = ? ORDER BY pk DESC", (image,)
            ).fetchall()
        return [BuildRecord._from_row(row) for row in rows]

    def latest_per_image(self) -> builtins.list[BuildRecord]:
        """The newest build of every image, in any state, newest first (no limit)."""
        with self._read() as db:
            latest = " WHERE pk IN (SELECT MAX(pk) FROM builds GROUP BY image) ORDER BY pk DESC"
            rows = db.execute(_SELECT_RECORD + latest).fetchall()
        return [BuildRecord._from_row(row) for row in rows]

    def set_state(
        self,
        build_id: str,
        state: BuildState,
        *,
        reason: str | None = None,
        resolved_commit: str | None = None,
        image_size: int | None = None,
        reused: bool | None = None,
    ) -> BuildRecord:
        """Move a build to `state` and return the updated record.

        Sets started_at on BUILDING and finished_at on a terminal state; optional fields
        left as None keep their stored value. Raises KeyError for an unknown build and
        ValueError when the build is already terminal (history is not rewritten) or
        when asked to go back from BUILDING to QUEUED.
        """
        state = BuildState(state)
        now = self._now()
        with self._transaction() as db:
            row = db.execute(
                "SELECT state, started_at, finished_at FROM builds WHERE id = ?", (build_id,)
            ).fetchone()
            if row is None:
                raise KeyError(build_id)
            current = BuildState(row["state"])
            if current in TERMINAL_STATES:
                raise ValueError(
                    f"build {build_id} is already {current.value}; cannot make it {state.value}"
                )
            if state is BuildState.QUEUED and current is not BuildState.QUEUED:
                raise ValueError(f"build {build_id} is {current.value}; cannot re-queue it")
            started_at = row["started_at"]
            if state is BuildState.BUILDING and started_at is None:
                started_at = now
            finished_at = now if state in TERMINAL_STATES else row["finished_at"]
            db.execute(
                """
                UPDATE builds SET
                    state = ?,
                    started_at = ?,
                    finished_at = ?,
                    reason = COALESCE(?, reason),
                    resolved_commit = COALESCE(?, resolved_commit),
                    image_size = COALESCE(?, image_size),
                    reused = COALESCE(?, reused)
                WHERE id = ?
                """,
                (
                    state.value,
                    started_at,
                    finished_at,
                    reason,
                    resolved_commit,
                    image_size,
                    None if reused is None else int(reused),
                    build_id,
                ),
            )
            record = self._get(db, build_id)
        assert record is not None
        return record

    def set_image(self, build_id: str, image: str) -> BuildRecord:
        """Record the image name the build settled on (e.g. the default branch's name)."""
        with self._transaction() as db:
            if (
                db.execute("UPDATE builds SET image = ? WHERE id = ?", (image, build_id)).rowcount
                == 0
            ):
                raise KeyError(build_id)
            record = self._get(db, build_id)
        assert record is not None
        return record

    def delete(self, build_id: str) -> bool:
        """Remove a build and its log; False if there was no such build."""
        with self._transaction() as db:
            db.execute("DELETE FROM build_logs WHERE build_id = ?", (build_id,))
            self._tails.pop(build_id, None)
            return db.execute("DELETE FROM builds WHERE id = ?", (build_id,)).rowcount > 0

    def fail_interrupted(self, reason: str) -> builtins.list[str]:
        """Mark every QUEUED or BUILDING build FAILED with `reason`; return their ids.

        Meant for builder start-up: such builds were cut off by a restart and nothing
        is working on them any more. Each also gets a log line saying so.
        """
        now = self._now()
        with self._transaction() as db:
            ids = [
                row["id"]
                for row in db.execute(
                    "SELECT id FROM builds WHERE state IN (?, ?) ORDER BY pk",
                    (BuildState.QUEUED.value, BuildState.BUILDING.value),
                )
            ]
            for build_id in ids:
                db.execute(
                    "UPDATE builds SET state = ?, reason = ?, finished_at = ? WHERE id = ?",
                    (BuildState.FAILED.value, reason, now, build_id),
                )
                self._append_log(db, build_id, [f"Build marked as failed: {reason}\n"])
        return ids

    # --- logs -----------------------------------------------------------------------------

    def append_log(self, build_id: str, text: str) -> int:
        """Append one log chunk; its sequence number (see `append_logs`)."""
        return self.append_logs(build_id, [text])

    def append_logs(self, build_id: str, texts: Iterable[str]) -> int:
        """Append log chunks in one transaction; the last sequence number (1, 2, ... per build).

        The first half of the cap is kept as it came; past it, a marker chunk, then the
        newest chunks up to the other half (older tail chunks are deleted, the marker
        counts them). Raises KeyError for an unknown build.
        """
        with self._transaction() as db:
            return self._append_log(db, build_id, texts)

    def _append_log(self, db: sqlite3.Connection, build_id: str, texts: Iterable[str]) -> int:
        if isinstance(texts, str):
            texts = [texts]
        row = db.execute(
            "SELECT log_seq, log_bytes, log_truncated, log_marker_seq, log_elided_lines,"
            " log_elided_bytes FROM builds WHERE id = ?",
            (build_id,),
        ).fetchone()
        if row is None:
            raise KeyError(build_id)
        seq, head_used, tailing = row["log_seq"], row["log_bytes"], bool(row["log_truncated"])
        marker = row["log_marker_seq"]
        inserts: list[tuple[str, int, str]] = []
        for text in texts:
            # lone surrogates (from undecodable output) cannot be stored; replace them
            data = text.encode("utf-8", errors="replace")
            if not tailing and head_used + len(data) <= self._head_cap:
                seq += 1
                inserts.append((build_id, seq, data.decode("utf-8")))
                head_used += len(data)
                continue
            if not tailing:
                # keep what fits of this chunk in the head, cut on a character boundary
                head = data[: self._head_cap - head_used].decode("utf-8", errors="ignore")
                if head:
                    seq += 1
                    inserts.append((build_id, seq, head))
                    head_used += len(head.encode("utf-8"))
                    data = data[len(head.encode("utf-8")) :]
                seq += 1
                marker = seq
                inserts.append((build_id, seq, elided_marker(0, 0)))
                tailing = True
                self._tails[build_id] = (deque(), [0])
            if data:
                seq += 1
                inserts.append((build_id, seq, data.decode("utf-8", errors="replace")))
                self._tail(db, build_id, marker)[0].append((seq, len(data), data.count(b"\n")))
                self._tail(db, build_id, marker)[1][0] += len(data)
        db.executemany("INSERT INTO build_logs (build_id, seq, text) VALUES (?, ?, ?)", inserts)
        elided_lines, elided_bytes = row["log_elided_lines"], row["log_elided_bytes"]
        if tailing:
            chunks, total = self._tail(db, build_id, marker)
            dropped_to = 0
            while total[0] > self._tail_cap and len(chunks) > 1:
                dropped_seq, size, lines = chunks.popleft()
                total[0] -= size
                dropped_to = dropped_seq
                elided_lines += lines
                elided_bytes += size
            if dropped_to:
                db.execute(
                    "DELETE FROM build_logs WHERE build_id = ? AND seq > ? AND seq <= ?",
                    (build_id, marker, dropped_to),
                )
                db.execute(
                    "UPDATE build_logs SET text = ? WHERE build_id = ? AND seq = ?",
                    (elided_marker(elided_lines, elided_bytes), build_id, marker),
                )
        db.execute(
            "UPDATE builds SET log_seq = ?, log_bytes = ?, log_truncated = ?, log_marker_seq = ?,"
            " log_elided_lines = ?, log_elided_bytes = ? WHERE id = ?",
            (seq, head_used, int(tailing), marker, elided_lines, elided_bytes, build_id),
        )
        return seq

    def _tail(
        self, db: sqlite3.Connection, build_id: str, marker: int
    ) -> tuple[deque[tuple[int, int, int]], list[int]]:
        """The tail index of a build in tail mode: (seq, bytes, lines) of each chunk and the
        total bytes (read back from the table if not known)."""
        if build_id not in self._tails:
            rows = db.execute(
                "SELECT seq, length(CAST(text AS BLOB)) AS size,"
                " length(text) - length(replace(text, char(10), '')) AS lines"
                " FROM build_logs WHERE build_id = ? AND seq > ? ORDER BY seq",
                (build_id, marker),
            ).fetchall()
            chunks = deque((r["seq"], r["size"], r["lines"]) for r in rows)
            self._tails[build_id] = (chunks, [sum(size for _, size, _ in chunks)])
        return self._tails[build_id]

    def read_log(self, build_id: str, after: int = 0) -> builtins.list[tuple[int, str]]:
        """Log chunks of a build with seq > `after`, in order (empty for an unknown build).

        `after` is the last seq a client has seen, e.g. an SSE Last-Event-ID.
        """
        with self._read() as db:
            rows = db.execute(
                "SELECT seq, text FROM build_logs WHERE build_id = ? AND seq > ? ORDER BY seq",
                (build_id, after),
            ).fetchall()
        return [(row["seq"], row["text"]) for row in rows]

    def full_log(self, build_id: str) -> str:
        """The whole stored log of a build as one string."""
        return "".join(text for _, text in self.read_log(build_id))

    # --- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; later calls raise RuntimeError. Safe to call twice."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
