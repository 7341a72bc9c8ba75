"""The fetch guard: git held to the checked addresses, no redirects, submodules checked.

Pure functions first; then real git against a local redirecting HTTP server (loopback)
and a local repository whose submodule points at the hub.
"""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from gallery_builder.build_request import ValidationError, validate_repository_url
from gallery_builder.builder_settings import STACK_HOSTS
from gallery_builder.fetch_guard import (
    FetchGuard,
    Pins,
    Submodule,
    check_submodules,
    is_local,
    parse_gitmodules,
    pinned_git_config,
    redirect_status,
    ssh_config_text,
    submodule_url,
)
from gallery_builder.git_access import write_askpass
from gallery_builder.git_fetch import CheckoutError, checkout_commit
from gallery_builder.git_refs import RefError, resolve_ref
from gallery_builder.repository_policy import (
    CREDENTIALS_IN_URL,
    CheckedRepository,
    RepositoryRefused,
    check_repository,
)

from .conftest import fake_resolve, git, minimal_env, needs_git

GUARD = FetchGuard(blocked_hosts=STACK_HOSTS, resolve=fake_resolve)


def test_check_keeps_the_addresses_git_must_use() -> None:
    checked = check_repository("https://example.org/lab/repo.git", resolve=fake_resolve)
    assert (checked.scheme, checked.host, checked.port) == ("https", "example.org", 443)
    assert checked.addresses == ("198.51.100.7",)
    assert check_repository("git@example.org:lab/repo", resolve=fake_resolve).user == "git"


@pytest.mark.parametrize("allow_private", [True, False])
def test_the_hosts_bridge_gateways_are_refused_like_loopback(allow_private: bool) -> None:
    for url in ("http://172.17.0.1/repo.git", "http://172.18.0.1:3000/repo.git"):
        with pytest.raises(ValidationError) as info:
            validate_repository_url(
                url,
                allow_private=allow_private,
                host_addresses=frozenset({"172.17.0.1", "172.18.0.1"}),
                resolve=fake_resolve,
            )
        assert info.value.field == "repository"
        assert "an address of this Docker host" in info.value.message
    # A name that resolves to a gateway is refused the same way.
    with pytest.raises(RepositoryRefused, match="this Docker host"):
        check_repository(
            "http://example.org/repo.git",
            host_addresses=frozenset({"198.51.100.7"}),
            resolve=fake_resolve,
        )


