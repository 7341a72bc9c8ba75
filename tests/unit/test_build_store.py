"""Tests of the sqlite build store: records, state rules, logs, restarts, permissions."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gallery_builder.build_store import (
    DB_FILE_MODE,
    SCHEMA_VERSION,
    TERMINAL_STATES,
    BuildRecord,
    BuildState,
    BuildStore,
    elided_marker,
)

REPO = "https://github.com/NeuroLang/neurolang_examples"
COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


class FakeClock:
    """A clock that moves one second forward on every reading."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        current = self.now
        self.now += timedelta(seconds=1)
        return current


def at(second: int) -> str:
    """The timestamp the FakeClock gives on reading number `second` (0-based)."""
    return f"2025-01-02T03:04:{5 + second:02d}.000+00:00"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "builds.sqlite"


@pytest.fixture
def store(db_path: Path):
    with BuildStore(db_path, clock=FakeClock()) as s:
        yield s


def new_build(store: BuildStore, name: str = "myenv", **fields) -> BuildRecord:
    fields.setdefault("image", f"{name}:main")
    fields.setdefault("repository", REPO)
    return store.create(name=name, **fields)


# --- states ---------------------------------------------------------------------------------


def test_states_are_lower_case_strings():
    assert [s.value for s in BuildState] == ["queued", "building", "built", "failed", "cancelled"]
    assert BuildState("built") is BuildState.BUILT
    assert isinstance(BuildState.BUILT, str)
    assert f"{BuildState.FAILED}" == "failed"
    assert {BuildState.BUILT, BuildState.FAILED, BuildState.CANCELLED} == TERMINAL_STATES


# --- records --------------------------------------------------------------------------------


def test_create_then_get(store: BuildStore):
    created = store.create(
        name="myenv",
        image="myenv:main",
        repository=REPO,
        ref="main",
        memory_gb=2.5,
        cpu=1.0,
        build_id="b1",
    )
    assert created == BuildRecord(
        id="b1",
        name="myenv",
        image="myenv:main",
        repository=REPO,
        ref="main",
        resolved_commit=None,
        memory_gb=2.5,
        cpu=1.0,
        state=BuildState.QUEUED,
        reason=None,
        created_at=at(0),
        started_at=None,
        finished_at=None,
        image_size=None,
        reused=False,
    )
    assert store.get("b1") == created


def test_create_generates_unique_hex_ids(store: BuildStore):
    first, second = new_build(store), new_build(store)
    assert first.id != second.id
    assert len(first.id) == 32
    int(first.id, 16)  # raises if not hex


def test_get_unknown_is_none(store: BuildStore):
    assert store.get("nope") is None


def test_create_refuses_empty_fields(store: BuildStore):
    with pytest.raises(ValueError, match="name"):
        store.create(name="", image="x:main", repository=REPO)
    assert store.list() == []


def test_list_is_newest_first_and_limited(store: BuildStore):
    ids = [new_build(store, name=f"env{i}").id for i in range(5)]
    assert [r.id for r in store.list()] == ids[::-1]
    assert [r.id for r in store.list(limit=2)] == [ids[4], ids[3]]
    assert store.list(limit=0) == []


def test_latest_for_name(store: BuildStore):
    first = new_build(store, "alpha")
    new_build(store, "beta")
    second = new_build(store, "alpha")
    assert store.latest_for_name("alpha") == second
    assert store.latest_for_name("alpha") != first
    assert store.latest_for_name("gamma") is None


def test_to_json_is_plain_and_serialisable(store: BuildStore):
    record = new_build(store, build_id="b1", ref="v1")
    data = record.to_json()
    assert data["state"] == "queued"
    assert type(data["state"]) is str
    assert data["id"] == "b1"
    assert data["reused"] is False
    assert json.loads(json.dumps(data)) == data


# --- credentials ----------------------------------------------------------------------------


def test_record_has_no_credential_field():
    names = {f.name for f in dataclasses.fields(BuildRecord)}
    for word in ("password", "token", "secret", "credential", "auth", "key"):
        assert [name for name in names if word in name] == []
    assert names == {
        "id",
        "name",
        "image",
        "repository",
        "ref",
        "resolved_commit",
        "memory_gb",
        "cpu",
        "state",
        "reason",
        "created_at",
        "started_at",
        "finished_at",
        "image_size",
        "reused",
    }


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2@github.com/org/repo",
        "https://ghp_abcdef@github.com/org/repo",
        "ssh://git:hunter2@example.org/repo.git",
    ],
)
def test_repository_with_credentials_is_refused(store: BuildStore, url: str):
    with pytest.raises(ValueError, match="credentials") as info:
        store.create(name="x", image="x:main", repository=url)
    assert "hunter2" not in str(info.value)
    assert "ghp_abcdef" not in str(info.value)
    assert store.list() == []


