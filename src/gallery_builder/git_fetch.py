"""A shallow checkout of exactly one commit: what repo2docker builds from.

repo2docker's own git provider clones the whole history (`git clone --no-checkout`) before
it checks the commit out; the builder only ever needs that one commit. So it fetches it with
depth 1 (and its submodules likewise) into the build's private directory and hands
repo2docker the directory. Servers that refuse to send a commit by id (old protocol, a
commit that is no branch tip) make this return None: repo2docker then clones as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from gallery_builder.build_request import Credentials
from gallery_builder.git_access import Scrubber, git_environment
from gallery_builder.processes import run_captured

DEFAULT_FETCH_TIMEOUT_S = 900.0


async def shallow_checkout(
    directory: Path,
    repository: str,
    commit: str,
    credentials: Credentials | None,
    *,
    askpass: Path,
    base_env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_FETCH_TIMEOUT_S,
    note: Callable[[str], None] = lambda line: None,
    scrub: Scrubber | None = None,
) -> Path | None:
    """Check `commit` of `repository` out into `directory` (created; it must not exist).

    Returns the directory, or None when the commit cannot be fetched on its own (`note`
    gets git's reason, scrubbed). Raises ProcessError when git takes longer than `timeout`.
    """
    scrub = scrub or Scrubber.for_credentials(credentials)
    env = git_environment(repository, credentials, askpass, base_env)
    directory.mkdir(mode=0o700)
    steps = [
        ["git", "init", "-q"],
        ["git", "fetch", "-q", "--depth", "1", "--no-tags", "--", repository, commit],
        ["git", "-c", "advice.detachedHead=false", "checkout", "-q", "FETCH_HEAD"],
        ["git", "submodule", "update", "-q", "--init", "--recursive", "--depth", "1"],
    ]
    for argv in steps:
        status, _out, err = await run_captured(argv, env=env, cwd=directory, timeout=timeout)
        if status != 0:
            reason = scrub(err).strip().splitlines()
            note(f"git {argv[1]} of commit {commit[:7]} failed: {reason[-1] if reason else status}")
            return None
    status, out, _err = await run_captured(
        ["git", "rev-parse", "HEAD"], env=env, cwd=directory, timeout=timeout
    )
    if status != 0 or out.strip().lower() != commit.lower():
        note(f"the shallow fetch did not check out commit {commit[:7]}")
        return None
    return directory
