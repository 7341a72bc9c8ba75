"""Git access of a build: the askpass program, the credential environment, scrubbing.

The askpass program runs for real, as git would run it (through the wrapper, -I -S).
"""

from __future__ import annotations

import ast
import base64
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from gallery_builder import git_askpass
from gallery_builder.git_access import (
    MASK,
    Scrubber,
    git_environment,
    repository_origin,
    write_askpass,
)
from gallery_builder.git_askpass import ORIGIN_ENV, PASSWORD_ENV, USERNAME_ENV

from .conftest import CREDENTIALS, PASSWORD, minimal_env


@pytest.fixture(scope="module")
def askpass(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_askpass(tmp_path_factory.mktemp("askpass"))


def ask(askpass: Path, prompt: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(askpass), prompt], env=minimal_env(**env), capture_output=True, text=True, timeout=10
    )


ASKPASS_ENV = {ORIGIN_ENV: "https://git.example.org", USERNAME_ENV: "alice", PASSWORD_ENV: PASSWORD}


def test_askpass_wrapper_is_private_and_runs_the_module(askpass: Path) -> None:
    assert stat.S_IMODE(askpass.stat().st_mode) == 0o700
    wrapper = askpass.read_text()
    assert " -I -S " in wrapper and str(Path(git_askpass.__file__).resolve()) in wrapper
    assert PASSWORD not in wrapper  # the secret only ever travels in git's environment


def test_askpass_answers_for_the_repository_host(askpass: Path) -> None:
    user = ask(askpass, "Username for 'https://git.example.org': ", **ASKPASS_ENV)
    assert (user.returncode, user.stdout) == (0, "alice\n")
    secret = ask(askpass, "Password for 'https://alice@git.example.org': ", **ASKPASS_ENV)
    assert (secret.returncode, secret.stdout) == (0, PASSWORD + "\n")


def test_askpass_host_comparison_ignores_case(askpass: Path) -> None:
    answer = ask(askpass, "Username for 'HTTPS://Git.Example.ORG': ", **ASKPASS_ENV)
    assert answer.stdout == "alice\n"


@pytest.mark.parametrize(
    "prompt",
    [
        "Username for 'https://evil.example.org': ",
        "Password for 'https://alice@evil.example.org': ",
        "Password for 'https://alice@git.example.org.evil.com': ",
        "Password for 'https://mallory@git.example.org': ",
        "Password for 'http://alice@git.example.org': ",
        "Username for 'https://git.example.org:8443': ",
        "Password for 'https://git.example.org': ",
        "Enter passphrase for key '/root/.ssh/id_rsa': ",
        "",
    ],
)
def test_askpass_answers_nothing_elsewhere(askpass: Path, prompt: str) -> None:
    answer = ask(askpass, prompt, **ASKPASS_ENV)
    assert answer.stdout == ""
    assert answer.returncode != 0
    assert PASSWORD not in answer.stderr


def test_askpass_without_credentials_answers_nothing(askpass: Path) -> None:
    answer = ask(askpass, "Username for 'https://git.example.org': ")
    assert (answer.returncode, answer.stdout) == (1, "")


def test_askpass_with_a_port(askpass: Path) -> None:
    env = dict(ASKPASS_ENV, **{ORIGIN_ENV: "https://git.example.org:8443"})
    answer = ask(askpass, "Password for 'https://alice@git.example.org:8443': ", **env)
    assert answer.stdout == PASSWORD + "\n"


def test_askpass_ignores_python_environment(askpass: Path, tmp_path: Path) -> None:
    # A sitecustomize on PYTHONPATH must not run inside the program that holds the secret.
    (tmp_path / "sitecustomize.py").write_text("print('hijacked')\n")
    answer = ask(
        askpass, "Username for 'https://git.example.org': ", PYTHONPATH=str(tmp_path), **ASKPASS_ENV
    )
    assert answer.stdout == "alice\n"


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://git.example.org/group/repo.git", "https://git.example.org"),
        ("HTTPS://Git.Example.org:8443/repo", "https://Git.Example.org:8443"),
        ("http://10.0.0.5/repo", "http://10.0.0.5"),
        ("https://token@git.example.org/repo", "https://git.example.org"),
        ("git@github.com:org/repo.git", None),
        ("ssh://git@host/repo", None),
        ("/srv/repos/demo.git", None),
    ],
)
def test_repository_origin(url: str, origin: str | None) -> None:
    assert repository_origin(url) == origin