@pytest.mark.parametrize(
    "url", ["git@github.com:org/repo.git", "ssh://git@github.com/org/repo.git", REPO]
)
def test_repository_without_credentials_is_accepted(store: BuildStore, url: str):
    assert new_build(store, repository=url).repository == url


# --- state transitions ----------------------------------------------------------------------


def test_building_then_built_sets_timestamps_and_fields(store: BuildStore):
    build = new_build(store)  # clock reading 0
    building = store.set_state(build.id, BuildState.BUILDING, resolved_commit=COMMIT_A)  # 1
    assert building.state is BuildState.BUILDING
    assert building.started_at == at(1)
    assert building.finished_at is None
    assert building.resolved_commit == COMMIT_A

    built = store.set_state(build.id, BuildState.BUILT, image_size=123_456)  # 2
    assert built.state is BuildState.BUILT
    assert built.created_at == at(0)
    assert built.started_at == at(1)
    assert built.finished_at == at(2)
    assert built.image_size == 123_456
    assert built.resolved_commit == COMMIT_A  # kept when not given again
    assert built.reused is False
    assert store.get(build.id) == built


def test_building_twice_keeps_first_start(store: BuildStore):
    build = new_build(store)
    store.set_state(build.id, BuildState.BUILDING)
    again = store.set_state(build.id, BuildState.BUILDING)
    assert again.started_at == at(1)


def test_queued_straight_to_built_when_reused(store: BuildStore):
    build = new_build(store)
    done = store.set_state(build.id, "built", resolved_commit=COMMIT_A, reused=True)
    assert done.state is BuildState.BUILT
    assert done.reused is True
    assert done.started_at is None
    assert done.finished_at == at(1)


def test_failed_keeps_reason(store: BuildStore):
    build = new_build(store)
    store.set_state(build.id, BuildState.BUILDING)
    failed = store.set_state(build.id, BuildState.FAILED, reason="repo2docker exited with 1")
    assert failed.state is BuildState.FAILED
    assert failed.reason == "repo2docker exited with 1"
    assert failed.finished_at == at(2)


@pytest.mark.parametrize("final", sorted(TERMINAL_STATES))
@pytest.mark.parametrize("attempt", list(BuildState))
def test_terminal_record_refuses_any_change(
    store: BuildStore, final: BuildState, attempt: BuildState
):
    build = new_build(store)
    before = store.set_state(build.id, final, reason="first")
    with pytest.raises(ValueError, match="already"):
        store.set_state(build.id, attempt, reason="second")
    assert store.get(build.id) == before


def test_cancel_after_built_does_not_rewrite_history(store: BuildStore):
    build = new_build(store)
    store.set_state(build.id, BuildState.BUILDING)
    built = store.set_state(build.id, BuildState.BUILT)
    with pytest.raises(ValueError):
        store.set_state(build.id, BuildState.CANCELLED, reason="user cancelled")
    after = store.get(build.id)
    assert after is not None
    assert after.state is BuildState.BUILT
    assert after.reason is None
    assert after.finished_at == built.finished_at


def test_building_cannot_go_back_to_queued(store: BuildStore):
    build = new_build(store)
    store.set_state(build.id, BuildState.BUILDING)
    with pytest.raises(ValueError, match="re-queue"):
        store.set_state(build.id, BuildState.QUEUED)
    assert store.get(build.id).state is BuildState.BUILDING


def test_set_state_of_unknown_build_raises_key_error(store: BuildStore):
    with pytest.raises(KeyError):
        store.set_state("nope", BuildState.BUILDING)


def test_set_state_rejects_unknown_state(store: BuildStore):
    build = new_build(store)
    with pytest.raises(ValueError):
        store.set_state(build.id, "exploded")
    assert store.get(build.id).state is BuildState.QUEUED


# --- latest per image ----------------------------------------------------------------------


def test_latest_per_image_has_the_newest_build_of_every_image(store: BuildStore):
    old = new_build(store, "a")
    store.set_state(old.id, BuildState.FAILED, reason="boom")
    other = new_build(store, "b")
    newest_a = new_build(store, "a")
    tagged = new_build(store, "a", image="a:v1")
    assert [r.id for r in store.latest_per_image()] == [tagged.id, newest_a.id, other.id]


