"""repo2docker started before its build: an interpreter that has imported repo2docker (about
half a second of CPU) and waits for one build's command line on stdin.

`start_waiting` starts one; `hand_over` gives it the build (its argv, environment and
directory as one line of JSON). The launcher then replaces its whole environment with the
build's, forgets the temporary directory it may have looked up, changes to the build's
directory and runs repo2docker's main() with the build's argv, exactly the command line a
cold start would run. It serves that one build and exits: nothing it did, read or imported
for one build is there for the next, which gets a process of its own. Closing its stdin
without a line ends it (status 0).

`SpareRepo2Docker` keeps one such process started ahead of the next build, as the build
boxes keep a spare box (`spare_box`): a build takes it when it is still waiting, else
starts its own as before; the next spare is started after the build. A spare starts from
the same environment a build's own start would (the builder's, without its secrets and
settings), in a private directory of its own, in its own session (one signal ends it and
everything it starts), and knows nothing about any build until it is handed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from gallery_builder.processes import kill_group, spawn, terminate_process_group

log = logging.getLogger(__name__)

# argv: the entry module (with a main()), then modules to import ahead as well.
WARM_LAUNCHER = """
import importlib, json, os, sys, tempfile
entry = importlib.import_module(sys.argv[1])
for name in sys.argv[2:]:
    importlib.import_module(name)
line = sys.stdin.readline()
if not line.strip():
    sys.exit(0)
request = json.loads(line)
os.environ.clear()
os.environ.update(request["env"])
tempfile.tempdir = None
os.chdir(request["cwd"])
sys.argv = request["argv"]
try:
    status = entry.main()
except SystemExit as stop:
    status = stop.code
if isinstance(status, str):
    print(status, file=sys.stderr)
sys.stdout.flush()
sys.stderr.flush()
# Done: no interpreter teardown of everything repo2docker imported.
os._exit(status if isinstance(status, int) else int(status is not None))
"""
# The engine's module, and its lookup done once ahead (`engine_lookup`).
WARM_ENTRY = (
    "repo2docker.__main__",
    "gallery_builder.docker_api_engine",
    "gallery_builder.engine_lookup",
)


async def start_waiting(
    entry: Sequence[str], env: Mapping[str, str], cwd: Path
) -> asyncio.subprocess.Process:
    """Start the launcher for `entry` (module with main(), then modules to import ahead);
    stdout and stderr are one pipe, stdin waits for `hand_over`."""
    return await spawn(
        [sys.executable, "-c", WARM_LAUNCHER, *entry],
        env={**env, "PYTHONUNBUFFERED": "1"},
        cwd=cwd,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.PIPE,
    )


async def hand_over(
    process: asyncio.subprocess.Process, argv: Sequence[str], env: Mapping[str, str], cwd: Path
) -> None:
    """Give a waiting launcher its build: repo2docker's argv (argv[0] is only a name), the
    environment it runs in (the whole of it) and its directory."""
    assert process.stdin is not None
    request = {"argv": ["repo2docker", *argv[1:]], "env": dict(env), "cwd": str(cwd)}
    with contextlib.suppress(ConnectionError):  # it died: its output says why
        process.stdin.write(json.dumps(request).encode() + b"\n")
        await process.stdin.drain()
    process.stdin.close()


class SpareRepo2Docker:
    """One waiting launcher kept ahead of the next build (on one event loop)."""

    def __init__(
        self, entry: Sequence[str], env: Mapping[str, str], work_root: Path | None = None
    ) -> None:
        self.entry = tuple(entry)
        self.env = dict(env)
        self.work_root = work_root
        self._spare: asyncio.subprocess.Process | None = None
        self._spare_dir: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._making: asyncio.Future[None] | None = None
        self._stopped = False

    async def make(self) -> None:
        """Start the spare unless there is one (or one is starting, or it was ended).

        A launcher that cannot start is logged, not raised: the next build starts its own.
        """
        if self._stopped or self._making is not None or self._waiting() is not None:
            return
        self._making = asyncio.get_running_loop().create_future()
        directory = Path(tempfile.mkdtemp(prefix="gallery-spare-r2d-", dir=self.work_root))
        try:
            process = await start_waiting(self.entry, self.env, directory)
        except Exception as e:
            log.warning("could not start a spare repo2docker: %s", e)
            shutil.rmtree(directory, ignore_errors=True)
            return
        finally:
            self._making.set_result(None)
            self._making = None
        if self._stopped:  # ended meanwhile
            await _end(process)
            shutil.rmtree(directory, ignore_errors=True)
            return
        self._discard()
        self._spare, self._spare_dir = process, directory
        self._loop = asyncio.get_running_loop()

    async def take(self) -> asyncio.subprocess.Process | None:
        """The spare, still waiting for a build, or None (then start one of your own).

        One that is still starting is waited for: it is further along than a new one.
        """
        if self._making is not None:
            await asyncio.shield(self._making)
        process = self._waiting()
        if process is None:
            self._discard()
            return None
        directory, self._spare, self._spare_dir = self._spare_dir, None, None
        # Its imports are done; handed the build, it changes to the build's directory.
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        return process

    async def end(self) -> None:
        """End the spare; none is started after this (the builder stops)."""
        self._stopped = True
        if self._making is not None:
            await asyncio.shield(self._making)
        process = self._waiting()
        directory, self._spare, self._spare_dir = self._spare_dir, None, None
        if process is not None:
            await _end(process)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def _waiting(self) -> asyncio.subprocess.Process | None:
        """The spare if it is alive, its stdin still open, and of the running loop."""
        process = self._spare
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if (
            process is None
            or loop is not self._loop
            or process.returncode is not None
            or process.stdin is None
            or process.stdin.is_closing()
        ):
            return None
        return process

    def _discard(self) -> None:
        """Forget a spare that can no longer serve (dead, or of another loop): its group
        is killed, its directory removed."""
        process, directory = self._spare, self._spare_dir
        self._spare, self._spare_dir, self._loop = None, None, None
        if process is not None and process.returncode is None:
            kill_group(process)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


async def _end(process: asyncio.subprocess.Process) -> None:
    """Close a waiting launcher's stdin (it exits), then make sure its group is gone."""
    if process.stdin is not None:
        process.stdin.close()
    await terminate_process_group(process, grace_s=2.0)
