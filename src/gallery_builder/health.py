"""Health checks of the builder: can it reach Docker, can it keep its records."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def check_state_dir(state_dir: Path) -> CheckResult:
    """The state directory exists and a file can be written to it."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".health-"):
            pass
    except OSError as e:
        return CheckResult("state_dir", False, f"{state_dir} is not writable: {e.strerror}")
    return CheckResult("state_dir", True, str(state_dir))


def check_docker(ping: Callable[[], object]) -> CheckResult:
    """The Docker engine answers a ping (ping raises on failure)."""
    try:
        ping()
    except Exception as e:
        return CheckResult("docker", False, f"Docker engine unreachable: {type(e).__name__}")
    return CheckResult("docker", True, os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))


def report(results: list[CheckResult]) -> tuple[int, dict]:
    """HTTP status and JSON body for a list of checks: 200 when all pass, else 503."""
    ok = all(r.ok for r in results)
    body = {"ok": ok, "checks": {r.name: {"ok": r.ok, "detail": r.detail} for r in results}}
    return (200 if ok else 503), body