def test_latest_per_image_is_not_truncated(store: BuildStore):
    for n in range(1200):
        new_build(store, f"env{n}")
    latest = store.latest_per_image()
    assert len(latest) == 1200
    assert latest[0].name == "env1199"


def test_an_old_schema_is_upgraded(db_path: Path):
    db_path.parent.mkdir(parents=True)
    db = sqlite3.connect(db_path)
    for statement in __import__("gallery_builder.build_store").build_store._MIGRATIONS[0]:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO builds (id, name, image, repository, state, created_at)"
        " VALUES ('x', 'a', 'a:main', 'https://x.org/r', 'built', '2025-01-01T00:00:00+00:00')"
    )
    db.commit()
    db.close()
    with BuildStore(db_path) as store:
        assert [r.id for r in store.latest_per_image()] == ["x"]
    db = sqlite3.connect(db_path)
    try:
        indexes = {row[1] for row in db.execute("PRAGMA index_list(builds)")}
        assert "builds_by_image" in indexes and "builds_by_commit" not in indexes
    finally:
        db.close()


# --- logs -----------------------------------------------------------------------------------


def test_append_and_read_log(store: BuildStore):
    build = new_build(store)
    assert store.append_log(build.id, "Step 1\n") == 1
    assert store.append_log(build.id, "Step 2\n") == 2
    assert store.append_log(build.id, "Step 3\n") == 3
    assert store.read_log(build.id) == [(1, "Step 1\n"), (2, "Step 2\n"), (3, "Step 3\n")]
    assert store.read_log(build.id, after=2) == [(3, "Step 3\n")]
    assert store.read_log(build.id, after=3) == []
    assert store.full_log(build.id) == "Step 1\nStep 2\nStep 3\n"


def test_log_seqs_are_per_build(store: BuildStore):
    one, two = new_build(store, "one"), new_build(store, "two")
    assert store.append_log(one.id, "a") == 1
    assert store.append_log(two.id, "b") == 1
    assert store.append_log(one.id, "c") == 2
    assert store.full_log(one.id) == "ac"
    assert store.full_log(two.id) == "b"


def test_append_log_to_unknown_build_raises_key_error(store: BuildStore):
    with pytest.raises(KeyError):
        store.append_log("nope", "hello")


def test_read_log_of_unknown_build_is_empty(store: BuildStore):
    assert store.read_log("nope") == []
    assert store.full_log("nope") == ""


def test_log_can_still_be_appended_after_finish(store: BuildStore):
    build = new_build(store)
    store.set_state(build.id, BuildState.BUILT)
    assert store.append_log(build.id, "pushed\n") == 1


def test_undecodable_text_is_stored_with_replacement(store: BuildStore):
    build = new_build(store)
    text = b"bad \xff byte\n".decode("utf-8", errors="surrogateescape")
    store.append_log(build.id, text)
    assert store.full_log(build.id) == "bad ? byte\n"


def test_a_capped_log_keeps_its_head_and_its_tail_with_a_marker_between(db_path: Path):
    # cap 40: the first 20 bytes as they came, then the newest 20
    with BuildStore(db_path, log_cap_bytes=40) as store:
        build = new_build(store)
        assert store.append_logs(build.id, ["0123456789", "0123456789"]) == 2
        assert store.append_log(build.id, "abcdefghij") == 4  # the head is full: marker
        assert store.read_log(build.id)[2] == (3, elided_marker(0, 0))
        store.append_logs(build.id, [f"line {n:04}\n" for n in range(100)])
        log = store.read_log(build.id)
        assert log[:2] == [(1, "0123456789"), (2, "0123456789")]
        seq, marker = log[2]
        assert seq == 3 and "elided" in marker and "only its start and its end" in marker
        assert "98 lines" in marker  # 98 of the 100 lines (and "abcdefghij", no line yet)
        assert [text for _, text in log[3:]] == ["line 0098\n", "line 0099\n"]
        # Numbers keep growing: a stream that resumes after any seen id misses nothing new.
        assert store.append_log(build.id, "last\n") == 105
        assert store.full_log(build.id).endswith("line 0099\nlast\n")


