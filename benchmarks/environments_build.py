"""Benchmark: building through the environments API vs a plain `docker build`.

Brings up the real stack (as the end-to-end tests do), then, in one run on one host:
- floor: `docker build --no-cache` of tests/fixtures/repos/bench (the same Dockerfile);
- API: POST /services/environments/api/environments for the same repository served by the
  test git server, after a new commit each round (so the cache cannot help), timed until
  the build is `built`;
- rebuild of an already-built commit: POST .../rebuild, timed until the answer says
  `built` with `reused: true`.
Prints each figure and the ratio API / floor (goal <= 1.15) and the rebuild time (goal <= 2 s).

Usage: .venv/bin/python -m benchmarks.environments_build [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

from tests.e2e import harness as e2e
from tests.e2e.environments_client import EnvironmentsClient

ROOT = Path(__file__).resolve().parents[1]


def timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def docker_build_floor() -> float:
    seconds, _ = timed(
        lambda: subprocess.run(
            [
                "docker",
                "build",
                "-q",
                "--no-cache",
                "-t",
                "gallery-bench-floor:latest",
                str(ROOT / "tests/fixtures/repos/bench"),
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )
    )
    subprocess.run(["docker", "rmi", "gallery-bench-floor:latest"], capture_output=True)
    return seconds


def new_commit(stack) -> None:
    subprocess.run(
        [
            "docker",
            "exec",
            f"{stack.project}-gitserver",
            "python3",
            "-c",
            "import urllib.request; urllib.request.urlopen(urllib.request.Request("
            "'http://127.0.0.1/admin/commit/bench', method='POST'))",
        ],
        check=True,
        capture_output=True,
    )


def api_build(client: EnvironmentsClient, gitserver: str) -> tuple[float, dict]:
    """Seconds from POST until the build's log stream reports its end (pushed, not polled)."""

    def build():
        response = client.create(repository=f"{gitserver}/public/bench.git", name="bench")
        response.raise_for_status()
        return client.log_events(response.json()["id"], timeout=900)[-1][2]

    return timed(build)


def rebuild_until_reused(client: EnvironmentsClient, build_id: str) -> float:
    """Seconds from POST .../rebuild until its log stream reports the reused image."""
    start = time.perf_counter()
    response = client.request("POST", f"/{build_id}/rebuild")
    response.raise_for_status()
    events = client.log_events(response.json()["id"])
    seconds = time.perf_counter() - start
    final = events[-1][2]
    assert final["state"] == "built" and final["reused"], final
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds

    e2e.ARTIFACTS.mkdir(exist_ok=True)
    with e2e.running_stack(e2e.ARTIFACTS) as stack:
        gitserver = e2e.start_gitserver(stack)
        password = e2e.read_admin_password(stack)
        client = EnvironmentsClient(stack.base_url, e2e.make_admin_token(stack, password))
        api_build(client, gitserver)  # warm-up: first clone, repo2docker start-up caches

        floors, builds, rebuilds = [], [], []
        for _ in range(rounds):
            floors.append(docker_build_floor())
            new_commit(stack)
            seconds, build = api_build(client, gitserver)
            assert build["state"] == "built" and not build["reused"], build
            builds.append(seconds)
            rebuilds.append(rebuild_until_reused(client, build["id"]))
        floor, api = statistics.median(floors), statistics.median(builds)
        print(f"docker build --no-cache (floor): median {floor:.2f} s  {_fmt(floors)}")
        print(f"build through the API:           median {api:.2f} s  {_fmt(builds)}")
        print(f"ratio API / floor: {api / floor:.3f}  (goal <= 1.15)")
        print(
            f"rebuild of a built commit: median {statistics.median(rebuilds):.2f} s "
            f"(goal <= 2 s)  {_fmt(rebuilds)}"
        )


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


if __name__ == "__main__":
    main()
