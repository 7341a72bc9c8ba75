"""The build queue with a fake runner and a real (temporary) sqlite build store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gallery_builder.build_queue import (
    CANCELLED_REASON,
    STOPPED_REASON,
    BuildQueue,
    join_log_texts,
)
from gallery_builder.build_request import BuildRequest, Credentials
from gallery_builder.build_runner import RunOutcome
from gallery_builder.build_store import BuildRecord, BuildState, BuildStore

from .conftest import ScriptedRunner

COMMIT = "a" * 40
PASSWORD = "hunter2-secret"


async def built(build_id: str, request: BuildRequest, emit: Callable[[str], None]) -> RunOutcome:
    for n in range(3):
        emit(f"line {n}\n")
        await asyncio.sleep(0)
    return RunOutcome(
        BuildState.BUILT, image="demo:main", resolved_commit=COMMIT, image_size=123, reused=False
    )


async def forever(build_id: str, request: BuildRequest, emit: Callable[[str], None]) -> RunOutcome:
    emit("started\n")
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


class Gate:
    """A script that waits until the test opens its gate."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.started: list[str] = []

    async def __call__(
        self, build_id: str, request: BuildRequest, emit: Callable[[str], None]
    ) -> RunOutcome:
        self.started.append(build_id)
        await self.opened.wait()
        return RunOutcome(BuildState.BUILT, image="demo:main", resolved_commit=COMMIT)


class Events(list[str]):
    """on_event that also records the build's state at each call, to check the order."""

    def __init__(self, store: BuildStore) -> None:
        super().__init__()
        self.store = store
        self.states: list[tuple[str, BuildState, int]] = []

    def __call__(self, build_id: str) -> None:
        self.append(build_id)
        record = self.store.get(build_id)
        assert record is not None
        self.states.append((build_id, record.state, len(log_of(self.store, build_id))))


def create(store: BuildStore, image: str = "demo:main") -> BuildRecord:
    return store.create(name="demo", image=image, repository="https://example.org/demo.git")


def request(credentials: Credentials | None = None) -> BuildRequest:
    return BuildRequest(
        repository="https://example.org/demo.git",
        ref=None,
        name="demo",
        memory_gb=None,
        cpu=None,
        credentials=credentials,
    )