def test_the_marker_counts_the_lines_of_elided_chunks_across_store_instances(db_path: Path):
    with BuildStore(db_path, log_cap_bytes=40) as store:
        build = new_build(store)
        store.append_logs(build.id, ["head of the log ...\n", "a\nb\nc\n", "d\ne\n"])
    with BuildStore(db_path, log_cap_bytes=40) as store:  # the tail index read back
        store.append_logs(build.id, ["f\ng\nh\ni\nj\n", "k" * 9 + "\n" + "l" * 9 + "\n"])
        _head, marker, *tail = store.read_log(build.id)
        # "a" to "e" counted from the table, "f" to "j" from the new chunk: ten lines
        assert "10 lines" in marker[1]
        assert tail == [(6, "k" * 9 + "\n" + "l" * 9 + "\n")]


def test_a_capped_log_stays_capped_across_store_instances(db_path: Path):
    with BuildStore(db_path, log_cap_bytes=40) as store:
        build = new_build(store)
        store.append_logs(build.id, ["x" * 19 + "\n", "y" * 9 + "\n", "z" * 9 + "\n"])
    with BuildStore(db_path, log_cap_bytes=40) as store:
        store.append_logs(build.id, ["w" * 9 + "\n"] * 5)
        tail = store.read_log(build.id)[2:]
        assert sum(len(text) for _, text in tail) <= 20 + 2
        assert tail[-1][1] == "w" * 9 + "\n" and "elided" in store.read_log(build.id)[1][1]


def test_log_cap_cuts_the_head_on_a_character_boundary(db_path: Path):
    with BuildStore(db_path, log_cap_bytes=10) as store:
        build = new_build(store)
        store.append_log(build.id, "ééé")  # 6 bytes: only two characters fit the head of 5
        log = store.read_log(build.id)
        assert log[0] == (1, "éé") and "the middle" in log[1][1] and log[2] == (3, "é")


def test_log_cap_exact_fit_is_not_truncated(db_path: Path):
    with BuildStore(db_path, log_cap_bytes=8) as store:
        build = new_build(store)
        assert store.append_log(build.id, "abcd") == 1
        assert store.read_log(build.id) == [(1, "abcd")]


def test_log_cap_is_per_build(db_path: Path):
    with BuildStore(db_path, log_cap_bytes=8) as store:
        one, two = new_build(store, "one"), new_build(store, "two")
        store.append_log(one.id, "12345")
        assert store.append_log(two.id, "1234") == 1
        assert store.full_log(two.id) == "1234"


def test_default_log_cap_is_5_mib(store: BuildStore):
    build = new_build(store)
    mib = "x" * (1024 * 1024)
    for _ in range(2):
        store.append_log(build.id, mib)
    assert "elided" not in store.full_log(build.id)
    store.append_log(build.id, mib)
    assert "the middle" in store.full_log(build.id)


def test_log_cap_must_be_positive(db_path: Path):
    with pytest.raises(ValueError):
        BuildStore(db_path, log_cap_bytes=0)


def test_concurrent_appends_get_unique_increasing_seqs(store: BuildStore):
    build = new_build(store)
    threads_count, per_thread = 8, 50
    results: dict[int, list[int]] = {}
    start = threading.Barrier(threads_count)

    def worker(n: int) -> None:
        start.wait()
        results[n] = [store.append_log(build.id, f"t{n}-{i}\n") for i in range(per_thread)]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    all_seqs = sorted(seq for seqs in results.values() for seq in seqs)
    assert all_seqs == list(range(1, threads_count * per_thread + 1))
    for seqs in results.values():
        assert seqs == sorted(seqs)
    chunks = store.read_log(build.id)
    assert [seq for seq, _ in chunks] == all_seqs
    # each thread's chunks appear in the order it wrote them
    for n in range(threads_count):
        mine = [text for _, text in chunks if text.startswith(f"t{n}-")]
        assert mine == [f"t{n}-{i}\n" for i in range(per_thread)]


def test_concurrent_state_changes_and_reads(store: BuildStore):
    builds = [new_build(store, f"env{i}") for i in range(20)]
    errors: list[BaseException] = []

    def finish(record: BuildRecord) -> None:
        try:
            store.set_state(record.id, BuildState.BUILDING)
            store.append_log(record.id, "working\n")
            store.list()
            store.set_state(record.id, BuildState.BUILT)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=finish, args=(b,)) for b in builds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {r.state for r in store.list()} == {BuildState.BUILT}


# --- delete ---------------------------------------------------------------------------------


def test_delete_removes_record_and_log(store: BuildStore):
    gone, kept = new_build(store, "gone"), new_build(store, "kept")
    store.append_log(gone.id, "bye\n")
    store.append_log(kept.id, "hi\n")
    assert store.delete(gone.id) is True
    assert store.get(gone.id) is None
    assert store.read_log(gone.id) == []
    assert store.delete(gone.id) is False
    assert [r.id for r in store.list()] == [kept.id]
    assert store.full_log(kept.id) == "hi\n"


