"""Child processes: reading their output line by line, scrubbed and split."""

from __future__ import annotations

import asyncio

from gallery_builder.git_access import MASK, Scrubber
from gallery_builder.processes import read_lines

from .conftest import CREDENTIALS, PASSWORD


def run(coro):
    return asyncio.run(coro)


async def feed_lines(chunks: list[bytes], scrub: Scrubber | None, max_line: int) -> list[str]:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    return [line async for line in read_lines(reader, scrub, max_line=max_line)]


def test_read_lines_splits_decodes_and_terminates() -> None:
    snowman = "☃".encode()
    chunks = [b"one\r\ntw", b"o\n" + snowman[:1], snowman[1:] + b"\nlast"]
    assert run(feed_lines(chunks, None, 100)) == ["one\n", "two\n", "☃\n", "last\n"]


def test_read_lines_splits_long_lines() -> None:
    lines = run(feed_lines([b"x" * 25 + b"\n"], None, 10))
    assert lines == ["x" * 10 + "\n", "x" * 10 + "\n", "x" * 5 + "\n"]


def test_read_lines_scrubs_secrets_across_chunks_and_long_line_splits() -> None:
    scrub = Scrubber.for_credentials(CREDENTIALS)
    data = ("y" * 37 + PASSWORD + "z" * 50 + "\n" + PASSWORD).encode()
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
    lines = run(feed_lines(chunks, scrub, 20))
    assert all(len(line) <= 21 for line in lines)
    joined = "".join(lines)
    assert PASSWORD not in joined.replace("\n", "")
    assert joined.replace("\n", "").count(MASK) == 2
