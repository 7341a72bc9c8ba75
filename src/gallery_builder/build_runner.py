"""Run one build: resolve the ref with git, then turn the commit into an image with repo2docker.

Credentials for private repositories live only in this process's memory and in the
environment of the git / repo2docker child processes. git gets them from a small askpass
program (written per build into a private temporary directory) that answers only prompts
about the repository's own host; no credential helper may store them. As a second line of
defence, every log line has the password (and its encoded forms) masked before it is emitted.

repo2docker builds under a temporary tag ("<name>:gallery-build-<id>"); only a successful
build is tagged with the environment's real name. That keeps a failed or cancelled build from
ever replacing a working image, and stops repo2docker from "reusing" an older image that
happens to carry the same name.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import logging
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

from docker.errors import APIError, DockerException
from requests.exceptions import RequestException

from gallery_builder.build_request import BuildRequest, Credentials, image_name
from gallery_builder.build_store import BuildState
from gallery_builder.docker_api_engine import ENTRY_POINT_NAME, describe_docker_error
from gallery_builder.docker_images import DockerImages, build_tag
from gallery_common.image_labels import make_labels, strip_credentials

log = logging.getLogger(__name__)

DEFAULT_ENGINE = ENTRY_POINT_NAME
# repo2docker refuses to build as root unless told which user the image should run as.
REPO2DOCKER_USER_ID = "1000"
REPO2DOCKER_USER_NAME = "jovyan"
DEFAULT_GIT_TIMEOUT_S = 60.0
DEFAULT_KILL_GRACE_S = 5.0
MAX_LOG_LINE = 16 * 1024
MASK = "***"

# Environment of the askpass program (see ASKPASS_CODE).
ORIGIN_ENV = "GALLERY_GIT_ORIGIN"
USERNAME_ENV = "GALLERY_GIT_USERNAME"
PASSWORD_ENV = "GALLERY_GIT_PASSWORD"  # noqa: S105 - the variable's name, not a password

_FULL_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}", re.IGNORECASE)
_SHORT_COMMIT = re.compile(r"[0-9a-f]{4,39}", re.IGNORECASE)
_URL_ORIGIN = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)")
# Inherited variables a build's child processes have no business seeing.
_SECRET_ENV = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|^JUPYTERHUB_API", re.I)
_OWN_ENV = re.compile(
    r"^(GIT_ASKPASS|SSH_ASKPASS|GIT_CONFIG_(COUNT|KEY_\d+|VALUE_\d+)|GALLERY_GIT_)"
)
_ERROR_LINE = re.compile(r"error|fatal|failed|exception", re.IGNORECASE)

# git runs GIT_ASKPASS with the prompt as its only argument and reads the answer from stdout.
# Prompts look like "Username for 'https://HOST': " and "Password for 'https://USER@HOST': ".
ASKPASS_CODE = '''\
"""git askpass for one gallery build: answers only about the repository's own origin."""
import os
import re
import sys

PROMPT = re.compile(r"(Username|Password) for '(.*)': ?", re.DOTALL)


def answer(prompt, origin, username, password):
    match = PROMPT.fullmatch(prompt)
    scheme, sep, host = origin.partition("://")
    if not (match and sep and username and password):
        return None
    kind, url = match.groups()
    asked_scheme, sep, rest = url.partition("://")
    if not sep or asked_scheme.lower() != scheme.lower():
        return None
    if kind == "Username":
        return username if rest.lower() == host.lower() else None
    asked_user, at, asked_host = rest.rpartition("@")
    if at and asked_user == username and asked_host.lower() == host.lower():
        return password
    return None


