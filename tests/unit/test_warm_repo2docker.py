"""repo2docker started ahead of the next build (the spare): taken by a build, which hands it
its own command line, environment and directory; replaced after the build; never used when
it died; ended when the builder stops."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from gallery_builder.build_store import BuildState
from gallery_builder.warm_repo2docker import SpareRepo2Docker

from .conftest import Repo, alive, needs_git, wait_dead
from .test_build_runner import (
    LogLines,
    built_by_repo2docker,
    labels_for,
    request_for,
    warm_runner,
)

pytestmark = needs_git


def spare_runner(tmp_path: Path, repo: Repo, build_id: str) -> tuple[Any, SpareRepo2Docker]:
    """A runner with a spare repo2docker (not started yet) and a build `build_id` to run."""
    setup = warm_runner(tmp_path, spare_repo2docker=True)
    spare = setup.runner.spare_repo2docker
    assert spare is not None
    built_by_repo2docker(setup, "demo:trunk", build_id, labels_for(repo, repo.trunk))
    return setup, spare


def test_a_build_takes_the_repo2docker_started_ahead_and_a_new_one_waits_after_it(
    repo: Repo, tmp_path: Path
) -> None:
    setup, spare = spare_runner(tmp_path, repo, "b1")
    # What the spare starts from, and no build's: this must not reach the build.
    spare.env["LEFT_FROM_THE_SPARE"] = "1"
    lines = LogLines()

    async def scenario() -> tuple[Any, float, int, int | None]:
        await spare.make()
        first = spare._spare
        assert first is not None
        await asyncio.sleep(0.3)  # imported before the build starts
        started = time.time()
        outcome = await setup.runner.run("b1", request_for(repo), lines.append)
        await setup.runner.settle()
        after = spare._waiting()
        next_pid = after.pid if after is not None else None
        await setup.runner.end_spares()
        return outcome, started, first.pid, next_pid

    outcome, started, first_pid, next_pid = asyncio.run(scenario())
    assert outcome.state is BuildState.BUILT, lines
    record = setup.record()
    # The spare ran the build: imported before the build began, its main() during it.
    assert record["pid"] == first_pid
    assert record["imported"] < started < record["main"]
    assert any("repo2docker was started ahead of this build" in line for line in lines)
    # With the build's environment and directories only.
    assert "LEFT_FROM_THE_SPARE" not in record["env"]
    assert record["env"]["GIT_TERMINAL_PROMPT"] == "0"
    assert record["cwd"].startswith(str(setup.work_root / "gallery-build-"))
    assert record["tmp"] == record["env"]["TMPDIR"] and record["tmp"].startswith(record["cwd"])
    # The next build's spare was started after this one, and ended with the builder.
    assert next_pid is not None and next_pid != first_pid
    wait_dead(next_pid)
    assert list(setup.work_root.iterdir()) == []


def test_a_spare_that_died_is_not_taken_and_the_build_starts_its_own(
    repo: Repo, tmp_path: Path
) -> None:
    setup, spare = spare_runner(tmp_path, repo, "b2")
    lines = LogLines()

    async def scenario() -> tuple[Any, int]:
        await spare.make()
        process = spare._spare
        assert process is not None
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        outcome = await setup.runner.run("b2", request_for(repo), lines.append)
        await setup.runner.settle()
        await setup.runner.end_spares()
        return outcome, process.pid

    outcome, dead_pid = asyncio.run(scenario())
    assert outcome.state is BuildState.BUILT, lines
    assert setup.record()["pid"] != dead_pid
    assert not any("started ahead" in line for line in lines)
    assert list(setup.work_root.iterdir()) == []  # the dead one's directory went too


def test_ending_the_spare_stops_it_and_no_other_is_made(tmp_path: Path) -> None:
    (tmp_path / "fake_r2d.py").write_text("def main():\n    return 0\n")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path)}
    spare = SpareRepo2Docker(("fake_r2d",), env, tmp_path)

    async def scenario() -> tuple[int, bool]:
        await spare.make()
        process = spare._spare
        assert process is not None
        await spare.end()
        await spare.make()
        return process.pid, spare._spare is None

    pid, none_made = asyncio.run(scenario())
    assert none_made
    assert not alive(pid)
    assert list(tmp_path.iterdir()) == [tmp_path / "fake_r2d.py"]


def test_the_engine_lookup_is_scanned_once_ahead_of_the_build() -> None:
    """repo2docker looks its engine up twice a build; the spare scans the entry points once."""
    import subprocess
    import sys

    script = (
        "import entrypoints\n"
        "scans = []\n"
        "original = entrypoints.get_group_named\n"
        "entrypoints.get_group_named = lambda *a, **k: scans.append(a) or original(*a, **k)\n"
        "import gallery_builder.engine_lookup\n"
        "assert scans == [('repo2docker.engines',)], scans  # scanned while waiting\n"
        "first = entrypoints.get_group_named('repo2docker.engines')\n"
        "assert entrypoints.get_group_named('repo2docker.engines') is first\n"
        "assert 'docker' in first and len(scans) == 1, scans  # not scanned again\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
