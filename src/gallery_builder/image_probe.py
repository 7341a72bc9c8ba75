"""The image check's container: a short container of the image itself (no network, no
capabilities, the user servers' uid) runs `CHECK_SCRIPT` with the image's own Python and
prints what it found as one marker line of JSON.

Used by `image_check` (after a build) and by the engine (`docker_api_engine`, before the last
step, inside repo2docker's process): kept free of heavy imports for that.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from docker.errors import NotFound

from gallery_common.image_compatibility import ImageFacts, facts_from_json, facts_from_labels

CHECK_MARKER = "GALLERY-IMAGE-CHECK "
# Runs inside the image (any Python 3.6+); prints one marker line of JSON.
CHECK_SCRIPT = r"""
import json, os, shutil, subprocess, sys
NAMES = ("jupyterhub", "voila", "jupytext")
# The versions as importlib.metadata finds them: the first distribution along sys.path, its
# Version from the METADATA of a .dist-info folder; importlib.metadata itself (a slow import)
# only for a name whose first find is something else (an .egg-info) or nowhere.
VERSIONS = '''
import json, os, sys
NAMES = %r
found = {}
for folder in sys.path:
    try:
        entries = os.listdir(folder or ".")
    except OSError:
        continue
    for entry in entries:
        if entry.endswith((".dist-info", ".egg-info")):
            name = entry.rsplit(".", 1)[0].partition("-")[0]
            name = name.lower().replace("_", "-").replace(".", "-")
            if name in NAMES and name not in found:
                found[name] = None
                if entry.endswith(".dist-info"):
                    try:
                        path = os.path.join(folder or ".", entry, "METADATA")
                        with open(path, encoding="utf-8", errors="replace") as meta:
                            for header in meta:
                                if not header.strip():
                                    break
                                if header.startswith("Version:"):
                                    found[name] = header.split(":", 1)[1].strip() or None
                                    break
                    except (OSError, UnicodeDecodeError):
                        pass
ask = [n for n in NAMES if found.get(n) is None]
if ask:
    try:
        from importlib import metadata
    except ImportError:
        import importlib_metadata as metadata
    for n in ask:
        try:
            found[n] = metadata.version(n)
        except Exception:
            found[n] = None
found["sitedirs"] = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
print(json.dumps(found))
''' % (NAMES,)
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
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        # The server's interpreter is this one: ask here, no second start-up.
        import contextlib, io
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(VERSIONS, {})
        out = buffer.getvalue().encode()
    else:
        out = subprocess.run([python, "-c", VERSIONS], stdout=subprocess.PIPE, timeout=60).stdout
    facts.update(json.loads(out.decode().strip().splitlines()[-1]))
except Exception as error:
    facts["error"] = str(error)
paths = json.loads(os.environ.get("GALLERY_CHECK_PATHS") or "[]")
facts["paths"] = {p: os.path.isfile(p) for p in paths}
# Where the slow import is, for both interpreters, and whether the image's USER (if it is
# this uid) could remove it without root.
sitedirs = set(facts.pop("sitedirs", None) or [])
sitedirs.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
found, removable = [], True
for site in sorted(d for d in sitedirs if isinstance(d, str)):
    try:
        names = os.listdir(site)
    except OSError:
        continue
    for name in sorted(names):
        if name == "rfc3987_syntax" or (
            name.startswith("rfc3987_syntax-") and name.endswith(".dist-info")
        ):
            path = os.path.join(site, name)
            if os.path.isdir(path) and not os.path.islink(path):
                found.append(path)
                removable = removable and os.access(site, os.W_OK | os.X_OK)
                for top, dirs, _files in os.walk(path):
                    removable = removable and os.access(top, os.W_OK | os.X_OK)
user = (os.environ.get("GALLERY_CHECK_USER") or "").split(":")[0]
try:
    import pwd
    user_uid = int(user) if user.isdigit() else (pwd.getpwnam(user).pw_uid if user else 0)
except Exception:
    user_uid = None
facts["slow_import"] = {
    "paths": found,
    "removable": removable,
    "uid": os.getuid(),
    "user_uid": user_uid,
}
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


