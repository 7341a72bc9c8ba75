"""git's askpass program for one gallery build: answers only about the repository's origin.

git runs GIT_ASKPASS with the prompt as its only argument and reads the answer from stdout.
Prompts look like "Username for 'https://HOST': " and "Password for 'https://USER@HOST': ".
The answers come from the environment the builder gives git (see git_access), never from
a file. Runs as `python -I -S git_askpass.py PROMPT`: standard library only, and isolated
from PYTHON* variables and site-packages, so nothing else is imported along the way.
"""

from __future__ import annotations

import os
import re
import sys

ORIGIN_ENV = "GALLERY_GIT_ORIGIN"
USERNAME_ENV = "GALLERY_GIT_USERNAME"
PASSWORD_ENV = "GALLERY_GIT_PASSWORD"  # noqa: S105 - the variable's name, not a password

PROMPT = re.compile(r"(Username|Password) for '(.*)': ?", re.DOTALL)


def answer(prompt: str, origin: str, username: str, password: str) -> str | None:
    """The reply to git's `prompt` for credentials of `origin` ("scheme://host"), or None."""
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


def main(argv: list[str], env: dict[str, str] | os._Environ[str]) -> int:
    """Print the answer and return 0, or return 1 (git then gives up: GIT_TERMINAL_PROMPT=0)."""
    reply = answer(
        argv[1] if len(argv) > 1 else "",
        env.get(ORIGIN_ENV, ""),
        env.get(USERNAME_ENV, ""),
        env.get(PASSWORD_ENV, ""),
    )
    if reply is None:
        return 1
    sys.stdout.write(reply + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv, os.environ))
