"""Benchmark: a build printing 100 000 log lines against the same build with its output
discarded (issue 10's goal: within 10%).

Brings up the real stack (as the end-to-end tests do) and builds
tests/fixtures/repos/loglines through the environments API, alternating "loud" (the step
prints 100 000 lines, which the builder streams, batches and stores) and "quiet" (the same
step, output to /dev/null), each after a new commit so the step always runs. Each build is
timed from the POST until the log stream reports its end. Figures: median of N rounds
(default 3) with min and max, and the ratio loud / quiet.

Usage: .venv/bin/python -m benchmarks.build_log_throughput [--rounds N]
(set GALLERY_TEST_PROJECT_PREFIX, GALLERY_HUB_IMAGE, GALLERY_BUILDER_IMAGE and
GALLERY_EGRESS_IMAGE as for the end-to-end tests when another checkout shares the engine).
"""

from __future__ import annotations

import argparse
import statistics
import time

from tests.e2e import harness as e2e
from tests.e2e.environments_client import EnvironmentsClient

LINES = 100_000


def timed_build(client: EnvironmentsClient, stack, gitserver: str, mode: str, n: int) -> float:
    """Seconds from the POST until the log stream ends, for one build in `mode`."""
    e2e.edit_file(stack, "loglines", "mode.txt", f"{mode} {n}\n".encode())
    start = time.perf_counter()
    response = client.create(repository=f"{gitserver}/public/loglines.git", name="loglines")
    response.raise_for_status()
    events = client.log_events(response.json()["id"], timeout=900)
    seconds = time.perf_counter() - start
    final = events[-1][2]
    assert final["state"] == "built" and not final["reused"], final
    log = "".join(data for event, _, data in events if event == "log")
    printed = log.count(" of the benchmark\n")
    assert printed == (LINES if mode == "loud" else 0), (mode, printed)
    return seconds


def report(name: str, values: list[float]) -> float:
    median = statistics.median(values)
    print(
        f"{name:<40} median {median:6.2f} s  (min {min(values):.2f}, max {max(values):.2f};"
        f" n={len(values)})"
    )
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds

    e2e.ARTIFACTS.mkdir(exist_ok=True)
    with e2e.running_stack(e2e.ARTIFACTS) as stack:
        gitserver = e2e.start_gitserver(stack)
        password = e2e.read_admin_password(stack)
        client = EnvironmentsClient(stack.base_url, e2e.make_admin_token(stack, password))
        timed_build(client, stack, gitserver, "quiet", 0)  # warm-up: clone, base image
        loud, quiet = [], []
        for n in range(1, rounds + 1):
            quiet.append(timed_build(client, stack, gitserver, "quiet", n))
            loud.append(timed_build(client, stack, gitserver, "loud", n))
        for env in client.list():
            if env["image"] == "loglines:main":
                client.request("DELETE", f"/{env['id']}")
        print()
        quiet_median = report("build, output discarded", quiet)
        loud_median = report(f"build printing {LINES} lines", loud)
        print(f"{'  ratio loud / quiet':<40} {loud_median / quiet_median:.3f}  (goal <= 1.10)")


if __name__ == "__main__":
    main()
