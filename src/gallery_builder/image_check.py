"""Look inside a built image: can the hub run it, and are the gallery's notebooks there?

A short container of the image itself (no network, no capabilities, the user servers' uid)
runs `CHECK_SCRIPT` with the image's own Python: the versions of jupyterhub, voila and
jupytext as the interpreter of `jupyterhub-singleuser` sees them, and which of the paths
gallery.yaml names exist, relative to the image's working directory (where the server's
root, and so Voila's paths, start). The facts go on the image as one label
(gallery_common.image_compatibility), so the hub reads them with the other labels: a second,
metadata-only build step `FROM <image>` adds it and the tag moves there.

Synchronous docker-py calls: the async caller runs them in a thread.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from docker.errors import DockerException, NotFound

from gallery_builder.docker_images import DockerImages
from gallery_common.gallery_file import Gallery
from gallery_common.image_compatibility import (
    COMPATIBILITY_LABEL,
    ImageFacts,
    facts_from_json,
    facts_from_labels,
    image_problems,
    path_problems,
)

CHECK_MARKER = "GALLERY-IMAGE-CHECK "
# Runs inside the image (any Python 3.6+); prints one marker line of JSON.
CHECK_SCRIPT = r"""
import json, os, shutil, subprocess, sys
NAMES = ("jupyterhub", "voila", "jupytext")
VERSIONS = (
    "import json\n"
    "try:\n from importlib import metadata\n"
    "except ImportError:\n import importlib_metadata as metadata\n"
    "def v(n):\n try:\n  return metadata.version(n)\n except Exception:\n  return None\n"
    "print(json.dumps({n: v(n) for n in %r}))" % (NAMES,)
)
facts = {"python": sys.version.split()[0], "workdir": os.getcwd()}
single = shutil.which("jupyterhub-singleuser")
facts["singleuser"] = bool(single)
python = sys.executable
if single:
    try:
        with open(single, "rb") as f:
            first = f.readline().decode("utf-8", "replace")
        if first.startswith("#!"):
            interpreter = first[2:].strip().split()[0]
            if os.path.basename(interpreter) != "env" and os.access(interpreter, os.X_OK):
                python = interpreter
    except OSError:
        pass
try:
    out = subprocess.run([python, "-c", VERSIONS], stdout=subprocess.PIPE, timeout=60).stdout
    facts.update(json.loads(out.decode().strip().splitlines()[-1]))
except Exception as error:
    facts["error"] = str(error)
paths = json.loads(os.environ.get("GALLERY_CHECK_PATHS") or "[]")
facts["paths"] = {p: os.path.isfile(p) for p in paths}
print("GALLERY-IMAGE-CHECK " + json.dumps(facts), flush=True)
"""
# python3 where there is one (repo2docker images, Debian), else python.
CHECK_COMMAND = [
    "sh",
    "-c",
    'if command -v python3 >/dev/null 2>&1; then exec python3 -c "$GALLERY_CHECK_SCRIPT"; '
    'else exec python -c "$GALLERY_CHECK_SCRIPT"; fi',
]


class CheckError(Exception):
    """The check could not run; the message is for the admin."""


def gallery_paths(gallery: Gallery | None, image: str) -> list[str]:
    """The notebook paths of the gallery's examples that run `image`, sorted."""
    if gallery is None:
        return []
    return sorted({e.path for e in gallery.examples.values() if e.image_name == image})