@pytest.mark.parametrize(
    "url",
    [
        "http://user@example.org/repo.git",
        "https://user:token@example.org/repo.git",
        "https://token@example.org/repo.git",
        "git://me@example.org/repo.git",
        "ssh://git:secret@example.org/repo.git",
    ],
)
def test_user_info_in_the_url_is_refused_with_the_credentials_message(url: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_repository_url(url, resolve=fake_resolve)
    assert str(info.value) == f"repository: {CREDENTIALS_IN_URL}"
    assert CREDENTIALS_IN_URL == "put credentials in the credentials fields, not in the URL"


def test_pinned_config_refuses_redirects_and_pins_each_host() -> None:
    repos = [
        CheckedRepository("https://example.org/r", "https", "example.org", 443, ("198.51.100.7",)),
        CheckedRepository("http://lib.org:8080/x", "http", "lib.org", 8080, ("192.0.2.1", "::5")),
        CheckedRepository("git://g.org/x", "git", "g.org", 9418, ("192.0.2.9",)),
        CheckedRepository("https://192.0.2.3/r", "https", "192.0.2.3", 443, ("192.0.2.3",)),
    ]
    config = pinned_git_config(repos)
    assert config[:2] == [("http.followRedirects", "false"), ("protocol.allow", "never")]
    allowed = {key for key, value in config if key.startswith("protocol.") and value == "always"}
    assert allowed == {f"protocol.{p}.allow" for p in ("https", "http", "git", "ssh")}
    resolves = [value for key, value in config if key == "http.curloptResolve"]
    assert resolves == ["example.org:443:198.51.100.7", "lib.org:8080:192.0.2.1,[::5]"]
    assert ("url.git://192.0.2.9:9418/.insteadOf", "git://g.org/") in config
    assert ("protocol.file.allow", "always") in pinned_git_config([], allow_local=True)


def test_ssh_config_pins_each_ssh_host_and_checks_keys_by_name() -> None:
    repos = [CheckedRepository("git@example.org:x", "ssh", "example.org", 22, ("198.51.100.7",))]
    text = ssh_config_text(repos)
    assert "Host example.org\n    HostName 198.51.100.7\n    HostKeyAlias example.org" in text
    assert "BatchMode yes" in text


def test_submodule_urls_resolve_as_git_does() -> None:
    base = "http://gitserver/public/demo.git"
    assert submodule_url("../lib.git", base) == "http://gitserver/public/lib.git"
    assert submodule_url("./lib", base) == "http://gitserver/public/demo.git/lib"
    assert submodule_url("../../../../x", base) == "http://gitserver/x"
    assert submodule_url("../other", "git@host:org/repo") == "git@host:org/other"
    assert submodule_url("http://hub:8081/", base) == "http://hub:8081/"


def test_gitmodules_are_parsed_and_each_url_checked() -> None:
    listing = (
        "submodule.lib.path=vendor/lib\n"
        "submodule.lib.url=../lib.git\n"
        "submodule.evil.path=evil\n"
        "submodule.evil.url=http://hub:8081/hub/api\n"
        "core.bare=false\n"
    )
    submodules = parse_gitmodules(listing)
    assert submodules == [
        Submodule("lib", "vendor/lib", "../lib.git"),
        Submodule("evil", "evil", "http://hub:8081/hub/api"),
    ]
    base = "https://example.org/lab/demo.git"
    assert [c.url for c in check_submodules(submodules[:1], base, GUARD)] == [
        "https://example.org/lab/lib.git"
    ]
    with pytest.raises(RepositoryRefused) as info:
        check_submodules(submodules, base, GUARD)
    assert str(info.value).startswith("submodule 'evil' (http://hub:8081/hub/api): host 'hub'")
    for url in ("file:///etc", "ext::sh -c id", "/srv/repo"):
        with pytest.raises(RepositoryRefused):
            check_submodules([Submodule("x", "x", url)], base, GUARD)


def test_local_repositories_need_no_pin(tmp_path: Path) -> None:
    assert is_local("file:///srv/repo") and is_local("/srv/repo")
    assert not is_local("https://example.org/r")
    pins = Pins.for_repository(tmp_path, "/srv/repo", GUARD)
    assert pins.local and pins.primary is None
    assert ("protocol.file.allow", "always") in pins.config()
    with pytest.raises(RepositoryRefused):
        Pins.for_repository(tmp_path, "http://hub:8081/", GUARD)


def test_redirect_status_is_read_from_gits_error() -> None:
    assert redirect_status("fatal: unable to access 'x': The requested URL returned error: 302")
    assert redirect_status("fatal: ... returned error: 404") is None


# --- real git -------------------------------------------------------------------------------


class _Redirects(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        if self.path.startswith("/moved/"):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/forbidden" + self.path)
            self.end_headers()
            return
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@needs_git
def test_git_follows_no_redirect_and_the_reason_names_its_target(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirects)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        url = f"http://repo.example:{port}/moved/demo.git"
        pinned = CheckedRepository(url, "http", "repo.example", port, ("127.0.0.1",))
        pins = Pins(tmp_path, [pinned])
        with pytest.raises(RefError) as info:
            asyncio.run(
                resolve_ref(
                    tmp_path, url, "main", None, timeout=30, pins=pins, base_env=minimal_env()
                )
            )
    finally:
        server.shutdown()
    message = str(info.value)
    assert "redirects (HTTP 302) to http://127.0.0.1:1/forbidden/moved/demo.git" in message
    assert "follows no redirect" in message
    # git asked the pinned address under the checked name, and never the target.
    assert all(path.startswith("/moved/") for path in _Redirects.seen), _Redirects.seen


@needs_git
def test_a_submodule_pointing_at_the_hub_is_refused_before_git_fetches_it(
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / ".gitmodules").write_text(
        '[submodule "lib"]\n\tpath = lib\n\turl = http://hub:8081/hub/api/x.git\n'
    )
    git("add", ".gitmodules", cwd=work)
    git("update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},lib", cwd=work)
    git("commit", "-q", "-m", "with a submodule", cwd=work)
    commit = git("rev-parse", "HEAD", cwd=work)
    pins = Pins.for_repository(tmp_path, str(work), GUARD)
    with pytest.raises(CheckoutError) as info:
        asyncio.run(
            checkout_commit(
                tmp_path / "checkout",
                str(work),
                commit,
                None,
                askpass=write_askpass(tmp_path),
                pins=pins,
                guard=GUARD,
                base_env=minimal_env(),
            )
        )
    assert "refused to fetch submodule 'lib' (http://hub:8081/hub/api/x.git)" in str(info.value)
    assert not (tmp_path / "checkout" / "lib" / ".git").exists()
