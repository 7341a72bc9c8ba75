"""The build queue: a fixed number of workers run queued builds and record what happens.

Every build moves QUEUED -> BUILDING -> BUILT / FAILED / CANCELLED in the store, never stays in
BUILDING once its run is over (whatever went wrong), and every log line the runner emits is
stored in order, in batches. After each stored batch and each state change,
`on_event(build_id)` tells the HTTP layer to wake its Server-Sent-Event listeners;
`wait(build_id)` returns once a build has ended and its run is over (what build-image waits
for).

A request's credentials are held only in memory, and only while its build is queued or running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from gallery_builder.build_request import BuildRequest, image_name
from gallery_builder.build_runner import RunOutcome
from gallery_builder.build_store import BuildRecord, BuildState, BuildStore
from gallery_builder.git_access import Scrubber

log = logging.getLogger(__name__)

LOG_FLUSH_SECONDS = 0.1
# The most characters stored (and streamed) as one log chunk.
LOG_CHUNK_CHARS = 64 * 1024
CANCELLED_REASON = "cancelled by an admin"
STOPPED_REASON = "the builder stopped before the build finished"


def name_conflict(store: BuildStore, request: BuildRequest) -> str | None:
    """Why `request` may not use its name (another repository has it), or None."""
    owner = store.latest_for_name(request.name)
    if owner is not None and owner.repository != request.repository:
        return f"the name {request.name!r} is already used by {owner.repository}"
    return None


class Runner(Protocol):
    """What the queue needs from a BuildRunner (tests pass fakes)."""

    async def run(
        self, build_id: str, request: BuildRequest, emit: Callable[[str], None]
    ) -> RunOutcome:
        """Build `request`, emitting log lines; return how it ended."""
        ...


class BuildQueue:
    """Runs submitted builds, at most `concurrency` at a time, each within `timeout_s`."""

    def __init__(
        self,
        store: BuildStore,
        runner: Runner,
        *,
        concurrency: int = 1,
        timeout_s: float,
        on_event: Callable[[str], None],
    ) -> None:
        """Create a stopped queue; call `start()` from inside the event loop."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._store = store
        self._runner = runner
        self._concurrency = concurrency
        self._timeout_s = timeout_s
        self._on_event = on_event
        self._waiting: asyncio.Queue[str] = asyncio.Queue()
        # Queued requests (with their credentials) by build id, in submission order.
        self._pending: dict[str, BuildRequest] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        # Why a running build was cancelled: (final state, reason).
        self._stop_reasons: dict[str, tuple[BuildState, str]] = {}
        self._workers: list[asyncio.Task[None]] = []
        # Set once a submitted build has ended and nothing runs for it any more.
        self._ended: dict[str, asyncio.Event] = {}
        self._logs: dict[str, _LogBatch] = {}

    # --- control --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers (must run inside the event loop; idempotent)."""
        if self._workers:
            return
        self._workers = [
            asyncio.create_task(self._work(), name=f"build-worker-{n}")
            for n in range(self._concurrency)
        ]

    async def stop(self) -> None:
        """Stop the workers; running and queued builds end FAILED (the builder stopped)."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.cancel()
        running = list(self._running.items())
        for build_id, task in running:
            self._stop_reasons[build_id] = (BuildState.FAILED, STOPPED_REASON)
            task.cancel()
        await asyncio.gather(*workers, *(task for _, task in running), return_exceptions=True)
        self._running.clear()
        self._stop_reasons.clear()
        for build_id in list(self._pending):
            del self._pending[build_id]
            await self._finish(build_id, BuildState.FAILED, reason=STOPPED_REASON)
            self._mark_ended(build_id)
        for build_id in list(self._ended):
            self._mark_ended(build_id)

    def enqueue(self, request: BuildRequest) -> BuildRecord:
        """Record a new QUEUED build of `request` and queue it (ValueError if refused)."""
        record = self._store.create(
            name=request.name,
            image=image_name(request.name, request.ref or "latest"),
            repository=request.repository,
            ref=request.ref,
            memory_gb=request.memory_gb,
            cpu=request.cpu,
        )
        self.submit(record.id, request)
        return record

    def submit(self, build_id: str, request: BuildRequest) -> None:
        """Queue the stored QUEUED build `build_id` to be built from `request`."""
        if build_id in self._pending or build_id in self._running:
            raise ValueError(f"build {build_id} is already queued or running")
        self._pending[build_id] = request
        self._ended[build_id] = asyncio.Event()
        self._waiting.put_nowait(build_id)

    async def cancel(self, build_id: str) -> bool:
        """Cancel a queued or running build; True if it is now CANCELLED.

        A queued build is cancelled without running. A running one has its run cancelled
        (killing repo2docker); this returns once the build has been recorded as ended.
        """
        if self._pending.pop(build_id, None) is not None:
            cancelled = await self._finish(build_id, BuildState.CANCELLED, reason=CANCELLED_REASON)
            self._mark_ended(build_id)
            return cancelled
        task = self._running.get(build_id)
        if task is None:
            return False
        self._stop_reasons.setdefault(build_id, (BuildState.CANCELLED, CANCELLED_REASON))
        task.cancel()
        await asyncio.wait([task])
        record = self._store.get(build_id)
        return record is not None and record.state is BuildState.CANCELLED

    async def wait(self, build_id: str) -> BuildRecord | None:
        """The record of `build_id` once it has ended and its run is over (None if deleted).

        Returns at once for a build this queue is not running or holding.
        """
        ended = self._ended.get(build_id)
        if ended is not None:
            await ended.wait()
        return self._store.get(build_id)

    def queued(self) -> list[str]:
        """Ids of the builds waiting for a worker, oldest first."""
        return list(self._pending)

    def running(self) -> list[str]:
        """Ids of the builds being built right now."""
        return list(self._running)

    # --- workers --------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            build_id = await self._waiting.get()
            request = self._pending.pop(build_id, None)
            if request is None:
                continue  # cancelled while it waited (and marked ended then)
            task = asyncio.create_task(self._execute(build_id, request), name=f"build-{build_id}")
            self._running[build_id] = task
            try:
                # wait() rather than await: a cancelled build must not cancel its worker
                await asyncio.wait([task])
            finally:
                # on stop(), the worker is cancelled but the build task is awaited there
                if task.done():
                    self._running.pop(build_id, None)
                    self._stop_reasons.pop(build_id, None)

    async def _execute(self, build_id: str, request: BuildRequest) -> None:
        """Run one build and record its end, whatever happens."""
        try:
            await self._run(build_id, request)
        finally:
            self._mark_ended(build_id)

    async def _run(self, build_id: str, request: BuildRequest) -> None:
        scrub = Scrubber.for_credentials(request.credentials)
        if not self._set_state(build_id, BuildState.BUILDING):
            return  # deleted or ended while it waited
        try:
            async with asyncio.timeout(self._timeout_s):
                outcome = await self._runner.run(build_id, request, self._emitter(build_id, scrub))
        except TimeoutError:
            await self._fail(build_id, f"timed out after {self._timeout_s:g} s")
        except asyncio.CancelledError:
            state, reason = self._stop_reasons.get(
                build_id, (BuildState.CANCELLED, CANCELLED_REASON)
            )
            self._emit(build_id, f"Build {state.value}: {reason}\n")
            await self._finish(build_id, state, reason=reason)
            raise
        except Exception as e:  # a bug or an unforeseen failure must not leave it BUILDING
            log.exception("build %s crashed", build_id)
            await self._fail(build_id, scrub(str(e) or type(e).__name__))
        else:
            await self._record_outcome(build_id, outcome, scrub)
        finally:
            self._logs.pop(build_id, None)

    async def _record_outcome(self, build_id: str, outcome: RunOutcome, scrub: Scrubber) -> None:
        if outcome.image:
            self._update_image(build_id, outcome.image)
        if outcome.state not in (BuildState.BUILT, BuildState.FAILED):
            await self._fail(build_id, f"the runner returned an unexpected state {outcome.state!r}")
            return
        await self._finish(
            build_id,
            BuildState(outcome.state),
            reason=scrub(outcome.reason) if outcome.reason else None,
            resolved_commit=outcome.resolved_commit,
            image_size=outcome.image_size,
            reused=outcome.reused,
        )

    def _update_image(self, build_id: str, image: str) -> None:
        """Store the image name the runner chose, when the record has another."""
        record = self._store.get(build_id)
        if record is None or record.image == image:
            return
        self._store.set_image(build_id, image)

    # --- store and events -----------------------------------------------------------------

    def _emitter(self, build_id: str, scrub: Scrubber) -> Callable[[str], None]:
        """The build's line callback; steps that run in a thread (the data fill) may call it
        too: their lines reach the loop in order, before the step's own result does."""
        loop = asyncio.get_running_loop()

        def emit(line: str) -> None:
            line = scrub(line)
            if _running_loop() is loop:
                self._emit(build_id, line)
            else:
                loop.call_soon_threadsafe(self._emit, build_id, line)

        return emit

    def _emit(self, build_id: str, line: str) -> None:
        batch = self._logs.get(build_id)
        if batch is None:
            batch = self._logs[build_id] = _LogBatch(self._store, build_id, self._notify)
        batch.add(line)

    async def _fail(self, build_id: str, reason: str) -> None:
        self._emit(build_id, f"Build failed: {reason}\n")
        await self._finish(build_id, BuildState.FAILED, reason=reason)

    async def _finish(self, build_id: str, state: BuildState, **fields: Any) -> bool:
        """Record a final state, after the log; False if the build is gone or had ended."""
        batch = self._logs.get(build_id)
        if batch is not None:
            await batch.flush()
        return self._set_state(build_id, state, **fields)

    def _set_state(self, build_id: str, state: BuildState, **fields: Any) -> bool:
        try:
            record: BuildRecord = self._store.set_state(build_id, state, **fields)
        except (KeyError, ValueError) as e:
            log.warning("build %s cannot become %s: %s", build_id, state.value, e)
            return False
        self._notify(record.id)
        return True

    def _mark_ended(self, build_id: str) -> None:
        ended = self._ended.pop(build_id, None)
        if ended is not None:
            ended.set()

    def _notify(self, build_id: str) -> None:
        try:
            self._on_event(build_id)
        except Exception:
            log.exception("on_event failed for build %s", build_id)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def join_log_texts(texts: list[str], most: int = LOG_CHUNK_CHARS) -> list[str]:
    """`texts` joined, in order, into as few chunks of at most `most` characters as they fit
    (a longer text stays one chunk of its own): one stored row and one streamed event each."""
    chunks: list[str] = []
    pending: list[str] = []
    size = 0
    for text in texts:
        if pending and size + len(text) > most:
            chunks.append("".join(pending))
            pending, size = [], 0
        pending.append(text)
        size += len(text)
    if pending:
        chunks.append("".join(pending))
    return chunks