def parse_check_output(text: str, checked_at: datetime | None = None) -> ImageFacts | None:
    """The facts in the check container's output (its last marker line), or None."""
    for line in reversed(text.splitlines()):
        if line.startswith(CHECK_MARKER):
            try:
                data = json.loads(line[len(CHECK_MARKER) :])
            except ValueError:
                return None
            if isinstance(data, dict):
                stamp = (checked_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
                data["checked_at"] = stamp
            return facts_from_json(data)
    return None


def describe(facts: ImageFacts, hub_major: int | None) -> list[str]:
    """Log lines: what was found, then every problem (the same words the pages show)."""
    found = (
        f"jupyterhub {facts.jupyterhub or 'missing'}, "
        f"jupyterhub-singleuser {'present' if facts.singleuser else 'missing'}, "
        f"voila {facts.voila or 'missing'}, jupytext {facts.jupytext or 'missing'}, "
        f"Python {facts.python or '?'}"
    )
    lines = [f"Image check: {found}"]
    for path, present in sorted(facts.paths.items()):
        lines.append(f"Image check: {path} {'found' if present else 'MISSING'}")
    problems = image_problems(facts, hub_major)
    for path in sorted(facts.paths):
        problems += path_problems(facts, path)
    if any(p.endswith(".py") for p in facts.paths) and facts.jupytext is None:
        lines.append(
            "Image check: note: without jupytext in the image Voila shows a .py example as "
            "one cell with its default template"
        )
    lines += [f"Image check: INCOMPATIBLE: {problem}" for problem in problems]
    if not problems:
        lines.append("Image check: the hub can run this image")
    return lines


class ImageChecker:
    """Runs the check in an image and labels the image with what it found."""

    def __init__(
        self,
        images: DockerImages,
        *,
        uid: str = "1000",
        timeout_s: float = 120,
        name_prefix: str = "gallery",
    ) -> None:
        self.images = images
        self.uid = uid
        self.timeout_s = timeout_s
        self.name_prefix = name_prefix

    def check(self, image: str, paths: Iterable[str]) -> ImageFacts:
        """Run the check in a throw-away container of `image`; CheckError if it cannot."""
        api = self.images.api
        container = api.create_container(
            image=image,
            command=CHECK_COMMAND,
            environment={
                "GALLERY_CHECK_SCRIPT": CHECK_SCRIPT,
                "GALLERY_CHECK_PATHS": json.dumps(sorted(paths)),
            },
            user=self.uid,
            network_disabled=True,
            name=f"{self.name_prefix}-check-{secrets.token_hex(4)}",
            host_config=api.create_host_config(
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                mem_limit="512m",
                pids_limit=256,
            ),
        )
        try:
            api.start(container["Id"])
            try:
                status = api.wait(container["Id"], timeout=self.timeout_s).get("StatusCode")
            except Exception as e:  # requests' ReadTimeout and friends
                raise CheckError(f"the check did not finish in {self.timeout_s:g} s") from e
            output = api.logs(container["Id"], stdout=True, stderr=True).decode(errors="replace")
        finally:
            with contextlib.suppress(NotFound):
                api.remove_container(container["Id"], force=True)
        facts = parse_check_output(output)
        if facts is None:
            tail = output.strip().splitlines()[-3:]
            raise CheckError(f"the check exited with {status}: {' / '.join(tail) or 'no output'}")
        return facts

    def label(self, image: str, facts: ImageFacts) -> bool:
        """Put `facts` on `image` (a metadata-only step; the tag moves). False: already there."""
        attrs = self.images.inspect(image)
        if attrs is None:
            raise CheckError(f"{image} does not exist")
        current = facts_from_labels((attrs.get("Config") or {}).get("Labels"))
        if facts.same_as(current):
            return False
        new_id = self._build_label_step(attrs["Id"], {COMPATIBILITY_LABEL: facts.to_label()})
        self.images.tag(new_id, image)
        return True

    def _build_label_step(self, base_id: str, labels: dict[str, str]) -> str:
        dockerfile = io.BytesIO(f"FROM {base_id}\n".encode())
        image_id = None
        stream: Any = self.images.api.build(
            fileobj=dockerfile, labels=labels, rm=True, forcerm=True, pull=False, decode=True
        )
        for chunk in stream:
            if "error" in chunk:
                raise CheckError(f"could not label the image: {chunk['error'].strip()}")
            aux = chunk.get("aux") or {}
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
            text = chunk.get("stream") or ""
            if text.startswith("Successfully built "):
                image_id = image_id or text.split()[-1]
        if not image_id:
            raise DockerException("Docker built the label step but named no image")
        return image_id
