"""The builder's metrics count each ended build once, from the builder's start on."""

from __future__ import annotations

from datetime import UTC, datetime

from gallery_builder.build_metrics import BuildMetrics
from gallery_builder.build_store import BuildRecord, BuildState

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def record(build_id: str, state: BuildState, finished: str | None, reused=False) -> BuildRecord:
    return BuildRecord(
        id=build_id, name="demo", image="demo:main", repository="https://x.org/demo", ref=None,
        resolved_commit=None, memory_gb=None, cpu=None, state=state, reason=None,
        created_at="2026-12-01T11:00:00+00:00", started_at="2026-12-01T12:00:00+00:00",
        finished_at=finished, image_size=None, reused=reused,
    )  # fmt: skip


class FakeDocker:
    def images(self, filters):
        return [{"RepoTags": ["demo:main"], "Size": 1000}, {"RepoTags": ["x:1"], "Size": 24}]


def value(text: str, line_start: str) -> float:
    return float(
        next(line for line in text.splitlines() if line.startswith(line_start)).split()[-1]
    )


def test_builds_are_counted_once_with_their_duration():
    builds = [
        record("a", BuildState.BUILT, "2026-12-01T12:01:00+00:00"),
        record("b", BuildState.BUILT, "2026-12-01T12:00:30+00:00", reused=True),
        record("c", BuildState.FAILED, "2026-12-01T12:02:00+00:00"),
        record("d", BuildState.BUILT, "2026-12-01T11:59:00+00:00"),  # before the start
        record("e", BuildState.BUILDING, None),
    ]
    metrics = BuildMetrics(lambda limit: builds, FakeDocker, since=START)
    text = metrics.exposition(queued=2, running=1).decode()
    text = metrics.exposition(queued=2, running=1).decode()  # a second scrape counts nothing new
    assert value(text, 'gallery_builder_builds_total{outcome="built"}') == 1
    assert value(text, 'gallery_builder_builds_total{outcome="reused"}') == 1
    assert value(text, 'gallery_builder_builds_total{outcome="failed"}') == 1
    assert value(text, 'gallery_builder_build_duration_seconds_sum{outcome="built"}') == 60
    assert value(text, "gallery_builder_queue_length") == 2
    assert value(text, "gallery_builder_builds_running") == 1
    assert value(text, 'gallery_builder_image_size_bytes{image="demo:main"}') == 1000
    assert value(text, "gallery_builder_images_size_bytes") == 1024
