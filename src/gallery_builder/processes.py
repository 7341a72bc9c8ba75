"""Child processes of a build: started in their own session, read in blocks of whole lines,
and killed as a whole group, so nothing a build started (git, repo2docker, their children)
outlives it.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

DEFAULT_KILL_GRACE_S = 5.0
MAX_LOG_LINE = 16 * 1024


class ProcessError(Exception):
    """A child process could not do its job; the message is for the admin, without secrets."""


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the process's whole group (it must lead its own session), without waiting."""
    _signal_group(process.pid, signal.SIGKILL)


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


async def spawn(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    stderr: int,
    stdin: int = asyncio.subprocess.DEVNULL,
) -> asyncio.subprocess.Process:
    """Start `argv` in a new session (stdout piped); ProcessError if it cannot start at all."""
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,  # its own process group: one signal reaches all it starts
        )
    except OSError as e:
        raise ProcessError(f"cannot start {argv[0]}: {e.strerror or e}") from None


async def run_captured(
    argv: list[str], *, env: Mapping[str, str], cwd: Path, timeout: float
) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `argv`; ProcessError when it takes longer than `timeout`."""
    process = await spawn(argv, env=env, cwd=cwd, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    except TimeoutError:
        name = " ".join(argv[:2])
        raise ProcessError(f"{name} timed out after {timeout:g} s") from None
    finally:
        if process.returncode is None:
            await terminate_process_group(process, grace_s=1.0)
    assert process.returncode is not None
    return process.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


async def read_chunks(
    stream: asyncio.StreamReader,
    scrub: Callable[[str], str] | None = None,
    *,
    longest_secret: int = 0,
    max_line: int = MAX_LOG_LINE,
) -> AsyncIterator[str]:
    """The decoded output of `stream` in blocks of whole lines, each block scrubbed once.

    A block is what one read brought (up to 64 KiB of complete lines), so a chatty process
    costs one step per read, not one per line. Every line of a block ends in "\\n" (carriage
    returns before it are dropped); a line longer than `max_line` is split. Scrubbing happens
    before a long line is split, and a split never cuts through the last
    `longest_secret - 1` characters of the buffer, where a secret could still be arriving.
    """
    scrub = scrub or (lambda text: text)
    keep = max(longest_secret - 1, 0)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    buffer = ""
    while chunk := await stream.read(65536):
        buffer += decoder.decode(chunk)
        end = buffer.rfind("\n") + 1
        if end:
            block, buffer = buffer[:end], buffer[end:]
            yield _fit_lines(scrub(_drop_carriage_returns(block)), max_line)
        if len(buffer) > max_line + keep:
            buffer = scrub(buffer)
            cut = max(len(buffer) - keep, 1)
            yield _fit_lines(buffer[:cut] + "\n", max_line)
            buffer = buffer[cut:]
    buffer += decoder.decode(b"", final=True)
    if buffer:
        yield _fit_lines(scrub(buffer.rstrip("\r")) + "\n", max_line)


_CARRIAGE_RETURNS = re.compile(r"\r+\n")


def _drop_carriage_returns(block: str) -> str:
    return _CARRIAGE_RETURNS.sub("\n", block) if "\r" in block else block


def _fit_lines(block: str, max_line: int) -> str:
    """`block` (whole lines) with every line longer than `max_line` split into pieces."""
    # (split and max run in C: a regex search for a long run was 0.15 s per 100 000 lines)
    if len(block) <= max_line or max(map(len, block.split("\n"))) <= max_line:
        return block
    return "".join(
        piece + "\n"
        for line in block[:-1].split("\n")
        for piece in ([line[i : i + max_line] for i in range(0, len(line), max_line)] or [""])
    )