def main():
    reply = answer(
        sys.argv[1] if len(sys.argv) > 1 else "",
        os.environ.get("GALLERY_GIT_ORIGIN", ""),
        os.environ.get("GALLERY_GIT_USERNAME", ""),
        os.environ.get("GALLERY_GIT_PASSWORD", ""),
    )
    if reply is None:
        return 1  # git then gives up (GIT_TERMINAL_PROMPT=0) instead of trying something else
    sys.stdout.write(reply + "\\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


class BuildError(Exception):
    """A build cannot go on; the message is for the admin and never contains secrets."""


@dataclass(frozen=True)
class ResolvedRef:
    """What a ref resolved to: the commit, and the ref's name (the default branch for None)."""

    commit: str
    ref_name: str | None


@dataclass(frozen=True)
class RunOutcome:
    """How a build ended. `image` is the name the runner chose (None if it never got that far)."""

    state: BuildState
    image: str | None = None
    reason: str | None = None
    resolved_commit: str | None = None
    image_size: int | None = None
    reused: bool = False


# --- pure helpers ---------------------------------------------------------------------------


def repo2docker_command(
    *,
    repository: str,
    commit: str,
    image: str,
    config_path: str,
    engine: str = DEFAULT_ENGINE,
    executable: str = "repo2docker",
) -> list[str]:
    """The repo2docker argv that builds `repository` at `commit` into `image` (without running).

    `executable` replaces the program name (e.g. the repo2docker next to this interpreter).
    """
    return [
        executable,
        "--config",
        config_path,
        "--engine",
        engine,
        "--no-run",
        "--user-id",
        REPO2DOCKER_USER_ID,
        "--user-name",
        REPO2DOCKER_USER_NAME,
        "--image-name",
        image,
        "--ref",
        commit,
        repository,
    ]


def repo2docker_config_text(labels: Mapping[str, str]) -> str:
    """The text of a traitlets config file giving repo2docker the labels and content providers.

    Values are written with repr(), so no label can inject code into the file.
    """
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("labels must map strings to strings")
    literal = repr(dict(sorted(labels.items())))
    return (
        "# Written by the gallery builder for one build, and removed after it.\n"
        "from repo2docker.contentproviders import Git, Local\n\n"
        "c = get_config()  # noqa: F821\n"
        f"c.DockerAPIEngine.extra_labels = {literal}\n"
        "# Only git (and local paths): the data-repository providers go online for every URL.\n"
        "c.Repo2Docker.content_providers = [Local, Git]\n"
    )


def write_repo2docker_config(path: Path | str, labels: Mapping[str, str]) -> Path:
    """Write the repo2docker config file (see `repo2docker_config_text`), readable by us only."""
    path = Path(path)
    _write_private(path, repo2docker_config_text(labels), mode=0o600)
    return path


def repository_origin(repository: str) -> str | None:
    """The "scheme://host[:port]" of an http(s) repository URL (what git prompts name), or None."""
    match = _URL_ORIGIN.match(repository.strip())
    if not match or match["scheme"].lower() not in ("http", "https"):
        return None
    host = match["authority"].rpartition("@")[2]
    return f"{match['scheme'].lower()}://{host}" if host else None


def write_askpass(directory: Path | str) -> Path:
    """Write the askpass program into `directory` (which should be private); return its path.

    A shell wrapper runs the Python code with this interpreter, isolated from PYTHON* settings.
    """
    directory = Path(directory)
    code = directory / "askpass.py"
    _write_private(code, ASKPASS_CODE, mode=0o600)
    wrapper = directory / "askpass"
    script = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -I -S {shlex.quote(str(code))} "$@"\n'
    _write_private(wrapper, script, mode=0o700)
    return wrapper


def git_environment(
    repository: str,
    credentials: Credentials | None,
    askpass: Path | str,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for git (and repo2docker, which runs git) that can never prompt or store.

    Starts from `base` (default: this process's environment) without inherited secrets, and
    hands the credentials, if any, to the askpass program only for the repository's origin.
    """
    env = {
        key: value
        for key, value in (os.environ if base is None else base).items()
        if not _SECRET_ENV.search(key) and not _OWN_ENV.match(key)
    }
    env.update(
        GIT_ASKPASS=str(askpass),
        GIT_TERMINAL_PROMPT="0",
        # An empty credential.helper clears any configured helper, so nothing stores them.
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0="credential.helper",
        GIT_CONFIG_VALUE_0="",
    )
    # ssh must fail rather than wait for a passphrase or host-key answer nobody can give.
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    origin = repository_origin(repository)
    if credentials is not None and origin is not None:
        env.update(
            {
                ORIGIN_ENV: origin,
                USERNAME_ENV: credentials.username,
                PASSWORD_ENV: credentials.password,
            }
        )
    return env


class Scrubber:
    """Masks secrets (and their URL- and basic-auth-encoded forms) in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        """Mask each non-empty string of `secrets`; longer ones first."""
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    @classmethod
    def for_credentials(cls, credentials: Credentials | None) -> Scrubber:
        """A scrubber for the password of `credentials` (or one that changes nothing)."""
        if credentials is None or not credentials.password:
            return cls()
        password = credentials.password
        basic = f"{credentials.username}:{password}".encode()
        return cls(
            [
                password,
                quote(password, safe=""),
                quote(password),
                quote_plus(password),
                base64.b64encode(basic).decode("ascii"),
            ]
        )

    @property
    def longest(self) -> int:
        """Length of the longest secret (0 when there are none)."""
        return len(self._secrets[0]) if self._secrets else 0

    def __call__(self, text: str) -> str:
        """`text` with every secret replaced by "***"."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


# --- processes ------------------------------------------------------------------------------


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def terminate_process_group(
    process: asyncio.subprocess.Process, grace_s: float = DEFAULT_KILL_GRACE_S
) -> None:
    """SIGTERM the process's whole group (it must lead its own session), SIGKILL after `grace_s`.

    The final SIGKILL also reaches children that outlived the leader. Safe to call again.
    """
    _signal_group(process.pid, signal.SIGTERM)
    try:
        async with asyncio.timeout(grace_s):
            await process.wait()
    except TimeoutError:
        pass
    finally:
        # runs on a second cancellation too, so nothing survives an impatient caller
        _signal_group(process.pid, signal.SIGKILL)


async def read_lines(
    stream: asyncio.StreamReader, scrub: Scrubber | None = None, max_line: int = MAX_LOG_LINE
) -> AsyncIterator[str]:
    """Decoded lines of `stream`, each ending in "\\n", scrubbed; long lines are split.

    Scrubbing happens before a long line is split, and the split never cuts through the end
    of the buffer where a secret could still be arriving.
    """
    scrub = scrub or Scrubber()
    keep = max(scrub.longest - 1, 0)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    buffer = ""
    while chunk := await stream.read(65536):
        buffer += decoder.decode(chunk)
        *lines, buffer = buffer.split("\n")
        for line in lines:
            for piece in _split_long(scrub(line.rstrip("\r")), max_line):
                yield piece + "\n"
        if len(buffer) > max_line + keep:
            buffer = scrub(buffer)
            cut = max(len(buffer) - keep, 1)
            for piece in _split_long(buffer[:cut], max_line):
                yield piece + "\n"
            buffer = buffer[cut:]
    buffer += decoder.decode(b"", final=True)
    if buffer:
        for piece in _split_long(scrub(buffer.rstrip("\r")), max_line):
            yield piece + "\n"


def _split_long(line: str, max_line: int) -> list[str]:
    return [line[i : i + max_line] for i in range(0, len(line), max_line)] or [""]


async def _spawn(
    argv: list[str], *, env: Mapping[str, str], cwd: Path, stderr: int
) -> asyncio.subprocess.Process:
    """Start `argv` in a new session; BuildError if the program cannot be started at all."""
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,  # its own process group: one signal reaches all it starts
        )
    except OSError as e:
        raise BuildError(f"cannot start {argv[0]}: {e.strerror or e}") from None


async def _run_git(
    args: list[str], *, env: Mapping[str, str], cwd: Path, timeout: float
) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `git args...`; BuildError when it takes too long."""
    process = await _spawn(
        ["git", *args],
        env=env,
        cwd=cwd,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    except TimeoutError:
        raise BuildError(f"git {args[0]} timed out after {timeout:g} s") from None
    finally:
        if process.returncode is None:
            await terminate_process_group(process, grace_s=1.0)
    assert process.returncode is not None
    return process.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


# --- resolving refs -------------------------------------------------------------------------

_GIT_FAILURES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        (
            "terminal prompts disabled",
            "authentication failed",
            "could not read username",
            "could not read password",
            "access denied",
            "error: 401",
            "error: 403",
        ),
        "authentication failed: the repository is private or does not exist, "
        "or the credentials are wrong",
    ),
    (
        ("not found", "error: 404", "does not appear to be a git repository"),
        "the repository was not found",
    ),
    (("could not resolve host",), "the repository's host name cannot be resolved"),
    (
        ("connection refused", "connection timed out", "failed to connect", "network is"),
        "cannot connect to the repository's host",
    ),
    (("certificate", "ssl"), "the host's TLS certificate is not trusted"),
    (
        ("host key verification failed", "permission denied (publickey"),
        "ssh access was refused (host key or key not accepted)",
    ),
)


def describe_git_failure(stderr: str, repository: str, scrub: Scrubber) -> str:
    """A one-line, secret-free reason for a failed `git ls-remote`."""
    text = scrub(stderr)
    lowered = text.lower()
    summary = next(
        (message for needles, message in _GIT_FAILURES if any(n in lowered for n in needles)),
        "git could not read the repository",
    )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = next((line for line in lines if line.lower().startswith("fatal:")), "")
    detail = detail or (lines[-1] if lines else "")
    where = strip_credentials(repository)
    suffix = f" (git said: {detail[:300]})" if detail else ""
    return f"cannot read {where}: {summary}{suffix}"


def parse_ls_remote(output: str) -> tuple[dict[str, str], dict[str, str]]:
    """({ref name: commit}, {symbolic ref: target}) from `git ls-remote [--symref]` output."""
    refs: dict[str, str] = {}
    symrefs: dict[str, str] = {}
    for line in output.splitlines():
        left, tab, name = line.partition("\t")
        if not tab:
            continue
        if left.startswith("ref: "):
            symrefs[name] = left[len("ref: ") :]
        elif _FULL_COMMIT.fullmatch(left):
            refs[name] = left.lower()
    return refs, symrefs


def pick_commit(refs: Mapping[str, str], ref: str) -> str | None:
    """The commit `ref` names among ls-remote's `refs`, in git's order; peeled tags first."""
    for name in (ref, f"refs/{ref}", f"refs/tags/{ref}", f"refs/heads/{ref}"):
        # an annotated tag points at a tag object; "^{}" is the commit it tags
        commit = refs.get(f"{name}^{{}}") or refs.get(name)
        if commit:
            return commit
    return None


def default_branch(refs: Mapping[str, str], symrefs: Mapping[str, str]) -> ResolvedRef:
    """The commit and branch name of the remote's HEAD, from `ls-remote --symref ... HEAD`."""
    commit = refs.get("HEAD")
    if commit is None:
        raise BuildError("the repository has no commits on its default branch (is it empty?)")
    target = symrefs.get("HEAD", "")
    branch = target.removeprefix("refs/heads/") if target.startswith("refs/heads/") else None
    return ResolvedRef(commit=commit, ref_name=branch)


async def resolve_in(
    directory: Path,
    repository: str,
    ref: str | None,
    credentials: Credentials | None,
    *,
    timeout: float,
    askpass: Path | None = None,
    scrub: Scrubber | None = None,
    base_env: Mapping[str, str] | None = None,
) -> ResolvedRef:
    """Like `resolve`, but working in `directory` (private, existing) with its askpass there.

    `base_env` replaces os.environ as the starting environment of git.
    """
    scrub = scrub or Scrubber.for_credentials(credentials)
    if ref is not None and _FULL_COMMIT.fullmatch(ref):
        return ResolvedRef(commit=ref.lower(), ref_name=ref)  # nothing to look up
    askpass = askpass or write_askpass(directory)
    env = git_environment(repository, credentials, askpass, base_env)
    patterns = ["HEAD"] if ref is None else [ref, f"{ref}^{{}}"]
    args = ["ls-remote", *(["--symref"] if ref is None else []), "--", repository, *patterns]
    status, out, err = await _run_git(args, env=env, cwd=directory, timeout=timeout)
    if status != 0:
        raise BuildError(describe_git_failure(err, repository, scrub))
    refs, symrefs = parse_ls_remote(out)
    if ref is None:
        return default_branch(refs, symrefs)
    commit = pick_commit(refs, ref)
    if commit is not None:
        return ResolvedRef(commit=commit, ref_name=ref)
    if _SHORT_COMMIT.fullmatch(ref):
        raise BuildError(
            f"ref {ref!r} is not a branch or tag, and a shortened commit id cannot be looked "
            "up remotely: give a branch, a tag or the full 40-character commit SHA"
        )
    raise BuildError(f"no branch or tag named {ref!r} in {strip_credentials(repository)}")


async def resolve(
    repository: str, ref: str | None, credentials: Credentials | None, *, timeout: float
) -> ResolvedRef:
    """Resolve `ref` (None: the remote's default branch) to a commit with `git ls-remote`.

    A full commit id is passed through. Raises BuildError with a secret-free message.
    """
    with tempfile.TemporaryDirectory(prefix="gallery-git-") as directory:
        return await resolve_in(Path(directory), repository, ref, credentials, timeout=timeout)


async def resolve_ref(
    repository: str, ref: str | None, credentials: Credentials | None, *, timeout: float
) -> str:
    """The full commit id `ref` names in `repository` (see `resolve`); BuildError otherwise."""
    return (await resolve(repository, ref, credentials, timeout=timeout)).commit


# --- the runner -----------------------------------------------------------------------------


def _default_repo2docker() -> str:
    # The repo2docker installed next to this interpreter (a venv) wins over PATH.
    return shutil.which("repo2docker", path=str(Path(sys.executable).parent)) or "repo2docker"


def _write_private(path: Path, text: str, *, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, mode)  # O_CREAT's mode is filtered by the umask


class _Emitter:
    """Scrubs and newline-terminates every line before handing it to the caller's `emit`."""

    def __init__(self, emit: Callable[[str], None], scrub: Scrubber) -> None:
        self._emit = emit
        self.scrub = scrub

    def __call__(self, line: str) -> None:
        line = self.scrub(line)
        self._emit(line if line.endswith("\n") else line + "\n")


class BuildRunner:
    """Builds one BuildRequest at a time per `run` call; many runs may overlap."""

    def __init__(
        self,
        *,
        images: DockerImages | None = None,
        repo2docker: str | None = None,
        engine: str = DEFAULT_ENGINE,
        git_timeout_s: float = DEFAULT_GIT_TIMEOUT_S,
        kill_grace_s: float = DEFAULT_KILL_GRACE_S,
        builder_version: str | None = None,
        work_root: Path | str | None = None,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        """Configure the runner.

        `repo2docker` is the program to run (default: the one next to this interpreter, else
        PATH); `work_root` holds each build's private temporary directory (default: TMPDIR);
        `base_env` replaces os.environ as the child processes' starting environment.
        """
        self.images = images or DockerImages()
        self.repo2docker = repo2docker or _default_repo2docker()
        self.engine = engine
        self.git_timeout_s = git_timeout_s
        self.kill_grace_s = kill_grace_s
        self.builder_version = builder_version
        self.work_root = Path(work_root) if work_root is not None else None
        self.base_env = base_env

    async def run(
        self, build_id: str, request: BuildRequest, emit: Callable[[str], None]
    ) -> RunOutcome:
        """Build `request`, emitting log lines (scrubbed, each ending in a newline).

        Returns BUILT (possibly `reused`) or FAILED with a reason; does not raise for
        build problems. Cancelling the coroutine (e.g. a caller's timeout) kills
        repo2docker's whole process group and removes the temporary files; the image
        name is applied only on success, so nothing half-built is left tagged.
        """
        say = _Emitter(emit, Scrubber.for_credentials(request.credentials))
        ref_text = request.ref or "the default branch"
        say(
            f"Building {request.name} from {strip_credentials(request.repository)} "
            f"at {ref_text} (build {build_id})"
        )
        workdir = Path(tempfile.mkdtemp(prefix="gallery-build-", dir=self.work_root))
        state = _BuildState(build_id=build_id, request=request, workdir=workdir, say=say)
        try:
            return await self._build(state)
        except BuildError as e:
            return state.failed(str(e))
        except (DockerException, RequestException) as e:
            return state.failed(f"Docker: {describe_docker_error(e)}")
        finally:
            await self._cleanup(state)

    async def _build(self, state: _BuildState) -> RunOutcome:
        request, say = state.request, state.say
        resolved = await resolve_in(
            state.workdir,
            request.repository,
            request.ref,
            request.credentials,
            timeout=self.git_timeout_s,
            askpass=state.askpass,
            scrub=say.scrub,
            base_env=self.base_env,
        )
        state.commit = resolved.commit
        state.image = image_name(request.name, request.ref or resolved.ref_name or "latest")
        asked = request.ref or f"the default branch ({resolved.ref_name or 'HEAD'})"
        say(f"{asked} is commit {resolved.commit}")
        if await self._reusable(state.image, request, resolved.commit):
            size = await asyncio.to_thread(self.images.size, state.image)
            say(f"commit {resolved.commit[:7]} is already built as {state.image}; reusing it")
            return state.outcome(BuildState.BUILT, image_size=size, reused=True)
        status, last_error = await self._repo2docker(state, resolved)
        if status != 0:
            detail = f": {last_error}" if last_error else ""
            return state.failed(f"repo2docker exited with status {status}{detail}")
        size, notes = await asyncio.to_thread(
            self._publish, state.temp_image, state.image, resolved.commit
        )
        for note in notes:
            say(note)
        say(f"Built {state.image} ({_human_size(size)})")
        return state.outcome(BuildState.BUILT, image_size=size)

    async def _reusable(self, image: str, request: BuildRequest, commit: str) -> bool:
        """True when `image` exists, built from this commit with the same limits."""
        labels = await asyncio.to_thread(self.images.labels, image)
        return (
            labels is not None
            and labels.commit == commit
            and labels.repository == strip_credentials(request.repository)
            and labels.memory_limit_gb == request.memory_gb
            and labels.cpu_limit == request.cpu
        )

    async def _repo2docker(self, state: _BuildState, resolved: ResolvedRef) -> tuple[int, str]:
        """Run repo2docker into the temporary tag; (exit status, last error-looking line)."""
        request = state.request
        labels = make_labels(
            repository=request.repository,
            ref=request.ref or resolved.ref_name or "HEAD",
            commit=resolved.commit,
            display_name=request.name,
            memory_limit_gb=request.memory_gb,
            cpu_limit=request.cpu,
            builder_version=self.builder_version,
        )
        config = write_repo2docker_config(state.workdir / "repo2docker_config.py", labels)
        state.temp_image = build_tag(state.image or "", state.build_id)
        argv = repo2docker_command(
            repository=request.repository,
            commit=resolved.commit,
            image=state.temp_image,
            config_path=str(config),
            engine=self.engine,
            executable=self.repo2docker,
        )
        env = git_environment(request.repository, request.credentials, state.askpass, self.base_env)
        tmp = state.workdir / "tmp"
        tmp.mkdir(mode=0o700)
        # repo2docker's checkout and temp files then go away with the work directory
        env.update(TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
        state.say(f"Running repo2docker for commit {resolved.commit[:7]}")
        return await self._stream(argv, env, state)

    async def _stream(
        self, argv: list[str], env: dict[str, str], state: _BuildState
    ) -> tuple[int, str]:
        process = await _spawn(argv, env=env, cwd=state.workdir, stderr=asyncio.subprocess.STDOUT)
        state.process = process
        recent: deque[str] = deque(maxlen=50)
        assert process.stdout is not None
        async for line in read_lines(process.stdout, state.say.scrub):
            state.say(line)
            recent.append(line.strip())
        status = await process.wait()
        errors = [line for line in recent if line and _ERROR_LINE.search(line)]
        return status, (errors[-1][:300] if errors else "")

    def _publish(self, temp_image: str, image: str, commit: str) -> tuple[int | None, list[str]]:
        """Give the finished build its real name; (size, log notes). Runs in a thread."""
        labels = self.images.labels(temp_image)
        if labels is None or labels.commit != commit:
            raise BuildError(f"repo2docker succeeded but {temp_image} is missing or unlabelled")
        notes: list[str] = []
        previous = self.images.image_id(image)
        self.images.tag(temp_image, image)
        self.images.remove(temp_image)
        if previous is not None and previous != self.images.image_id(image):
            notes.append(self._drop_previous(previous, image))
        return self.images.size(image), notes

    def _drop_previous(self, previous: str, image: str) -> str:
        """Remove the image `image` used to name, unless something still uses or names it."""
        try:
            # prune: its untagged parents are that build's own intermediate layers
            self.images.remove(previous, prune=True)
        except APIError as e:
            # 409: a (possibly stopped) container still uses it, or it has other tags
            return f"Kept the previous image of {image} ({describe_docker_error(e)})"
        return f"Removed the previous image of {image}"

    async def _cleanup(self, state: _BuildState) -> None:
        """Kill what is still running, drop an unpublished temporary tag, delete temp files."""
        try:
            if state.process is not None and state.process.returncode is None:
                # kill first: emitting may be what failed, and repo2docker must not outlive us
                await terminate_process_group(state.process, self.kill_grace_s)
                with contextlib.suppress(Exception):
                    state.say("Stopped repo2docker")
            if state.temp_image is not None:
                # normally already untagged; after a failed publish it takes its layers along
                await asyncio.to_thread(self._remove_quietly, state.temp_image)
        finally:
            shutil.rmtree(state.workdir, ignore_errors=True)

    def _remove_quietly(self, image: str) -> None:
        try:
            self.images.remove(image, prune=True)
        except Exception as e:  # cleanup must not turn a result into a crash
            log.warning("could not remove temporary image %s: %s", image, describe_docker_error(e))


def _human_size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    return f"{size / 1e6:.1f} MB"


@dataclass
class _BuildState:
    """What one `run` has learned and started so far, for its outcome and cleanup."""

    build_id: str
    request: BuildRequest
    workdir: Path
    say: _Emitter
    commit: str | None = None
    image: str | None = None
    temp_image: str | None = None
    process: asyncio.subprocess.Process | None = None
    _askpass: Path | None = None

    @property
    def askpass(self) -> Path:
        """The askpass program in this build's private directory (written on first use)."""
        if self._askpass is None:
            self._askpass = write_askpass(self.workdir)
        return self._askpass

    def outcome(self, state: BuildState, **fields: object) -> RunOutcome:
        """A RunOutcome carrying what is known so far."""
        return RunOutcome(
            state=state,
            image=self.image,
            resolved_commit=self.commit,
            **fields,  # type: ignore[arg-type]
        )

    def failed(self, reason: str) -> RunOutcome:
        """Log `reason` and return a FAILED outcome with it (scrubbed)."""
        reason = self.say.scrub(reason)
        self.say(f"Build failed: {reason}")
        return self.outcome(BuildState.FAILED, reason=reason)
