"""Which commit a ref names in a remote repository: `git ls-remote`, nothing cloned.

A full commit id is taken as it is; a branch or tag is looked up (annotated tags peeled);
no ref means the remote's default branch. Failures become one secret-free line for the admin.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gallery_builder.build_request import FULL_COMMIT, Credentials
from gallery_builder.fetch_guard import Pins, redirect_location, redirect_status
from gallery_builder.git_access import Scrubber, git_environment, write_askpass
from gallery_builder.processes import ProcessError, run_captured
from gallery_common.image_labels import strip_credentials

_SHORT_COMMIT = re.compile(r"[0-9a-f]{4,39}", re.IGNORECASE)


class RefError(ProcessError):
    """The ref cannot be resolved; the message is for the admin and has no secrets."""


@dataclass(frozen=True)
class ResolvedRef:
    """What a ref resolved to: the commit, and the ref's name (the default branch for None)."""

    commit: str
    ref_name: str | None


_GIT_FAILURES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        (
            "returned error: 301",
            "returned error: 302",
            "returned error: 303",
            "returned error: 307",
            "returned error: 308",
        ),
        "the server answered with a redirect, and the builder follows none",
    ),
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
        elif FULL_COMMIT.fullmatch(left):
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
        raise RefError("the repository has no commits on its default branch (is it empty?)")
    target = symrefs.get("HEAD", "")
    branch = target.removeprefix("refs/heads/") if target.startswith("refs/heads/") else None
    return ResolvedRef(commit=commit, ref_name=branch)


async def resolve_ref(
    directory: Path,
    repository: str,
    ref: str | None,
    credentials: Credentials | None,
    *,
    timeout: float,
    askpass: Path | None = None,
    scrub: Scrubber | None = None,
    base_env: Mapping[str, str] | None = None,
    pins: Pins | None = None,
) -> ResolvedRef:
    """Resolve `ref` (None: the remote's default branch) to a commit with `git ls-remote`.

    Works in `directory` (private, existing), with its askpass program there unless
    `askpass` is given; `base_env` replaces os.environ as git's starting environment.
    `pins` holds git to the checked addresses (no redirects). A full commit id is passed
    through. Raises RefError with a secret-free message.
    """
    scrub = scrub or Scrubber.for_credentials(credentials)
    if ref is not None and FULL_COMMIT.fullmatch(ref):
        return ResolvedRef(commit=ref.lower(), ref_name=ref)  # nothing to look up
    askpass = askpass or write_askpass(directory)
    env = git_environment(
        repository,
        credentials,
        askpass,
        base_env,
        config=pins.config() if pins else (),
        ssh_config=pins.ssh_config() if pins else None,
    )
    patterns = ["HEAD"] if ref is None else [ref, f"{ref}^{{}}"]
    args = ["ls-remote", *(["--symref"] if ref is None else []), "--", repository, *patterns]
    status, out, err = await run_captured(["git", *args], env=env, cwd=directory, timeout=timeout)
    if status != 0:
        status_code = redirect_status(err)
        if status_code and pins is not None and pins.primary is not None:
            location = await asyncio.to_thread(redirect_location, pins.primary)
            where = strip_credentials(repository)
            raise RefError(
                f"cannot read {where}: the server redirects (HTTP {status_code}) to "
                f"{strip_credentials(location) if location else 'another address'}, and "
                "the builder follows no redirect: give the repository's own URL"
            )
        raise RefError(describe_git_failure(err, repository, scrub))
    refs, symrefs = parse_ls_remote(out)
    if ref is None:
        return default_branch(refs, symrefs)
    commit = pick_commit(refs, ref)
    if commit is not None:
        return ResolvedRef(commit=commit, ref_name=ref)
    if _SHORT_COMMIT.fullmatch(ref):
        raise RefError(
            f"ref {ref!r} is not a branch or tag, and a shortened commit id cannot be looked "
            "up remotely: give a branch, a tag or the full 40-character commit SHA"
        )
    raise RefError(f"no branch or tag named {ref!r} in {strip_credentials(repository)}")