async def until(condition: Callable[[], bool], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def state_of(store: BuildStore, build_id: str) -> BuildRecord:
    record = store.get(build_id)
    assert record is not None
    return record


def log_of(store: BuildStore, build_id: str) -> list[str]:
    """The stored log's lines (the store keeps them in chunks of many lines)."""
    return store.full_log(build_id).splitlines(keepends=True)


def make_queue(
    store: BuildStore, runner: ScriptedRunner, **kwargs: Any
) -> tuple[BuildQueue, Events]:
    events = Events(store)
    kwargs.setdefault("timeout_s", 30)
    return BuildQueue(store, runner, on_event=events, **kwargs), events


def built_once(store: BuildStore, runner: ScriptedRunner) -> tuple[BuildRecord, Events]:
    """One build of `runner` through a started queue, until it is BUILT; (record, events)."""

    async def scenario() -> tuple[BuildRecord, Events]:
        queue, events = make_queue(store, runner)
        queue.start()
        record = create(store)
        queue.submit(record.id, request())
        await until(lambda: state_of(store, record.id).state is BuildState.BUILT)
        await queue.stop()
        return record, events

    return asyncio.run(scenario())


def test_a_build_runs_and_is_recorded(store: BuildStore) -> None:
    record, events = built_once(store, ScriptedRunner(built))
    final = state_of(store, record.id)
    assert (final.resolved_commit, final.image_size, final.reused) == (COMMIT, 123, False)
    assert final.started_at is not None and final.finished_at is not None
    assert log_of(store, record.id) == ["line 0\n", "line 1\n", "line 2\n"]
    # building, then once per stored batch of lines (one here), then built.
    assert events.states == [
        (record.id, BuildState.BUILDING, 0),
        (record.id, BuildState.BUILDING, 3),
        (record.id, BuildState.BUILT, 3),
    ]


def test_a_chatty_build_is_stored_in_few_chunks_with_every_line_in_order(
    store: BuildStore,
) -> None:
    lines = [f"line {n} of many\n" for n in range(20_000)]

    async def chatty(build_id: str, request: BuildRequest, emit) -> RunOutcome:
        for line in lines:
            emit(line)
        return RunOutcome(BuildState.BUILT, image="demo:main", resolved_commit=COMMIT)

    record, events = built_once(store, ScriptedRunner(chatty))
    assert log_of(store, record.id) == lines
    chunks = store.read_log(record.id)
    assert len(chunks) == 6  # ~330 kB in chunks of at most 64 KiB: six rows, not 20 000
    assert all(text.endswith("\n") for _, text in chunks)
    assert len(events.states) < 10  # listeners woke once per stored batch, not per line


def test_log_texts_are_joined_in_order_into_bounded_chunks() -> None:
    assert join_log_texts([]) == []
    assert join_log_texts(["a\n", "b\n", "c\n"], most=4) == ["a\nb\n", "c\n"]
    assert join_log_texts(["a\n", "long line\n", "b\n"], most=4) == ["a\n", "long line\n", "b\n"]


def test_lines_from_a_step_in_a_thread_are_logged_in_order(store: BuildStore) -> None:
    """After-build steps (the data fill) run in threads and print through the same callback."""

    async def threaded(build_id: str, request: BuildRequest, emit) -> RunOutcome:
        emit("on the loop\n")
        await until(lambda: bool(store.read_log(build_id)))  # written: no flush is due

        def step() -> None:
            for n in range(3):
                emit(f"from a thread {n}\n")

        await asyncio.to_thread(step)
        return RunOutcome(BuildState.BUILT, image="demo:main", resolved_commit=COMMIT)

    record, _ = built_once(store, ScriptedRunner(threaded))
    assert log_of(store, record.id) == [
        "on the loop\n",
        "from a thread 0\n",
        "from a thread 1\n",
        "from a thread 2\n",
    ]


def test_concurrency_is_respected(store: BuildStore) -> None:
    gate = Gate()
    runner = ScriptedRunner(gate)

    async def scenario() -> list[BuildRecord]:
        queue, _events = make_queue(store, runner, concurrency=2)
        queue.start()
        records = [create(store) for _ in range(5)]
        for record in records:
            queue.submit(record.id, request())
        await until(lambda: len(gate.started) == 2)
        await asyncio.sleep(0.1)  # a third would have started by now
        assert len(gate.started) == 2
        assert len(queue.running()) == 2 and len(queue.queued()) == 3
        gate.opened.set()
        await until(lambda: all(state_of(store, r.id).state is BuildState.BUILT for r in records))
        await queue.stop()
        return records

    records = asyncio.run(scenario())
    assert runner.max_active == 2
    assert runner.calls == [r.id for r in records]  # first in, first out


def test_cancel_a_queued_build(store: BuildStore) -> None:
    gate = Gate()
    runner = ScriptedRunner(gate)

    async def scenario() -> tuple[BuildRecord, BuildRecord, bool]:
        queue, events = make_queue(store, runner)
        queue.start()
        first, second = create(store), create(store)
        queue.submit(first.id, request())
        queue.submit(second.id, request(Credentials("alice", PASSWORD)))
        await until(lambda: gate.started == [first.id])
        cancelled = await queue.cancel(second.id)
        assert second.id not in queue.queued()
        assert second.id in events
        gate.opened.set()
        await until(lambda: state_of(store, first.id).state is BuildState.BUILT)
        await asyncio.sleep(0.05)
        await queue.stop()
        return first, second, cancelled

    _first, second, cancelled = asyncio.run(scenario())
    assert cancelled is True
    record = state_of(store, second.id)
    assert (record.state, record.reason) == (BuildState.CANCELLED, CANCELLED_REASON)
    assert record.started_at is None
    assert second.id not in runner.calls


def test_cancel_a_running_build(store: BuildStore) -> None:
    runner = ScriptedRunner(forever)

    async def scenario() -> tuple[BuildRecord, bool, BuildRecord]:
        queue, _events = make_queue(store, runner)
        queue.start()
        record, after = create(store), create(store)
        queue.submit(record.id, request())
        queue.submit(after.id, request())
        await until(lambda: log_of(store, record.id) == ["started\n"])
        cancelled = await queue.cancel(record.id)
        # cancel() returns once the build is recorded as ended and the runner cleaned up.
        assert state_of(store, record.id).state is BuildState.CANCELLED
        assert record.id in runner.cleaned_up
        # The worker survives and moves on to the next build.
        await until(lambda: runner.calls == [record.id, after.id])
        assert await queue.cancel(after.id)
        await queue.stop()
        return record, cancelled, state_of(store, after.id)

    record, cancelled, after = asyncio.run(scenario())
    assert cancelled is True
    final = state_of(store, record.id)
    assert (final.state, final.reason) == (BuildState.CANCELLED, CANCELLED_REASON)
    assert log_of(store, record.id)[-1] == f"Build cancelled: {CANCELLED_REASON}\n"
    assert after.state is BuildState.CANCELLED


def test_cancel_something_unknown_or_finished(store: BuildStore) -> None:
    async def scenario() -> tuple[bool, bool]:
        queue, _events = make_queue(store, ScriptedRunner(built))
        queue.start()
        record = create(store)
        queue.submit(record.id, request())
        await until(lambda: state_of(store, record.id).state is BuildState.BUILT)
        results = (await queue.cancel("nope"), await queue.cancel(record.id))
        await queue.stop()
        return results

    assert asyncio.run(scenario()) == (False, False)


def test_a_build_that_takes_too_long_fails(store: BuildStore) -> None:
    runner = ScriptedRunner(forever)

    async def scenario() -> BuildRecord:
        queue, _events = make_queue(store, runner, timeout_s=0.2)
        queue.start()
        record = create(store)
        queue.submit(record.id, request())
        await until(lambda: state_of(store, record.id).state is BuildState.FAILED)
        await queue.stop()
        return record

    record = asyncio.run(scenario())
    final = state_of(store, record.id)
    assert final.reason == "timed out after 0.2 s"
    assert record.id in runner.cleaned_up  # the runner saw the cancellation
    assert log_of(store, record.id) == ["started\n", "Build failed: timed out after 0.2 s\n"]


def test_an_exception_fails_the_build_and_the_queue_goes_on(
    store: BuildStore, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(build_id: str, request: BuildRequest, emit: Callable[[str], None]) -> Any:
        if request.credentials is not None:
            raise RuntimeError(f"cannot talk to https://alice:{PASSWORD}@example.org")
        return await built(build_id, request, emit)

    async def scenario() -> tuple[BuildRecord, BuildRecord]:
        queue, _events = make_queue(store, ScriptedRunner(explode))
        queue.start()
        bad, good = create(store), create(store)
        queue.submit(bad.id, request(Credentials("alice", PASSWORD)))
        queue.submit(good.id, request())
        await until(lambda: state_of(store, good.id).state is BuildState.BUILT)
        await queue.stop()
        return bad, good

    with caplog.at_level(logging.ERROR):
        bad, _good = asyncio.run(scenario())
    final = state_of(store, bad.id)
    assert final.state is BuildState.FAILED
    assert final.reason == "cannot talk to https://alice:***@example.org"
    assert PASSWORD not in "".join(log_of(store, bad.id))


def test_an_empty_exception_still_gives_a_reason(store: BuildStore) -> None:
    async def explode(build_id: str, request: BuildRequest, emit: Callable[[str], None]) -> Any:
        raise KeyError

    async def scenario() -> BuildRecord:
        queue, _events = make_queue(store, ScriptedRunner(explode))
        queue.start()
        record = create(store)
        queue.submit(record.id, request())
        await until(lambda: state_of(store, record.id).state is BuildState.FAILED)
        await queue.stop()
        return record

    assert state_of(store, asyncio.run(scenario()).id).reason == "KeyError"


def test_a_failed_outcome_and_scrubbed_lines(store: BuildStore) -> None:
    async def fails(build_id: str, request: BuildRequest, emit: Callable[[str], None]) -> Any:
        emit(f"token {PASSWORD}\n")
        return RunOutcome(
            BuildState.FAILED,
            image="demo:main",
            reason=f"repo2docker exited with status 1: bad {PASSWORD}",
            resolved_commit=COMMIT,
        )

    async def scenario() -> BuildRecord:
        queue, _events = make_queue(store, ScriptedRunner(fails))
        queue.start()
        record = create(store)
        queue.submit(record.id, request(Credentials("alice", PASSWORD)))
        await until(lambda: state_of(store, record.id).state is BuildState.FAILED)
        await queue.stop()
        return record

    record = state_of(store, asyncio.run(scenario()).id)
    assert record.reason == "repo2docker exited with status 1: bad ***"
    assert record.resolved_commit == COMMIT
    assert log_of(store, record.id) == ["token ***\n"]


def test_stop_fails_running_and_queued_builds(store: BuildStore) -> None:
    runner = ScriptedRunner(forever)

    async def scenario() -> tuple[BuildRecord, BuildRecord]:
        queue, _events = make_queue(store, runner)
        queue.start()
        running, waiting = create(store), create(store)
        queue.submit(running.id, request())
        queue.submit(waiting.id, request())
        await until(lambda: runner.calls == [running.id])
        await queue.stop()
        assert queue.running() == [] and queue.queued() == []
        return running, waiting

    running, waiting = asyncio.run(scenario())
    for build_id in (running.id, waiting.id):
        record = state_of(store, build_id)
        assert (record.state, record.reason) == (BuildState.FAILED, STOPPED_REASON)
    assert running.id in runner.cleaned_up
    assert waiting.id not in runner.calls


def test_submit_twice_is_refused(store: BuildStore) -> None:
    async def scenario() -> None:
        queue, _events = make_queue(store, ScriptedRunner(built))
        record = create(store)
        queue.submit(record.id, request())
        with pytest.raises(ValueError, match="already queued"):
            queue.submit(record.id, request())
        await queue.stop()

    asyncio.run(scenario())


def test_a_build_deleted_while_queued_is_skipped(store: BuildStore) -> None:
    runner = ScriptedRunner(built)

    async def scenario() -> None:
        queue, _events = make_queue(store, runner)
        record = create(store)
        queue.submit(record.id, request())
        store.delete(record.id)
        queue.start()
        await asyncio.sleep(0.1)
        await queue.stop()

    asyncio.run(scenario())
    assert runner.calls == []


def test_on_event_errors_do_not_break_builds(store: BuildStore) -> None:
    def broken(build_id: str) -> None:
        raise RuntimeError("listener is gone")

    async def scenario() -> BuildRecord:
        queue = BuildQueue(store, ScriptedRunner(built), timeout_s=30, on_event=broken)
        queue.start()
        record = create(store)
        queue.submit(record.id, request())
        await until(lambda: state_of(store, record.id).state is BuildState.BUILT)
        await queue.stop()
        return record

    assert log_of(store, asyncio.run(scenario()).id) == ["line 0\n", "line 1\n", "line 2\n"]


def test_a_log_store_failure_does_not_break_the_build(
    store: BuildStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(build_id: str, text: str) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(store, "append_log", full)

    built_once(store, ScriptedRunner(built))


class StoreWithSetImage(BuildStore):
    """What the HTTP layer's owner may add: the queue then records the runner's image name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.images: list[tuple[str, str]] = []

    def set_image(self, build_id: str, image: str) -> None:
        self.images.append((build_id, image))


def test_the_runners_image_name_is_stored_when_it_differs(tmp_path: Path) -> None:
    async def scenario(store: StoreWithSetImage) -> tuple[str, str]:
        queue, _events = make_queue(store, ScriptedRunner(built))
        queue.start()
        same, other = create(store, "demo:main"), create(store, "demo:latest")
        queue.submit(same.id, request())
        queue.submit(other.id, request())
        await until(lambda: state_of(store, other.id).state is BuildState.BUILT)
        await queue.stop()
        return same.id, other.id

    with StoreWithSetImage(tmp_path / "builds.sqlite") as store:
        _same, other = asyncio.run(scenario(store))
        assert store.images == [(other, "demo:main")]


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        BuildQueue(None, None, concurrency=0, timeout_s=1, on_event=print)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BuildQueue(None, None, timeout_s=0, on_event=print)  # type: ignore[arg-type]


def test_wait_returns_once_the_run_is_over(store: BuildStore) -> None:
    gate = Gate()
    runner = ScriptedRunner(gate)

    async def scenario() -> tuple[BuildRecord | None, BuildRecord | None, list[str]]:
        queue, _ = make_queue(store, runner)
        queue.start()
        first = queue.enqueue(request())
        second = queue.enqueue(request())
        waiter = asyncio.create_task(queue.wait(first.id))
        await until(lambda: gate.started == [first.id])
        assert not waiter.done()
        gate.opened.set()
        done = await waiter
        # a queued build that is cancelled ends without running
        await queue.cancel(second.id)
        cancelled = await queue.wait(second.id)
        await queue.stop()
        return done, cancelled, list(runner.cleaned_up)

    done, cancelled, cleaned_up = asyncio.run(scenario())
    assert done is not None and done.state is BuildState.BUILT
    assert cancelled is not None and cancelled.state is BuildState.CANCELLED
    assert cleaned_up[0] == done.id  # the run had finished when wait() returned


def test_wait_for_an_unknown_or_finished_build_returns_at_once(store: BuildStore) -> None:
    record = create(store)

    async def scenario() -> tuple[BuildRecord | None, BuildRecord | None]:
        queue, _ = make_queue(store, ScriptedRunner(built))
        return await queue.wait(record.id), await queue.wait("0" * 32)

    known, unknown = asyncio.run(scenario())
    assert known == store.get(record.id) and unknown is None
