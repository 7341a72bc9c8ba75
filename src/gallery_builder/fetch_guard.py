"""What git may connect to while it fetches a build: the guard against SSRF after validation.

A URL is checked when an admin submits it, and again right before git runs (the build may
have waited in the queue). The second check's addresses are the ones git connects to: git
gets them pinned (`http.curloptResolve` for http(s), an `insteadOf` rewrite to the address
for git://, an ssh config with `HostName` for ssh), never follows an HTTP redirect, and may
use no other transport. Submodule URLs in `.gitmodules` pass the same check before git
fetches them. Only a local repository of build-image (`file://`) skips all this.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import re
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from gallery_builder.repository_policy import (
    URL_SYNTAX,
    CheckedRepository,
    RepositoryRefused,
    Resolver,
    check_repository,
)

LOCAL_SCHEME = "file://"
# git's own order of protocol settings: `protocol.allow=never`, then one `always` per transport.
NETWORK_PROTOCOLS = ("https", "http", "git", "ssh")
_REDIRECT = re.compile(r"returned error: (30[12378])")
MAX_SUBMODULE_DEPTH = 3


def is_local(url: str) -> bool:
    """A build-image local repository, file:// or a path (never accepted by the web API)."""
    return url.startswith((LOCAL_SCHEME, "/"))


@dataclass(frozen=True)
class FetchGuard:
    """The repository policy as it applies at fetch time (see the module docstring).

    `host_addresses` is called for each check: the host's bridge gateways change as
    networks come and go.
    """

    allow_private: bool = True
    blocked_hosts: frozenset[str] = frozenset()
    host_addresses: Callable[[], frozenset[str]] = field(default=lambda: frozenset())
    resolve: Resolver = socket.getaddrinfo

    def check(self, url: str) -> CheckedRepository:
        """The URL with the addresses git must use; RepositoryRefused if it may not fetch."""
        return check_repository(
            url,
            allow_private=self.allow_private,
            blocked_hosts=self.blocked_hosts,
            host_addresses=self.host_addresses(),
            resolve=self.resolve,
        )


def pinned_git_config(
    repositories: Iterable[CheckedRepository], *, allow_local: bool = False
) -> list[tuple[str, str]]:
    """git config entries (key, value) that hold git to the checked addresses.

    No redirects, only the network transports (and file:// for a local build), and each
    host pinned to the addresses it was checked with.
    """
    config = [("http.followRedirects", "false"), ("protocol.allow", "never")]
    protocols = (*NETWORK_PROTOCOLS, "file") if allow_local else NETWORK_PROTOCOLS
    config += [(f"protocol.{name}.allow", "always") for name in protocols]
    seen: set[tuple[str, str, int]] = set()
    for repo in repositories:
        key = (repo.scheme, repo.host, repo.port)
        if key in seen or _is_literal(repo.host) or not repo.addresses:
            continue
        seen.add(key)
        if repo.scheme in ("http", "https"):
            addresses = ",".join(_bracketed(a) for a in repo.addresses)
            config.append(("http.curloptResolve", f"{repo.host}:{repo.port}:{addresses}"))
        elif repo.scheme == "git":
            target = f"git://{_bracketed(repo.addresses[0])}:{repo.port}/"
            for port in ("", f":{repo.port}"):
                config.append((f"url.{target}.insteadOf", f"git://{repo.host}{port}/"))
    return config


def ssh_config_text(repositories: Iterable[CheckedRepository]) -> str:
    """An ssh config pinning each ssh host to its checked address (host keys by name)."""
    lines = ["# Written by the gallery builder for one build, and removed after it."]
    seen: set[str] = set()
    for repo in repositories:
        if repo.scheme != "ssh" or repo.host in seen or _is_literal(repo.host):
            continue
        seen.add(repo.host)
        lines += [
            f"Host {repo.host}",
            f"    HostName {repo.addresses[0]}",
            f"    HostKeyAlias {repo.host}",
        ]
    lines += ["Host *", "    BatchMode yes", ""]
    return "\n".join(lines)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address