class _LogBatch:
    """A build's log on its way to the store: written together, off the event loop.

    `add` only queues; a write follows within LOG_FLUSH_SECONDS, and `flush` writes what is
    left (the queue awaits it before a final state, so a stream never ends before its log).
    What came in one interval is stored as few chunks (`join_log_texts`), so 100 000 lines
    cost a few hundred rows and stream events, not 100 000.
    """

    def __init__(self, store: BuildStore, build_id: str, notify: Callable[[str], None]) -> None:
        self._store = store
        self._build_id = build_id
        self._notify = notify
        self._pending: list[str] = []
        self._lock = asyncio.Lock()
        self._scheduled: asyncio.Task[None] | None = None

    def add(self, line: str) -> None:
        self._pending.append(line)
        if self._scheduled is None:
            self._scheduled = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        try:
            await asyncio.sleep(LOG_FLUSH_SECONDS)
        finally:
            self._scheduled = None
        await self.flush()

    async def flush(self) -> None:
        """Write every queued line (in order; one transaction per batch)."""
        async with self._lock:
            while self._pending:
                texts, self._pending = self._pending, []
                chunks = join_log_texts(texts)
                try:
                    await asyncio.to_thread(self._store.append_logs, self._build_id, chunks)
                except KeyError:
                    return  # the build was deleted; nobody is listening
                except Exception:
                    # losing log lines must not crash the build, nor leave it in BUILDING
                    log.exception("could not store log lines of build %s", self._build_id)
                    return
                self._notify(self._build_id)
