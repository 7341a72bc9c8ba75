"""How a build's git (and repo2docker's) reach a repository: never prompting, never storing.

Credentials for private repositories live only in this process's memory and in the
environment of the git / repo2docker child processes. git gets them from the askpass
program (`git_askpass`, started through a small wrapper written per build into a private
temporary directory), which answers only prompts about the repository's own origin; no
credential helper may store them. As a second line of defence, `Scrubber` masks the
password (and its encoded forms) in every log line.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, quote_plus

from gallery_builder import git_askpass
from gallery_builder.build_request import Credentials

MASK = "***"

_URL_ORIGIN = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)")
# Inherited variables a build's child processes have no business seeing.
_SECRET_ENV = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|^JUPYTERHUB_API", re.I)
_OWN_ENV = re.compile(
    r"^(GIT_ASKPASS|SSH_ASKPASS|GIT_CONFIG_(COUNT|KEY_\d+|VALUE_\d+)|GALLERY_GIT_)"
)


def repository_origin(repository: str) -> str | None:
    """The "scheme://host[:port]" of an http(s) repository URL (what git prompts name), or None."""
    match = _URL_ORIGIN.match(repository.strip())
    if not match or match["scheme"].lower() not in ("http", "https"):
        return None
    host = match["authority"].rpartition("@")[2]
    return f"{match['scheme'].lower()}://{host}" if host else None


def write_private(path: Path, text: str, *, mode: int) -> None:
    """Write `text` to `path`, which never exists with wider permissions than `mode`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, mode)  # O_CREAT's mode is filtered by the umask


def write_askpass(directory: Path | str) -> Path:
    """Write the askpass wrapper into `directory` (which should be private); return its path.

    git runs GIT_ASKPASS directly (no shell, no arguments of ours), so the wrapper runs the
    `git_askpass` module with this interpreter, isolated (-I -S) from PYTHON* settings.
    """
    wrapper = Path(directory) / "askpass"
    program = shlex.quote(str(Path(git_askpass.__file__).resolve()))
    script = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -I -S {program} "$@"\n'
    write_private(wrapper, script, mode=0o700)
    return wrapper


def inherited_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) without inherited secrets or the
    builder's own settings: what a child process of a build may start from."""
    return {
        key: value
        for key, value in (os.environ if base is None else base).items()
        if not _SECRET_ENV.search(key) and not _OWN_ENV.match(key)
    }


def git_environment(
    repository: str,
    credentials: Credentials | None,
    askpass: Path | str,
    base: Mapping[str, str] | None = None,
    *,
    config: Sequence[tuple[str, str]] = (),
    ssh_config: Path | str | None = None,
) -> dict[str, str]:
    """Environment for git (and repo2docker, which runs git) that can never prompt or store.

    Starts from `base` (default: this process's environment) without inherited secrets, and
    hands the credentials, if any, to the askpass program only for the repository's origin.
    `config` adds git config entries (e.g. `fetch_guard.pinned_git_config`); `ssh_config`
    is the ssh config file ssh must use (pinned ssh hosts).
    """
    env = inherited_environment(base)
    # An empty credential.helper clears any configured helper, so nothing stores them.
    entries = [("credential.helper", ""), *config]
    env.update(
        GIT_ASKPASS=str(askpass), GIT_TERMINAL_PROMPT="0", GIT_CONFIG_COUNT=str(len(entries))
    )
    for number, (key, value) in enumerate(entries):
        env[f"GIT_CONFIG_KEY_{number}"] = key
        env[f"GIT_CONFIG_VALUE_{number}"] = value
    # ssh must fail rather than wait for a passphrase or host-key answer nobody can give.
    if ssh_config is not None:
        env["GIT_SSH_COMMAND"] = f"ssh -F {shlex.quote(str(ssh_config))} -o BatchMode=yes"
    else:
        env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    origin = repository_origin(repository)
    if credentials is not None and origin is not None:
        env.update(
            {
                git_askpass.ORIGIN_ENV: origin,
                git_askpass.USERNAME_ENV: credentials.username,
                git_askpass.PASSWORD_ENV: credentials.password,
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
