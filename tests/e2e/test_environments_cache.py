"""Build speed, as a user sees it in the build log: labels in one step, and a notebook-only
commit rebuilt from Docker's layer cache (the dependency steps are not run again)."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from gallery_common.image_compatibility import facts_from_labels
from gallery_common.image_labels import LABEL_KEYS, parse_labels

from .environments_client import EnvironmentsClient
from .harness import edit_file

STEP = re.compile(r"^Step \d+/\d+ : (\w+)", re.MULTILINE)
NOTEBOOK = "notebooks/app.ipynb"


@pytest.fixture(scope="module")
def client(stack, admin_token, gitserver) -> EnvironmentsClient:
    return EnvironmentsClient(stack.base_url, admin_token)


def inspect(image: str) -> dict:
    done = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)[0]


def file_in(image: str, path: str) -> str:
    done = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "cat", image, path],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def label_steps(log: str) -> list[str]:
    """The label steps in the log's step summary (a LABEL build step, or the commit the
    engine makes instead), and Docker's own step lines."""
    summary = log[log.index("Build steps: ") :].splitlines()
    return [line for line in summary if re.match(r" +\d+\. \w+ +[\d.]+ s  LABEL ", line)]


# The builder's processes that run the warm launcher (python -c ... repo2docker.__main__).
COUNT_LAUNCHERS = """
import os
count = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
    except OSError:
        continue
    count += argv[1:2] == [b"-c"] and b"repo2docker.__main__" in argv
print(count)
"""


def waiting_repo2dockers(stack) -> int:
    done = stack.compose("exec", "-T", "builder", "python3", "-c", COUNT_LAUNCHERS)
    return int(done.stdout.strip())


def build(client: EnvironmentsClient, response) -> tuple[dict, str]:
    assert response.status_code == 202, response.text
    build_id = response.json()["id"]
    log = client.log_text(build_id)
    final = client.get(build_id)
    assert final["state"] == "built", (final, log[-3000:])
    return final, log


def test_labels_in_one_step_and_a_notebook_only_commit_from_the_cache(client, stack, gitserver):
    repository = f"{gitserver}/public/layered.git"
    first, log = build(client, client.create(repository=repository, name="layered", memory=1))
    try:
        # The builder's labels: one step (the fixture's Dockerfile has none of its own), a
        # commit of the image (it has a command), so no LABEL build step at all.
        assert len(label_steps(log)) == 1, log
        assert "(a commit)" in label_steps(log)[0]
        assert STEP.findall(log).count("LABEL") == 0, log
        labels = inspect("layered:main")["Config"]["Labels"]
        assert set(LABEL_KEYS) - {"org.neurolang-gallery.cpu-limit"} <= set(labels)
        parsed = parse_labels(labels)
        assert parsed is not None
        assert (parsed.repository, parsed.ref, parsed.commit) == (
            repository,
            "main",
            first["resolved_commit"],
        )
        assert (parsed.display_name, parsed.memory_limit_gb) == ("layered", 1.0)
        assert parsed.build_time is not None and parsed.builder_version
        assert re.search(r"^\[ *\d+\.\d\d s\] Running repo2docker", log, re.MULTILINE)

        # A commit that changes only a notebook: the dependency step comes from the cache.
        notebook = file_in("layered:main", "/home/jovyan/app.ipynb").replace(
            "Demo app", "Demo app, second edition"
        )
        commit = edit_file(stack, "layered", NOTEBOOK, notebook.encode())
        response = client.request("POST", f"/{first['id']}/rebuild")
        second, log = build(client, response)
        assert second["resolved_commit"] == commit != first["resolved_commit"]
        assert second["reused"] is False
        assert "Using the current image of layered:main as the layer cache" in log
        # Its repo2docker had imported itself before the build came (started after the first).
        assert "repo2docker was started ahead of this build" in log, log[:3000]
        summary = log[log.index("Build steps: ") :].splitlines()
        deps = next(line for line in summary if 'echo "installing dependencies"' in line)
        assert " cached " in deps, summary
        rendered = next(line for line in summary if 'echo "rendering notebooks"' in line)
        assert " ran " in rendered, summary
        lines = [line.strip() for line in log.splitlines()]
        assert "installing dependencies" not in lines, "the dependency step ran again"
        assert "rendering notebooks" in lines
        assert "Demo app, second edition" in file_in("layered:main", "/home/jovyan/app.ipynb")
        assert len(label_steps(log)) == 1 and STEP.findall(log).count("LABEL") == 0
        # Its facts are those of the image it replaces: the commit was made during the check,
        # and carries this check's facts (checked again, not copied).
        assert "(a commit, made during the check)" in label_steps(log)[0], label_steps(log)
        # The commit kept the repository build's configuration (its parent), labels aside,
        # and added no layer.
        image = inspect("layered:main")
        parent = inspect(image["Parent"])
        assert image["RootFS"] == parent["RootFS"]
        assert {k: v for k, v in image["Config"].items() if k not in ("Labels", "Image")} == {
            k: v for k, v in parent["Config"].items() if k not in ("Labels", "Image")
        }
        assert image["Config"]["Cmd"]
        # The same facts as the first build's (a notebook changed), checked at the rebuild.
        before = facts_from_labels(labels)
        after = facts_from_labels(image["Config"]["Labels"])
        assert before is not None and after is not None and after.same_as(before)
        assert before.paths == after.paths, after
        assert after.checked_at > before.checked_at
        # One repo2docker waits for the next build, and only one: each served one build.
        deadline = time.monotonic() + 10
        while (waiting := waiting_repo2dockers(stack)) != 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert waiting == 1
    finally:
        current = {env["image"]: env for env in client.list()}
        if "layered:main" in current:
            client.request("DELETE", f"/{current['layered:main']['id']}")