def test_git_environment(tmp_path: Path) -> None:
    base = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "JUPYTERHUB_API_TOKEN": "hub-token",
        "GALLERY_ADMIN_PASSWORD": "admin",
        "SOME_SECRET": "x",
        "GIT_ASKPASS": "/usr/bin/other-askpass",
        "GIT_CONFIG_COUNT": "3",
        "GIT_CONFIG_KEY_2": "credential.helper",
        "GIT_CONFIG_VALUE_2": "store",
        "DOCKER_HOST": "unix:///var/run/docker.sock",
    }
    env = git_environment("https://git.example.org/r.git", CREDENTIALS, tmp_path / "ap", base)
    assert env["GIT_ASKPASS"] == str(tmp_path / "ap")
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_CONFIG_COUNT"] == "1"
    assert (env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_VALUE_0"]) == ("credential.helper", "")
    assert env[ORIGIN_ENV] == "https://git.example.org"
    assert (env[USERNAME_ENV], env[PASSWORD_ENV]) == ("alice", PASSWORD)
    assert env["DOCKER_HOST"] == base["DOCKER_HOST"]
    for dropped in ("JUPYTERHUB_API_TOKEN", "GALLERY_ADMIN_PASSWORD", "SOME_SECRET"):
        assert dropped not in env
    assert "GIT_CONFIG_KEY_2" not in env
    # Only the askpass variable carries the password.
    assert [key for key, value in env.items() if PASSWORD in value] == [PASSWORD_ENV]


def test_git_environment_without_credentials_or_for_ssh(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin", USERNAME_ENV: "stale", PASSWORD_ENV: "stale"}
    for url, credentials in (
        ("https://git.example.org/r.git", None),
        ("git@git.example.org:r.git", CREDENTIALS),
    ):
        env = git_environment(url, credentials, tmp_path / "ap", base)
        assert ORIGIN_ENV not in env and USERNAME_ENV not in env and PASSWORD_ENV not in env
        assert env["GIT_SSH_COMMAND"] == "ssh -o BatchMode=yes"


# --- scrubbing ------------------------------------------------------------------------------


def test_scrubber_masks_every_form_of_the_password() -> None:
    scrub = Scrubber.for_credentials(CREDENTIALS)
    basic = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    for form in (PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD), quote_plus(PASSWORD), basic):
        line = f"fatal: https://alice:{form}@host/repo said no ({form})\n"
        scrubbed = scrub(line)
        assert form not in scrubbed
        assert PASSWORD not in scrubbed
        assert scrubbed.count(MASK) >= 2
    assert scrub("nothing secret here\n") == "nothing secret here\n"


def test_scrubber_without_credentials_changes_nothing() -> None:
    assert Scrubber.for_credentials(None)("a line with *** and text") == "a line with *** and text"


def test_askpass_program_is_self_contained() -> None:
    # It runs with -I -S: only the standard library, nothing from this package.
    tree = ast.parse(Path(git_askpass.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert imported <= {"__future__", "annotations", "os", "re", "sys"}


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("Username for 'https://git.example.org': ", "alice"),
        ("Password for 'https://alice@git.example.org': ", PASSWORD),
        ("Password for 'https://bob@git.example.org': ", None),
        ("Username for 'http://git.example.org': ", None),
        ("Username for 'https://evil.example.org': ", None),
        ("Are you sure? ", None),
    ],
)
def test_askpass_answer(prompt: str, expected: str | None) -> None:
    assert git_askpass.answer(prompt, "https://git.example.org", "alice", PASSWORD) == expected


def test_askpass_main(capsys: pytest.CaptureFixture[str]) -> None:
    prompt = "Username for 'https://git.example.org': "
    assert git_askpass.main(["askpass", prompt], ASKPASS_ENV) == 0
    assert capsys.readouterr().out == "alice\n"
    assert git_askpass.main(["askpass"], ASKPASS_ENV) == 1
    assert git_askpass.main(["askpass", prompt], {}) == 1
    assert capsys.readouterr().out == ""
