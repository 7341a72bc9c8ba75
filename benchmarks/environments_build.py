"""Benchmark: building through the environments API vs a plain `docker build`.

Brings up the real stack (as the end-to-end tests do), then, in one run on one host, each
figure the median of N rounds (default 3) with min and max:
- floor: `docker build --no-cache` of tests/fixtures/repos/bench (the same Dockerfile), with
  the limits the stack gives every build step (GALLERY_BUILD_MEMORY_GB, GALLERY_BUILD_CPU);
- cold build through the API: POST .../environments for the same repository served by the
  test git server, after a new commit each round (its `COPY . ` step changes, so the cache
  cannot help), timed until the log stream reports the end; ratio to the floor (goal <= 1.10),
  of the medians and, round by round, of each build to the floor right before it;
- rebuild of a built commit: POST .../rebuild, until `built` with `reused: true` (goal <= 2 s);
- each timed figure starts after a 2 s pause (the builder's housekeeping of the build
  before goes on in the background); the API's overhead over the floor is also shown in
  seconds, round by round, and so is the API's time outside the Docker steps its log's
  summary lists (the builder's own fixed cost, whatever the CPU-bound steps took);
- notebook-only change: tests/fixtures/repos/layered (dependencies first, notebooks last):
  a commit changing only its notebook, then POST .../rebuild, against a `docker build` with a
  warm cache of the same change in a local copy; ratio (goal <= 1.2). The API's log must
  show the dependency step as cached.

Usage: .venv/bin/python -m benchmarks.environments_build [--rounds N]
(set GALLERY_TEST_PROJECT_PREFIX, GALLERY_HUB_IMAGE and GALLERY_BUILDER_IMAGE as for the
end-to-end tests when another checkout shares the Docker engine).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gallery_builder.build_box import build_limits
from gallery_builder.builder_settings import BuilderSettings
from tests.e2e import harness as e2e
from tests.e2e.environments_client import EnvironmentsClient

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests/fixtures/repos"
NOTEBOOK = "notebooks/app.ipynb"
PREFIX = e2e.PROJECT_PREFIX
# The builder's housekeeping after a build (removing its box, making the next build's,
# stray layers, older previous images) goes on after the outcome, in the background: each
# timed figure starts after this pause, so that none pays for the one before it.
QUIET_S = 2.0


def quiet() -> None:
    time.sleep(QUIET_S)


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def stack_settings(stack) -> BuilderSettings:
    """The builder's settings as the stack has them: .env.example under the stack's own."""
    env: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        name, equals, value = line.partition("=")
        if equals and not line.lstrip().startswith("#"):
            env[name.strip()] = value.strip()
    return BuilderSettings.from_env({**env, **stack.env})


def limit_flags(settings: BuilderSettings) -> list[str]:
    """`docker build` flags for the limits the stack gives every build step."""
    limits = build_limits(settings.build_memory_gb, settings.build_cpu)
    return [
        f"--memory={limits['memory']}",
        f"--memory-swap={limits['memswap']}",
        f"--cpu-period={limits['cpuperiod']}",
        f"--cpu-quota={limits['cpuquota']}",
    ]


def docker_build(context: Path, tag: str, *, no_cache: bool, limits: list[str]) -> float:
    """Seconds of a classic-builder `docker build` (as the builder's engine builds), with
    the stack's build limits."""
    args = ["docker", "build", "-q", *(["--no-cache"] if no_cache else []), *limits]
    args += ["-t", tag, str(context)]
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    seconds, _ = timed(lambda: subprocess.run(args, check=True, capture_output=True, env=env))
    return seconds


def remove_image(tag: str) -> None:
    subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)


def notebook_text(round_number: int) -> bytes:
    text = (FIXTURES / "layered" / NOTEBOOK).read_text()
    return text.replace("Demo app", f"Demo app, edition {round_number}").encode()


def build_until_done(client: EnvironmentsClient, response) -> tuple[dict, str]:
    """The final build and its log, read from the log stream (pushed, not polled)."""
    response.raise_for_status()
    events = client.log_events(response.json()["id"], timeout=900)
    log = "".join(data for event, _, data in events if event == "log")
    return events[-1][2], log


def api_cold_build(client: EnvironmentsClient, gitserver: str) -> tuple[float, dict]:
    seconds, (final, log) = timed(
        lambda: build_until_done(
            client, client.create(repository=f"{gitserver}/public/bench.git", name="bench")
        )
    )
    assert final["state"] == "built" and not final["reused"], final
    return seconds, {**final, "timeline": timeline(log), "outside": seconds - step_seconds(log)}


def rebuild_until_reused(client: EnvironmentsClient, build_id: str) -> float:
    seconds, (final, _log) = timed(
        lambda: build_until_done(client, client.request("POST", f"/{build_id}/rebuild"))
    )
    assert final["state"] == "built" and final["reused"], final
    return seconds


STEP_LINE = re.compile(r"^ +\d+\. (?:ran|cached) +([\d.]+) s  ", re.MULTILINE)


def step_seconds(log: str) -> float:
    """The seconds of the Docker steps the build log's summary lists (the Dockerfile's and
    the label step): what is left of a build's time is the builder's own."""
    summary = log[log.index("Build steps: ") :] if "Build steps: " in log else ""
    return sum(float(seconds) for seconds in STEP_LINE.findall(summary))


