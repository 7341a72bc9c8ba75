"""The build runner: real git against a throwaway repository, a fake `repo2docker` script
and fake Docker images instead of a daemon."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from gallery_builder import build_runner
from gallery_builder.build_request import BuildRequest
from gallery_builder.build_runner import BuildRunner
from gallery_builder.build_store import BuildState
from gallery_builder.docker_images import build_tag
from gallery_builder.git_access import MASK
from gallery_builder.repo2docker_command import repo2docker_command
from gallery_common.image_labels import (
    COMMIT_LABEL,
    CPU_LIMIT_LABEL,
    MEMORY_LIMIT_LABEL,
    REF_LABEL,
    make_labels,
)

from .conftest import (
    CREDENTIALS,
    PASSWORD,
    FakeImage,
    FakeImages,
    Repo,
    minimal_env,
    needs_git,
    wait_dead,
)

pytestmark = needs_git


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- runs -----------------------------------------------------------------------------------

FAKE_REPO2DOCKER = """\
#!{python}
# Stands in for repo2docker: records how it was called, prints, then does what MODE says.
import json, os, signal, subprocess, sys, time
out = os.environ["FAKE_R2D_OUT"]
with open(sys.argv[sys.argv.index("--config") + 1]) as handle:
    config = handle.read()
record = {{"argv": sys.argv, "config": config, "cwd": os.getcwd(), "env": dict(os.environ)}}
source = sys.argv[-1]
if os.path.isdir(source):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True)
    record["checkout_head"] = head.stdout.strip()
    record["checkout_shallow"] = os.path.exists(os.path.join(source, ".git", "shallow"))
with open(out, "w") as handle:
    json.dump(record, handle)
print("Picked Git content provider.", flush=True)
for line in config.splitlines():  # the engine's image check: what FAKE_R2D_FACTS says it found
    if line.startswith("c.DockerAPIEngine.facts_file = ") and "FAKE_R2D_FACTS" in os.environ:
        with open(eval(line.partition(" = ")[2]), "w") as handle:
            handle.write(os.environ["FAKE_R2D_FACTS"])
print("echo: " + os.environ.get("FAKE_R2D_ECHO", ""), flush=True)
mode = os.environ.get("FAKE_R2D_MODE", "ok")
if mode == "fail":
    print("Step 2/3 : RUN make", flush=True)
    print("ERROR: the build broke", flush=True)
    print("some trailing output", flush=True)
    sys.exit(3)
if mode in ("hang", "stubborn"):
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "300"])
    with open(out + ".pids", "w") as handle:
        handle.write(f"{{os.getpid()}} {{child.pid}}")
    print("started", flush=True)
    time.sleep(300)
