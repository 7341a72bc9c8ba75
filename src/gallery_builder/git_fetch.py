"""A checkout of exactly one commit, with its submodules: what repo2docker builds from.

repo2docker's own git provider clones the whole history and its submodules, from URLs
nobody checked. The builder fetches the commit itself instead, into the build's private
directory, and hands repo2docker the directory: with depth 1 when the server sends a commit
by id, else the branches and tags (a commit that is no branch tip). Every connection is
held to the checked addresses (`fetch_guard.Pins`), and each submodule's URL passes the
repository policy before git fetches it, level by level (nested ones too).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from gallery_builder.build_request import Credentials
from gallery_builder.fetch_guard import (
    MAX_SUBMODULE_DEPTH,
    FetchGuard,
    Pins,
    check_submodules,
    parse_gitmodules,
    submodule_url,
)
from gallery_builder.git_access import Scrubber, git_environment
from gallery_builder.git_refs import describe_git_failure
from gallery_builder.processes import ProcessError, run_captured
from gallery_builder.repository_policy import RepositoryRefused

DEFAULT_FETCH_TIMEOUT_S = 900.0


class CheckoutError(ProcessError):
    """The commit or a submodule cannot be fetched; the message is for the admin."""


async def checkout_commit(
    directory: Path,
    repository: str,
    commit: str,
    credentials: Credentials | None,
    *,
    askpass: Path,
    pins: Pins,
    guard: FetchGuard,
    base_env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_FETCH_TIMEOUT_S,
    note: Callable[[str], None] = lambda line: None,
    scrub: Scrubber | None = None,
) -> Path:
    """Check `commit` of `repository` out into `directory` (created; it must not exist).

    Returns the directory. Raises CheckoutError (the reason, scrubbed) when the commit or a
    submodule cannot be fetched or a submodule's URL is refused, ProcessError on a timeout.
    """
    scrub = scrub or Scrubber.for_credentials(credentials)
    directory.mkdir(mode=0o700)

    async def git(*args: str, cwd: Path = directory) -> tuple[int, str, str]:
        env = git_environment(
            repository,
            credentials,
            askpass,
            base_env,
            config=pins.config(),
            ssh_config=pins.ssh_config(),
        )
        return await run_captured(["git", *args], env=env, cwd=cwd, timeout=timeout)

    async def must(*args: str, cwd: Path = directory) -> str:
        status, out, err = await git(*args, cwd=cwd)
        if status != 0:
            raise CheckoutError(describe_git_failure(err, repository, scrub))
        return out

    await must("init", "-q")
    # An origin, so that relative submodule URLs ("../lib.git") resolve against it.
    await must("remote", "add", "origin", repository)
    status, _out, err = await git("fetch", "-q", "--depth", "1", "--no-tags", "origin", commit)
    if status != 0:
        reason = scrub(err).strip().splitlines()
        note(
            f"the server did not send commit {commit[:7]} on its own "
            f"({reason[-1] if reason else status}); fetching its branches and tags"
        )
        await must(
            "fetch",
            "-q",
            "--no-tags",
            "origin",
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
        )
        target = commit
    else:
        target = "FETCH_HEAD"
    status, _out, err = await git("-c", "advice.detachedHead=false", "checkout", "-q", target)
    if status != 0:
        raise CheckoutError(f"commit {commit[:7]} is not in {repository}")
    out = await must("rev-parse", "HEAD")
    if out.strip().lower() != commit.lower():
        raise CheckoutError(f"the fetch did not check out commit {commit[:7]}")
    await _submodules(directory, repository, git, must, guard, pins, note, depth=1)
    return directory


async def _submodules(directory, superproject, git, must, guard, pins, note, *, depth: int) -> None:  # type: ignore[no-untyped-def]
    """Check, then fetch, the submodules of the checkout in `directory`, and theirs."""
    if not (directory / ".gitmodules").is_file():
        return
    if depth > MAX_SUBMODULE_DEPTH:
        raise CheckoutError(f"submodules nested deeper than {MAX_SUBMODULE_DEPTH} levels")
    status, out, err = await git("config", "-f", ".gitmodules", "--list", cwd=directory)
    if status != 0:
        raise CheckoutError(f"cannot read .gitmodules: {err.strip()[:200]}")
    status, staged, _err = await git("ls-files", "--stage", cwd=directory)
    # Only entries with a gitlink in the commit are fetched by git, so only they count.
    gitlinks = {
        line.partition("\t")[2] for line in staged.splitlines() if line.startswith("160000 ")
    }
    submodules = [s for s in parse_gitmodules(out) if s.path in gitlinks]
    try:
        pins.add(check_submodules(submodules, superproject, guard))
    except RepositoryRefused as e:
        raise CheckoutError(f"refused to fetch {e}") from None
    for submodule in submodules:
        note(f"Fetching submodule {submodule.name} ({submodule_url(submodule.url, superproject)})")
        args = ("submodule", "update", "--init", "-q")
        status, _out, _err = await git(*args, "--depth", "1", "--", submodule.path, cwd=directory)
        if status != 0:
            await must(*args, "--", submodule.path, cwd=directory)
        await _submodules(
            directory / submodule.path,
            submodule_url(submodule.url, superproject),
            git,
            must,
            guard,
            pins,
            note,
            depth=depth + 1,
        )