def timeline(log: str) -> list[str]:
    """The builder's timed phases and the step summary of a build log."""
    lines = log.splitlines()
    phases = [line for line in lines if line.startswith("[") and " s] " in line]
    start = next((i for i, line in enumerate(lines) if line.startswith("Build steps: ")), None)
    steps = lines[start:] if start is not None else []
    return phases + [line for line in steps if not line.startswith("[")]


def notebook_rebuild(
    client: EnvironmentsClient, stack, build_id: str, n: int
) -> tuple[float, list[str], float]:
    """Commit a notebook-only change, then time the rebuild through the API."""
    e2e.edit_file(stack, "layered", NOTEBOOK, notebook_text(n))
    seconds, (final, log) = timed(
        lambda: build_until_done(client, client.request("POST", f"/{build_id}/rebuild"))
    )
    assert final["state"] == "built" and not final["reused"], final
    summary = timeline(log)
    deps = next(line for line in summary if 'echo "installing dependencies"' in line)
    assert " cached " in deps, "\n".join(summary)
    return seconds, summary, seconds - step_seconds(log)


def warm_docker_build(context: Path, n: int, limits: list[str]) -> float:
    (context / NOTEBOOK).write_bytes(notebook_text(n))
    return docker_build(context, f"{PREFIX}-bench-layered:latest", no_cache=False, limits=limits)


def report(name: str, values: list[float], unit: str = " s", digits: int = 2) -> float:
    median = statistics.median(values)
    low, high = min(values), max(values)
    print(
        f"{name:<44} median {median:6.{digits}f}{unit}  "
        f"(min {low:.{digits}f}, max {high:.{digits}f}; n={len(values)})"
    )
    return median


def round_ratios(name: str, api: list[float], floor: list[float]) -> None:
    """Each round's API time over the floor measured right before it: the two ran minutes
    apart at most, so a slower or faster spell of the machine weighs on both alike."""
    report(name, [a / f for a, f in zip(api, floor, strict=True)], unit="", digits=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds

    e2e.ARTIFACTS.mkdir(exist_ok=True)
    with e2e.running_stack(e2e.ARTIFACTS) as stack, tempfile.TemporaryDirectory() as scratch:
        gitserver = e2e.start_gitserver(stack)
        password = e2e.read_admin_password(stack)
        client = EnvironmentsClient(stack.base_url, e2e.make_admin_token(stack, password))
        limits = limit_flags(stack_settings(stack))
        print("floors built with the stack's build limits:", " ".join(limits))
        # Warm-up: first clone, repo2docker's start-up, the base image's layers in memory.
        api_cold_build(client, gitserver)
        floor_tag = f"{PREFIX}-bench-floor:latest"
        docker_build(FIXTURES / "bench", floor_tag, no_cache=True, limits=limits)

        floors, colds, reuses, cold_outside = [], [], [], []
        for _ in range(rounds):
            quiet()
            floors.append(docker_build(FIXTURES / "bench", floor_tag, no_cache=True, limits=limits))
            e2e.edit_file(stack, "bench", "README.md", None)  # a new commit: no cache
            quiet()
            seconds, build = api_cold_build(client, gitserver)
            colds.append(seconds)
            cold_outside.append(build["outside"])
            quiet()
            reuses.append(rebuild_until_reused(client, build["id"]))
        remove_image(floor_tag)

        # Notebook-only changes: the API's rebuild and a warm `docker build` of each.
        context = Path(scratch) / "layered"
        shutil.copytree(FIXTURES / "layered", context)
        first, _ = build_until_done(
            client, client.create(repository=f"{gitserver}/public/layered.git", name="layered")
        )
        assert first["state"] == "built", first
        warm_docker_build(context, 0, limits)  # the floor's own cache
        notebook_api, notebook_floor, notebook_outside = [], [], []
        for n in range(1, rounds + 1):
            quiet()
            notebook_floor.append(warm_docker_build(context, 100 + n, limits))
            quiet()
            seconds, notebook_timeline, outside = notebook_rebuild(client, stack, first["id"], n)
            notebook_api.append(seconds)
            notebook_outside.append(outside)
        remove_image(f"{PREFIX}-bench-layered:latest")

        # The benchmark's environments go, as an admin would delete them.
        for env in client.list():
            if env["image"] in ("bench:main", "layered:main"):
                client.request("DELETE", f"/{env['id']}")

        print("\nThe last cold build through the API, as its log times it:")
        print("\n".join("  " + line for line in build["timeline"]))
        print("The last notebook-only rebuild:")
        print("\n".join("  " + line for line in notebook_timeline))

        print()
        floor = report("floor: docker build --no-cache", floors)
        cold = report("cold build through the API", colds)
        print(f"{'  ratio API / floor':<44} {cold / floor:.3f}  (goal <= 1.10)")
        round_ratios("  ratio API / floor, round by round", colds, floors)
        report("  API - floor, round by round", [c - f for c, f in zip(colds, floors, strict=True)])
        report("  API outside its Docker steps", cold_outside)
        report("rebuild of a built commit (goal <= 2 s)", reuses)
        warm = report("warm docker build, notebook-only change", notebook_floor)
        notebook = report("API rebuild, notebook-only commit", notebook_api)
        print(f"{'  ratio API / warm docker build':<44} {notebook / warm:.3f}  (goal <= 1.2)")
        round_ratios("  ratio API / warm build, round by round", notebook_api, notebook_floor)
        report(
            "  API - warm build, round by round",
            [a - f for a, f in zip(notebook_api, notebook_floor, strict=True)],
        )
        report("  API outside its Docker steps", notebook_outside)


if __name__ == "__main__":
    main()