# --- restarts -------------------------------------------------------------------------------


def test_records_and_logs_survive_reopening(db_path: Path):
    store = BuildStore(db_path)
    build = new_build(store, ref="main")
    store.set_state(build.id, BuildState.BUILDING, resolved_commit=COMMIT_A)
    store.append_log(build.id, "first\n")
    built = store.set_state(build.id, BuildState.BUILT, image_size=42)
    store.close()

    reopened = BuildStore(db_path)
    try:
        assert reopened.get(build.id) == built
        assert reopened.latest_per_image() == [built]
        assert reopened.append_log(build.id, "second\n") == 2  # seq continues after restart
        assert reopened.full_log(build.id) == "first\nsecond\n"
        with pytest.raises(ValueError):
            reopened.set_state(build.id, BuildState.CANCELLED)
    finally:
        reopened.close()


def test_log_cap_state_survives_reopening(db_path: Path):
    with BuildStore(db_path, log_cap_bytes=6) as store:
        build = new_build(store)
        store.append_log(build.id, "abcd")  # "abc", the marker, "d"
    with BuildStore(db_path, log_cap_bytes=6) as store:
        assert store.append_log(build.id, "ef") == 4
        log = store.read_log(build.id)
        assert (
            log[0] == (1, "abc") and "the middle" in log[1][1] and log[2:] == [(3, "d"), (4, "ef")]
        )


def test_fail_interrupted_fails_queued_and_building_only(db_path: Path):
    with BuildStore(db_path, clock=FakeClock()) as store:
        queued = new_build(store, "queued")
        building = new_build(store, "building")
        started_at = store.set_state(building.id, BuildState.BUILDING).started_at
        store.append_log(building.id, "Step 1\n")
        built = store.set_state(new_build(store, "built").id, BuildState.BUILT)
        cancelled = store.set_state(
            new_build(store, "cancelled").id, BuildState.CANCELLED, reason="user"
        )

    reason = "builder restarted while the build was running"
    with BuildStore(db_path) as store:
        assert store.fail_interrupted(reason) == [queued.id, building.id]

        for build_id in (queued.id, building.id):
            record = store.get(build_id)
            assert record.state is BuildState.FAILED
            assert record.reason == reason
            assert record.finished_at is not None
            assert store.full_log(build_id).endswith(f"Build marked as failed: {reason}\n")
        assert store.full_log(building.id).startswith("Step 1\n")
        assert started_at is not None
        assert store.get(building.id).started_at == started_at  # kept, not cleared
        assert store.get(queued.id).started_at is None

        assert store.get(built.id) == built
        assert store.get(cancelled.id) == cancelled
        assert store.full_log(built.id) == ""

        assert store.fail_interrupted(reason) == []  # nothing left to fail


# --- file and schema ------------------------------------------------------------------------


def test_creates_missing_directories_and_a_private_file(tmp_path: Path):
    path = tmp_path / "a" / "b" / "builds.sqlite"
    with BuildStore(path) as store:
        new_build(store)
        assert path.is_file()
        assert stat.S_IMODE(path.stat().st_mode) == DB_FILE_MODE == 0o600
        for suffix in ("-wal", "-shm"):
            sidecar = path.with_name(path.name + suffix)
            if sidecar.exists():
                assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600


def test_existing_world_readable_file_is_tightened(db_path: Path):
    db_path.parent.mkdir(parents=True)
    db_path.touch()
    db_path.chmod(0o644)
    with BuildStore(db_path):
        pass
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_uses_wal_and_records_schema_version(db_path: Path):
    with BuildStore(db_path):
        pass
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    finally:
        db.close()


def test_refuses_a_newer_schema(db_path: Path):
    with BuildStore(db_path):
        pass
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        BuildStore(db_path)


def test_closed_store_raises(db_path: Path):
    store = BuildStore(db_path)
    store.close()
    store.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        store.get("x")


def test_set_image_records_the_name_the_build_settled_on(tmp_path):
    store = BuildStore(tmp_path / "b.sqlite")
    record = store.create(name="demo", image="demo:latest", repository="https://x.org/r.git")
    assert store.set_image(record.id, "demo:main").image == "demo:main"
    assert store.get(record.id).image == "demo:main"
    with pytest.raises(KeyError):
        store.set_image("0" * 32, "demo:main")
