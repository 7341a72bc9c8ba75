"""Child processes: reading their output in blocks of whole lines, scrubbed and split."""

from __future__ import annotations

import asyncio

from gallery_builder.git_access import MASK, Scrubber
from gallery_builder.processes import read_chunks

from .conftest import CREDENTIALS, PASSWORD


def run(coro):
    return asyncio.run(coro)


async def feed_lines(chunks: list[bytes], scrub: Scrubber | None, max_line: int) -> list[str]:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    blocks = [block async for block in read_chunks(reader, scrub, max_line=max_line)]
    assert all(block.endswith("\n") for block in blocks)
    return "".join(blocks).splitlines(keepends=True)


def test_read_chunks_splits_decodes_and_terminates() -> None:
    snowman = "☃".encode()
    chunks = [b"one\r\ntw", b"o\r\r\n" + snowman[:1], snowman[1:] + b"\n\nlast\r"]
    assert run(feed_lines(chunks, None, 100)) == ["one\n", "two\n", "☃\n", "\n", "last\n"]


def test_a_read_brings_one_block_of_every_whole_line_it_holds() -> None:
    async def blocks() -> list[str]:
        reader = asyncio.StreamReader()
        reader.feed_data(b"".join(b"line %d\n" % n for n in range(1000)) + b"half")
        reads = read_chunks(reader)
        first = await anext(reads)
        reader.feed_data(b" of a line\n")
        reader.feed_eof()
        return [first] + [block async for block in reads]

    first, *rest = run(blocks())
    assert first.count("\n") == 1000 and first.endswith("line 999\n")
    assert rest == ["half of a line\n"]


def test_read_chunks_splits_long_lines() -> None:
    lines = run(feed_lines([b"short\n" + b"x" * 25 + b"\n\nend\n"], None, 10))
    assert lines == ["short\n", "x" * 10 + "\n", "x" * 10 + "\n", "x" * 5 + "\n", "\n", "end\n"]


def test_read_chunks_scrubs_secrets_across_chunks_and_long_line_splits() -> None:
    scrub = Scrubber.for_credentials(CREDENTIALS)
    data = ("y" * 37 + PASSWORD + "z" * 50 + "\n" + PASSWORD).encode()
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
    lines = run(feed_lines(chunks, scrub, 20))
    assert all(len(line) <= 21 for line in lines)
    joined = "".join(lines)
    assert PASSWORD not in joined.replace("\n", "")
    assert joined.replace("\n", "").count(MASK) == 2