"""


class LogLines(list[str]):
    """What a run emitted, line by line (it emits repo2docker's output in blocks of lines)."""

    def append(self, text: str) -> None:
        self.extend(text.splitlines(keepends=True))


@dataclass
class RunnerSetup:
    runner: BuildRunner
    images: FakeImages
    record_file: Path
    work_root: Path

    def record(self) -> dict[str, Any]:
        return json.loads(self.record_file.read_text())

    def pids(self) -> list[int]:
        path = Path(f"{self.record_file}.pids")
        deadline = time.monotonic() + 10
        while not path.exists() or not path.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return [int(pid) for pid in path.read_text().split()]


def make_runner(tmp_path: Path, mode: str = "ok", **kwargs: Any) -> RunnerSetup:
    script = tmp_path / "repo2docker"
    script.write_text(FAKE_REPO2DOCKER.format(python=sys.executable))
    script.chmod(0o755)
    record_file = tmp_path / "record.json"
    work_root = tmp_path / "work"
    work_root.mkdir()
    images = FakeImages()
    env = minimal_env(
        FAKE_R2D_OUT=str(record_file),
        FAKE_R2D_MODE=mode,
        FAKE_R2D_ECHO=f"token {PASSWORD} and {quote(PASSWORD, safe='')}",
        GALLERY_ADMIN_PASSWORD="never-inherited",
    )
    runner = BuildRunner(
        images=images,  # type: ignore[arg-type]
        repo2docker=str(script),
        builder_version="9.9",
        work_root=work_root,
        base_env=env,
        **kwargs,
    )
    return RunnerSetup(runner, images, record_file, work_root)


def request_for(repo: Repo, ref: str | None = None, **kwargs: Any) -> BuildRequest:
    fields: dict[str, Any] = {
        "repository": str(repo.path),
        "ref": ref,
        "name": "demo",
        "memory_gb": 2.0,
        "cpu": 1.0,
        "credentials": CREDENTIALS,
    }
    fields.update(kwargs)
    return BuildRequest(**fields)


def labels_for(repo: Repo, commit: str, **kwargs: Any) -> dict[str, str]:
    fields: dict[str, Any] = {
        "repository": str(repo.path),
        "ref": "trunk",
        "commit": commit,
        "display_name": "demo",
        "memory_limit_gb": 2.0,
        "cpu_limit": 1.0,
        "builder_version": "9.9",
    }
    fields.update(kwargs)
    return make_labels(**fields)


def built_by_repo2docker(setup: RunnerSetup, image: str, build_id: str, labels: dict[str, str]):
    """Pretend repo2docker will leave its image under the temporary build tag."""
    setup.images.images[build_tag(image, build_id)] = FakeImage("sha256:new", labels)


def test_run_builds_and_publishes(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    built_by_repo2docker(setup, "demo:trunk", "b1", labels_for(repo, repo.trunk))
    lines = LogLines()
    outcome = run(setup.runner.run("b1", request_for(repo), lines.append))

    assert outcome.state is BuildState.BUILT
    assert outcome.image == "demo:trunk"
    assert outcome.resolved_commit == repo.trunk
    assert (outcome.image_size, outcome.reused, outcome.reason) == (4242, False, None)
    temp = build_tag("demo:trunk", "b1")
    assert setup.images.calls[:2] == [("tag", temp, "demo:trunk"), ("remove", temp)]
    assert set(setup.images.images) == {"demo:trunk"}

    record = setup.record()
    # repo2docker builds the shallow checkout of the commit made in the build's directory.
    checkout = record["argv"][-1]
    assert checkout.startswith(str(setup.work_root)) and checkout.endswith("/checkout")
    assert (
        record["argv"][1:]
        == repo2docker_command(
            repository=checkout,
            commit=repo.trunk,
            image=temp,
            config_path=record["argv"][2],
            executable="x",
        )[1:]
    )
    assert record["checkout_head"] == repo.trunk
    assert record["checkout_shallow"] is True
    labels = ast.literal_eval(
        next(li for li in record["config"].splitlines() if "extra_labels" in li).partition(" = ")[2]
    )
    assert labels[COMMIT_LABEL] == repo.trunk
    assert labels[REF_LABEL] == "trunk"
    assert (labels[MEMORY_LIMIT_LABEL], labels[CPU_LIMIT_LABEL]) == ("2", "1")
    assert record["env"]["GIT_TERMINAL_PROMPT"] == "0"
    assert record["env"]["TMPDIR"].startswith(str(setup.work_root))
    assert "GALLERY_ADMIN_PASSWORD" not in record["env"]

    assert lines[0].startswith(f"Building demo from {repo.path} at the default branch (build b1)")
    assert all(line.endswith("\n") for line in lines)
    assert any(line.startswith("Picked Git content provider.") for line in lines)
    assert f"echo: token {MASK} and {MASK}\n" in lines
    assert list(setup.work_root.iterdir()) == []


def test_run_never_puts_the_password_in_argv_config_or_log(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    built_by_repo2docker(setup, "demo:trunk", "b1", labels_for(repo, repo.trunk))
    lines = LogLines()
    run(setup.runner.run("b1", request_for(repo), lines.append))
    record = setup.record()
    encoded = quote(PASSWORD, safe="")
    for text in (" ".join(record["argv"]), record["config"], "".join(lines)):
        assert PASSWORD not in text and encoded not in text


def test_run_reuses_an_image_of_the_same_commit(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    setup.images.images["demo:trunk"] = FakeImage("sha256:old", labels_for(repo, repo.trunk))
    lines = LogLines()
    outcome = run(setup.runner.run("b2", request_for(repo), lines.append))
    assert outcome.state is BuildState.BUILT
    assert (outcome.reused, outcome.image, outcome.image_size) == (True, "demo:trunk", 4242)
    reused = f"] commit {repo.trunk[:7]} is already built as demo:trunk; reusing it\n"
    assert any(line.startswith("[") and line.endswith(reused) for line in lines)
    assert not setup.record_file.exists()  # repo2docker never ran
    assert setup.images.calls == []


def test_run_rebuilds_when_the_limits_differ(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    old = labels_for(repo, repo.trunk, memory_limit_gb=4)
    setup.images.images["demo:trunk"] = FakeImage("sha256:old", old)
    built_by_repo2docker(setup, "demo:trunk", "b3", labels_for(repo, repo.trunk))
    outcome = run(setup.runner.run("b3", request_for(repo), lambda line: None))
    assert (outcome.state, outcome.reused) == (BuildState.BUILT, False)
    assert setup.record_file.exists()
    # The image the name used to point at stays as the previous image, to roll back to.
    assert setup.images.images["demo:trunk"].id == "sha256:new"
    assert setup.images.images["demo:gallery-previous-trunk-old"].id == "sha256:old"
    assert setup.images.untagged() == []


def test_only_keep_previous_images_stay_and_older_ones_go(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path, keep_previous=1)
    older = labels_for(repo, "a" * 40, build_time=datetime(2026, 1, 1, tzinfo=UTC))
    setup.images.images["demo:gallery-previous-trunk-older"] = FakeImage("sha256:older", older)
    old = labels_for(repo, "b" * 40, build_time=datetime(2026, 6, 1, tzinfo=UTC))
    setup.images.images["demo:trunk"] = FakeImage("sha256:old", old)
    built_by_repo2docker(setup, "demo:trunk", "b3", labels_for(repo, repo.trunk))
    lines = LogLines()

    async def build_then_settle() -> Any:
        outcome = await setup.runner.run("b3", request_for(repo), lines.append)
        await setup.runner.settle()
        return outcome

    outcome = run(build_then_settle())
    assert outcome.state is BuildState.BUILT
    assert "demo:gallery-previous-trunk-old" in setup.images.images
    assert any("stays as demo:gallery-previous-trunk-old" in line for line in lines)
    # The older one goes in the housekeeping after the outcome (which settle waits for).
    assert "demo:gallery-previous-trunk-older" not in setup.images.images
    assert not any("Removed the older image" in line for line in lines)
    assert setup.images.untagged() == []


def test_a_previous_image_a_container_uses_stays_until_it_is_gone(
    repo: Repo, tmp_path: Path
) -> None:
    setup = make_runner(tmp_path, keep_previous=0)
    setup.images.images["demo:v1"] = FakeImage("sha256:old", labels_for(repo, "f" * 40))
    setup.images.stopped["sha256:old"] = ["gallery-user-x"]  # by image id, as Docker does
    built_by_repo2docker(setup, "demo:v1", "b4", labels_for(repo, repo.trunk, ref="v1"))
    outcome = run(setup.runner.run("b4", request_for(repo, "v1"), lambda line: None))
    assert outcome.state is BuildState.BUILT
    # No previous image is kept (0), but a container uses this one: it keeps a name...
    kept = "demo:gallery-previous-v1-old"
    assert setup.images.images[kept].id == "sha256:old"
    assert setup.runner.retention.sweep(["demo:v1"]) == []
    # ... until the container is gone: the next sweep removes it.
    setup.images.stopped.clear()
    assert setup.runner.retention.sweep(["demo:v1"]) == [f"Removed the older image {kept}"]
    assert kept not in setup.images.images and setup.images.untagged() == []


def test_run_names_images_after_the_ref(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    outcome = run(setup.runner.run("b5", request_for(repo, repo.feature), lambda line: None))
    # A full commit is the tag, shortened; repo2docker "built" nothing here, so it fails.
    assert outcome.image == f"demo:{repo.feature[:7]}"
    assert outcome.state is BuildState.FAILED
    assert "missing or unlabelled" in (outcome.reason or "")


def test_run_reports_a_repo2docker_failure(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path, mode="fail")
    lines = LogLines()
    outcome = run(setup.runner.run("b6", request_for(repo, "feature"), lines.append))
    assert outcome.state is BuildState.FAILED
    assert outcome.reason == "repo2docker exited with status 3: ERROR: the build broke"
    assert outcome.image == "demo:feature"
    assert outcome.resolved_commit == repo.feature
    assert lines[-1] == f"Build failed: {outcome.reason}\n"
    assert not any(call[0] == "tag" for call in setup.images.calls)
    assert list(setup.work_root.iterdir()) == []


def test_run_reports_a_resolve_failure(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    outcome = run(setup.runner.run("b7", request_for(repo, "nope"), lambda line: None))
    assert outcome.state is BuildState.FAILED
    assert outcome.reason is not None and "no branch or tag named 'nope'" in outcome.reason
    assert outcome.image is None
    assert not setup.record_file.exists()
    assert list(setup.work_root.iterdir()) == []


def test_run_without_repo2docker_fails_cleanly(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    setup.runner.repo2docker = str(tmp_path / "not-installed")
    outcome = run(setup.runner.run("b10", request_for(repo), lambda line: None))
    assert outcome.state is BuildState.FAILED
    assert outcome.reason == f"cannot start {tmp_path / 'not-installed'}: No such file or directory"


@pytest.mark.parametrize("mode", ["hang", "stubborn"])
def test_cancelling_a_run_kills_the_process_group(repo: Repo, tmp_path: Path, mode: str) -> None:
    setup = make_runner(tmp_path, mode=mode, kill_grace_s=0.5)
    lines = LogLines()

    async def scenario() -> None:
        task = asyncio.create_task(setup.runner.run("b8", request_for(repo), lines.append))
        while "started\n" not in lines:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.monotonic()
    run(scenario())
    assert time.monotonic() - started < 10
    for pid in setup.pids():
        wait_dead(pid)
    assert lines[-1] == "Stopped repo2docker\n"
    assert list(setup.work_root.iterdir()) == []
    assert not any(call[0] == "tag" for call in setup.images.calls)


def test_a_caller_timeout_kills_the_build(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path, mode="hang", kill_grace_s=0.5)

    async def scenario() -> None:
        async with asyncio.timeout(1.5):
            await setup.runner.run("b9", request_for(repo), lambda line: None)

    with pytest.raises(TimeoutError):
        run(scenario())
    for pid in setup.pids():
        wait_dead(pid)
    assert list(setup.work_root.iterdir()) == []


def test_the_default_repo2docker_is_next_to_the_interpreter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(build_runner.shutil, "which", lambda name, path=None: None)
    assert BuildRunner(images=FakeImages()).repo2docker == "repo2docker"  # type: ignore[arg-type]


def test_run_uses_the_current_image_as_the_layer_cache(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    old = labels_for(repo, "f" * 40)  # another commit: not reusable
    setup.images.images["demo:trunk"] = FakeImage("sha256:old", old)
    built_by_repo2docker(setup, "demo:trunk", "b11", labels_for(repo, repo.trunk))
    lines = LogLines()
    outcome = run(setup.runner.run("b11", request_for(repo), lines.append))
    assert outcome.state is BuildState.BUILT
    assert "c.Repo2Docker.cache_from = ['sha256:old']" in setup.record()["config"]
    assert any(
        line.endswith("] Using the current image of demo:trunk as the layer cache\n")
        for line in lines
    )


def test_run_logs_each_phase_with_its_time(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    built_by_repo2docker(setup, "demo:trunk", "b12", labels_for(repo, repo.trunk))
    lines = LogLines()
    run(setup.runner.run("b12", request_for(repo), lines.append))
    stamped = [line for line in lines if re.match(r"\[ *\d+\.\d\d s\] ", line)]
    phases = [line.split("] ", 1)[1] for line in stamped]
    assert phases[0].startswith("the default branch (trunk) is commit ")
    assert phases[1].startswith(f"Fetching commit {repo.trunk[:7]}")
    assert phases[2].startswith(f"Fetched commit {repo.trunk[:7]}")
    assert phases[3].startswith("Running repo2docker for commit ")
    assert phases[4] == "repo2docker finished; publishing the image\n"
    assert phases[5].startswith("Built demo:trunk (")
    seconds = [float(line[1:].split(" s]")[0]) for line in stamped]
    assert seconds == sorted(seconds)
    assert "c.Repo2Docker.cache_from = []" in setup.record()["config"]


def test_a_commit_the_repository_does_not_have_fails_with_a_reason(
    repo: Repo, tmp_path: Path
) -> None:
    setup = make_runner(tmp_path)
    missing = "e" * 40  # a full commit id is not looked up; the server does not have it
    lines = LogLines()
    outcome = run(setup.runner.run("b13", request_for(repo, missing), lines.append))
    assert outcome.state is BuildState.FAILED
    assert outcome.reason == f"commit eeeeeee is not in {repo.path}"
    assert any("fetching its branches and tags" in line for line in lines)
    assert not setup.record_file.exists()  # repo2docker never ran


def test_the_engine_checks_the_image_and_the_outcome_carries_the_facts(
    repo: Repo, tmp_path: Path
) -> None:
    setup = make_runner(tmp_path)
    setup.runner.in_build_check = build_runner.InBuildCheck(
        lambda image: [f"{image}.ipynb"], name_prefix="proj"
    )
    found = {"jupyterhub": "6.1.1", "singleuser": True, "paths": {"demo:trunk.ipynb": True}}
    assert setup.runner.base_env is not None
    setup.runner.base_env["FAKE_R2D_FACTS"] = json.dumps({"data": found})
    built_by_repo2docker(setup, "demo:trunk", "b1", labels_for(repo, repo.trunk))
    outcome = run(setup.runner.run("b1", request_for(repo), lambda _line: None))
    assert outcome.state is BuildState.BUILT and outcome.check_error is None
    assert outcome.facts is not None and outcome.facts.jupyterhub == "6.1.1"
    assert outcome.facts.paths == {"demo:trunk.ipynb": True}
    config = setup.record()["config"]
    assert "c.DockerAPIEngine.check_image = True" in config
    assert "c.DockerAPIEngine.check_paths = ['demo:trunk.ipynb']" in config
    assert "c.DockerAPIEngine.check_container_name = 'proj-check-b1'" in config

    # A check that could not run: the reason, scrubbed of the credentials.
    (tmp_path / "again").mkdir()
    setup = make_runner(tmp_path / "again")
    setup.runner.in_build_check = build_runner.InBuildCheck(lambda image: [])
    assert setup.runner.base_env is not None
    setup.runner.base_env["FAKE_R2D_FACTS"] = json.dumps({"error": f"no python ({PASSWORD})"})
    built_by_repo2docker(setup, "demo:trunk", "b2", labels_for(repo, repo.trunk))
    outcome = run(setup.runner.run("b2", request_for(repo), lambda _line: None))
    assert outcome.facts is None and outcome.check_error == f"no python ({MASK})"
    # Without the engine's word (another engine): neither, and AfterBuild checks afterwards.
    (tmp_path / "third").mkdir()
    setup = make_runner(tmp_path / "third")
    setup.runner.in_build_check = build_runner.InBuildCheck(lambda image: [])
    built_by_repo2docker(setup, "demo:trunk", "b3", labels_for(repo, repo.trunk))
    outcome = run(setup.runner.run("b3", request_for(repo), lambda _line: None))
    assert (outcome.facts, outcome.check_error) == (None, None)


class SlowBoxes:
    """BuildBoxes that take a while to open a box (the sandbox and its firewall)."""

    def __init__(self, error: str | None = None, seconds: float = 0.3) -> None:
        from gallery_builder.build_box import BoxSettings

        self.settings = BoxSettings(memory_gb=1, cpu=1)
        self.error, self.seconds = error, seconds
        self.opened: list[tuple[str, float, float]] = []
        self.closed: list[str | None] = []
        self.spares_made = 0

    def open(self, build_id: str):
        from gallery_builder.build_box import Box, BoxError

        started = time.monotonic()
        time.sleep(self.seconds)
        self.opened.append((build_id, started, time.monotonic()))
        if self.error:
            raise BoxError(self.error)
        return Box({"memory": 1}, network_mode="container:box", container_id=f"box-{build_id}")

    def close(self, box) -> None:
        self.closed.append(box.container_id)

    def make_spare(self) -> None:
        self.spares_made += 1


def test_the_box_is_made_while_git_fetches_and_always_removed(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[float] = []
    checkout = build_runner.checkout_commit

    async def timed_checkout(*args: Any, **kwargs: Any) -> Any:
        try:
            return await checkout(*args, **kwargs)
        finally:
            fetched.append(time.monotonic())

    monkeypatch.setattr(build_runner, "checkout_commit", timed_checkout)
    boxes = SlowBoxes()
    setup = make_runner(tmp_path, boxes=boxes)
    built_by_repo2docker(setup, "demo:trunk", "b1", labels_for(repo, repo.trunk))
    lines = LogLines()
    outcome = run(setup.runner.run("b1", request_for(repo), lines.append))
    assert outcome.state is BuildState.BUILT and boxes.closed == ["box-b1"]
    assert "c.DockerAPIEngine.build_network_mode = 'container:box'" in setup.record()["config"]
    # The box was being made before the fetch ended: they ran side by side.
    (_, started, _) = boxes.opened[0]
    assert started < fetched[0]
    assert any("sealed network" in line for line in lines)

    # A box that cannot be made fails the build with its reason; repo2docker never runs.
    (tmp_path / "again").mkdir()
    setup = make_runner(tmp_path / "again", boxes=SlowBoxes(error="no egress proxy"))
    outcome = run(setup.runner.run("b2", request_for(repo), lambda _line: None))
    assert outcome.state is BuildState.FAILED and outcome.reason == "no egress proxy"
    assert not setup.record_file.exists()

    # A fetch that fails still removes the box made meanwhile.
    boxes = SlowBoxes()
    (tmp_path / "third").mkdir()
    setup = make_runner(tmp_path / "third", boxes=boxes)
    outcome = run(setup.runner.run("b3", request_for(repo, "e" * 40), lambda _line: None))
    assert outcome.state is BuildState.FAILED and "is not in" in (outcome.reason or "")
    assert boxes.closed == ["box-b3"]


FAKE_WARM_MODULE = """\
# Stands in for repo2docker.__main__ in a warm start: imported first, main() later.
import json, os, sys, tempfile, time
IMPORTED = time.time()
def main():
    record = {
        "imported": IMPORTED, "main": time.time(), "argv": sys.argv, "cwd": os.getcwd(),
        "env": dict(os.environ), "tmp": tempfile.gettempdir(), "pid": os.getpid(),
    }
    with open(os.environ["FAKE_R2D_OUT"], "w") as handle:
        json.dump(record, handle)
    print("warm repo2docker ran", flush=True)
    return int(os.environ.get("FAKE_R2D_STATUS", "0"))
"""


def warm_runner(tmp_path: Path, *, spare_repo2docker: bool = False, **kwargs: Any) -> RunnerSetup:
    setup = make_runner(tmp_path, **kwargs)
    (tmp_path / "fake_warm_r2d.py").write_text(FAKE_WARM_MODULE)
    runner = BuildRunner(
        images=setup.images,  # type: ignore[arg-type]
        builder_version="9.9",
        work_root=setup.work_root,
        base_env={**(setup.runner.base_env or {}), "PYTHONPATH": str(tmp_path)},
        warm_start=True,
        spare_repo2docker=spare_repo2docker,
    )
    assert runner.warm_entry == build_runner.WARM_ENTRY  # repo2docker and the engine
    runner.warm_entry = ("fake_warm_r2d", "json")
    if runner.spare_repo2docker is not None:
        assert runner.spare_repo2docker.entry == build_runner.WARM_ENTRY
        runner.spare_repo2docker.entry = runner.warm_entry
    setup.runner = runner
    return setup


def test_a_warm_repo2docker_imports_itself_while_git_fetches(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[float] = []
    checkout = build_runner.checkout_commit

    async def slow_checkout(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.5)  # a fetch over the network
        try:
            return await checkout(*args, **kwargs)
        finally:
            fetched.append(time.time())

    monkeypatch.setattr(build_runner, "checkout_commit", slow_checkout)
    setup = warm_runner(tmp_path)
    built_by_repo2docker(setup, "demo:trunk", "b1", labels_for(repo, repo.trunk))
    lines = LogLines()
    outcome = run(setup.runner.run("b1", request_for(repo), lines.append))
    assert outcome.state is BuildState.BUILT, lines
    record = setup.record()
    assert record["imported"] < fetched[0] < record["main"]
    # It ran the build's command line, in the build's directory and environment.
    checkout_dir = record["argv"][-1]
    assert record["argv"][0] == "repo2docker" and checkout_dir.endswith("/checkout")
    assert (
        record["argv"][1:]
        == repo2docker_command(
            repository=checkout_dir,
            commit=repo.trunk,
            image=build_tag("demo:trunk", "b1"),
            config_path=record["argv"][2],
        )[1:]
    )
    assert record["cwd"] == str(Path(checkout_dir).parent)
    assert record["env"]["GIT_TERMINAL_PROMPT"] == "0"
    assert record["env"]["TMPDIR"] == record["tmp"] and record["tmp"].startswith(record["cwd"])
    assert "GALLERY_ADMIN_PASSWORD" not in record["env"]
    assert PASSWORD not in json.dumps(record["argv"])
    assert "warm repo2docker ran\n" in lines
    assert list(setup.work_root.iterdir()) == []


def test_a_warm_repo2docker_that_is_not_needed_goes_quietly(repo: Repo, tmp_path: Path) -> None:
    setup = warm_runner(tmp_path)
    lines = LogLines()
    outcome = run(setup.runner.run("b2", request_for(repo, "e" * 40), lines.append))
    assert outcome.state is BuildState.FAILED and "is not in" in (outcome.reason or "")
    assert not setup.record_file.exists()
    assert not any("Stopped repo2docker" in line for line in lines)
    # A failing one fails the build as a repo2docker would.
    (tmp_path / "again").mkdir()
    setup = warm_runner(tmp_path / "again")
    assert setup.runner.base_env is not None
    setup.runner.base_env["FAKE_R2D_STATUS"] = "3"
    outcome = run(setup.runner.run("b3", request_for(repo), lambda _line: None))
    assert outcome.state is BuildState.FAILED
    assert (outcome.reason or "").startswith("repo2docker exited with status 3")


def test_a_published_builds_box_goes_after_the_outcome_and_a_failed_ones_before(
    repo: Repo, tmp_path: Path
) -> None:
    boxes = SlowBoxes(seconds=0)
    closing = []

    def slow_close(box: Any) -> None:
        time.sleep(0.3)
        closing.append(box.container_id)

    boxes.close = slow_close  # type: ignore[method-assign]
    setup = make_runner(tmp_path, boxes=boxes)
    built_by_repo2docker(setup, "demo:trunk", "b1", labels_for(repo, repo.trunk))

    async def build_then_settle() -> tuple[Any, list[str], float]:
        started = time.monotonic()
        outcome = await setup.runner.run("b1", request_for(repo), lambda _line: None)
        seconds = time.monotonic() - started
        seen = list(closing)
        await setup.runner.settle()
        return outcome, seen, seconds

    outcome, seen_at_outcome, _ = run(build_then_settle())
    assert outcome.state is BuildState.BUILT
    assert seen_at_outcome == [] and closing == ["box-b1"]  # removed, after the outcome
    assert boxes.spares_made == 1  # the next build's box is made after this one's
    # A failed build removes it before its outcome.
    outcome = run(setup.runner.run("b2", request_for(repo, "e" * 40), lambda _line: None))
    assert outcome.state is BuildState.FAILED and closing == ["box-b1", "box-b2"]
    run(setup.runner.settle())
    assert boxes.spares_made == 2