def check_stamp(checked_at: datetime | None = None) -> str:
    """The time of a check as its facts record it (`checked_at`; default: now)."""
    return (checked_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_data(text: str, checked_at: datetime | None = None) -> dict | None:
    """The JSON object of the check container's output (its last marker line), stamped with
    the time of the check; None when there is none."""
    for line in reversed(text.splitlines()):
        if line.startswith(CHECK_MARKER):
            try:
                data = json.loads(line[len(CHECK_MARKER) :])
            except ValueError:
                return None
            if not isinstance(data, dict):
                return None
            data["checked_at"] = check_stamp(checked_at)
            return data
    return None


def expected_facts(
    previous_labels: Mapping[str, Any] | None, paths: Iterable[str], checked_at: str
) -> str | None:
    """The facts label a check now will most likely give: that of the image this build
    replaces (`previous_labels`, its labels), as checked at `checked_at` (`check_stamp`).
    None when it has none, or was checked for other paths."""
    labels = {str(k): v for k, v in (previous_labels or {}).items()}
    facts = facts_from_labels(labels)
    if facts is None or set(facts.paths) != set(paths):
        return None
    return replace(facts, checked_at=checked_at).to_label()


def parse_check_output(text: str, checked_at: datetime | None = None) -> ImageFacts | None:
    """The facts in the check container's output (its last marker line), or None."""
    data = check_data(text, checked_at)
    return facts_from_json(data) if data is not None else None


# What the check may name as the slow import's folders: under a site-packages, nothing a
# shell or a Dockerfile would read as more than one word (the image's output is untrusted).
_SLOW_IMPORT_PATH = re.compile(
    r"/(?:[A-Za-z0-9_.+-]+/)*[A-Za-z0-9_.+-]*-packages/"
    r"(?:rfc3987_syntax|rfc3987_syntax-[A-Za-z0-9_.+-]+\.dist-info)"
)


@dataclass(frozen=True)
class SlowImport:
    """Where the check found the slow import, and whether the image's USER may remove it."""

    paths: tuple[str, ...]
    # True: the image's USER is the check's uid, which could remove every folder.
    user_can_remove: bool = False


def slow_import_of(data: dict | None) -> SlowImport | None:
    """The check's finding about the slow import; None when it says nothing usable."""
    found = (data or {}).get("slow_import")
    if not isinstance(found, dict) or not isinstance(found.get("paths"), list):
        return None
    paths = found["paths"]
    if not all(
        isinstance(path, str) and _SLOW_IMPORT_PATH.fullmatch(path) and "/../" not in path
        for path in paths
    ):
        return None
    uid = found.get("uid")
    same_user = isinstance(uid, int) and found.get("user_uid") == uid
    return SlowImport(tuple(paths), user_can_remove=same_user and found.get("removable") is True)


def run_check(
    api: Any,
    image: str,
    paths: Iterable[str],
    *,
    name: str,
    uid: str = "1000",
    timeout_s: float = 120,
    user: str = "",
    remove: Callable[[str], object] | None = None,
    checked_at: datetime | None = None,
) -> dict:
    """Run the check in a throw-away container of `image` (no network, no capabilities, the
    user servers' uid); the JSON object it printed. CheckError if it cannot.

    `user` is the image's USER, so the check can say whether that user could remove the slow
    import by itself. `remove` removes the container once it has run (default: at once; the
    engine removes it in the background while its last step runs). `checked_at` is the time
    the facts record (default: when the output is read).
    """
    container = api.create_container(
        image=image,
        command=CHECK_COMMAND,
        environment={
            "GALLERY_CHECK_SCRIPT": CHECK_SCRIPT,
            "GALLERY_CHECK_PATHS": json.dumps(sorted(paths)),
            "GALLERY_CHECK_USER": user,
        },
        user=uid,
        network_disabled=True,
        name=name,
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
            status = api.wait(container["Id"], timeout=timeout_s).get("StatusCode")
        except Exception as e:  # requests' ReadTimeout and friends
            raise CheckError(f"the check did not finish in {timeout_s:g} s") from e
        output = api.logs(container["Id"], stdout=True, stderr=True).decode(errors="replace")
    finally:
        (remove or functools.partial(remove_check_container, api))(container["Id"])
    data = check_data(output, checked_at)
    if data is None or facts_from_json(data) is None:
        tail = output.strip().splitlines()[-3:]
        raise CheckError(f"the check exited with {status}: {' / '.join(tail) or 'no output'}")
    return data


def remove_check_container(api: Any, container: str) -> None:
    """Remove the check's container (gone already: nothing to do)."""
    with contextlib.suppress(NotFound):
        api.remove_container(container, force=True)