class Pins:
    """The addresses one build's git is held to: the repository's, then its submodules'."""

    def __init__(
        self,
        directory: Path,
        repositories: Iterable[CheckedRepository] = (),
        *,
        local: bool = False,
    ) -> None:
        """Pins written (the ssh config) into `directory`, private to the build."""
        self.directory = directory
        self.local = local
        self.repositories: list[CheckedRepository] = list(repositories)

    @classmethod
    def for_repository(cls, directory: Path, url: str, guard: FetchGuard) -> Pins:
        """Check `url` (RepositoryRefused) and pin it; a local repository needs no pin."""
        if is_local(url):
            return cls(directory, local=True)
        return cls(directory, [guard.check(url)])

    def add(self, repositories: Iterable[CheckedRepository]) -> None:
        """Pin more hosts (checked submodules)."""
        self.repositories += list(repositories)

    @property
    def primary(self) -> CheckedRepository | None:
        """The repository's own pin (None for a local repository)."""
        return self.repositories[0] if self.repositories else None

    def config(self) -> list[tuple[str, str]]:
        """git config entries for every pinned host (see `pinned_git_config`)."""
        return pinned_git_config(self.repositories, allow_local=self.local)

    def ssh_config(self) -> Path:
        """The ssh config file for every pinned ssh host (written anew)."""
        path = self.directory / "ssh_config"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(ssh_config_text(self.repositories))
        return path


# --- submodules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Submodule:
    name: str
    path: str
    url: str


def parse_gitmodules(config_list: str) -> list[Submodule]:
    """Submodules from `git config -f .gitmodules --list` output (name, path, raw url)."""
    fields: dict[str, dict[str, str]] = {}
    for line in config_list.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not key.startswith("submodule."):
            continue
        name, dot, item = key[len("submodule.") :].rpartition(".")
        if dot and item in ("path", "url"):
            fields.setdefault(name, {})[item] = value
    return [
        Submodule(name, entry.get("path", name), entry["url"])
        for name, entry in fields.items()
        if "url" in entry
    ]


def submodule_url(url: str, superproject: str) -> str:
    """A submodule's URL as git resolves it: "./x" and "../x" are relative to `superproject`."""
    if not url.startswith(("./", "../")):
        return url
    base = superproject.rstrip("/")
    match = URL_SYNTAX.fullmatch(base)
    # Never climb above the host: "scheme://authority" or scp-like "user@host:".
    if match:
        floor = len(match["scheme"]) + 3 + len(match["authority"])
    else:
        floor = base.index(":") + 1 if ":" in base else 0
    rest = url
    while rest.startswith(("./", "../")):
        if rest.startswith("./"):
            rest = rest[2:]
            continue
        rest = rest[3:]
        cut = max(base.rfind("/"), -1 if match else base.rfind(":"))
        base = base[:cut] if cut >= floor else base[:floor]
    return f"{base}{'' if base.endswith(':') else '/'}{rest}"


def check_submodules(
    submodules: Sequence[Submodule], superproject: str, guard: FetchGuard
) -> list[CheckedRepository]:
    """Each submodule's URL, resolved and checked; RepositoryRefused naming the submodule."""
    checked = []
    for submodule in submodules:
        url = submodule_url(submodule.url, superproject)
        if is_local(superproject) and is_local(url):
            continue  # a local build's own local submodules
        try:
            checked.append(guard.check(url))
        except RepositoryRefused as e:
            raise RepositoryRefused(f"submodule {submodule.name!r} ({url}): {e}") from None
    return checked


# --- redirects ------------------------------------------------------------------------------


def redirect_status(git_stderr: str) -> str | None:
    """The HTTP status (e.g. "302") when git stopped at a redirect it may not follow."""
    match = _REDIRECT.search(git_stderr)
    return match[1] if match else None


def redirect_location(repo: CheckedRepository, timeout: float = 10) -> str | None:
    """Where the repository's server redirects git's first request (None if it does not say).

    Asks the pinned address, as git did, without credentials and without following.
    """
    if repo.scheme not in ("http", "https") or not repo.addresses:
        return None
    parts = urlsplit(repo.url)
    path = parts.path.rstrip("/") + "/info/refs?service=git-upload-pack"
    connection: http.client.HTTPConnection
    if repo.scheme == "https":
        connection = _PinnedHTTPS(
            repo.host, repo.port, repo.addresses[0], timeout, ssl.create_default_context()
        )
    else:
        connection = _PinnedHTTP(repo.host, repo.port, repo.addresses[0], timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "git/2 (gallery builder)"})
        response = connection.getresponse()
        return response.getheader("Location")
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(
        self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._context = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
