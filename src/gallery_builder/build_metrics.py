"""The builder's Prometheus metrics, at /services/environments/metrics.

    gallery_builder_builds_total{outcome}               built, reused, failed, cancelled
    gallery_builder_build_duration_seconds{outcome}     start of a build until its end
    gallery_builder_queue_length                        builds waiting for a worker
    gallery_builder_builds_running                      builds running now
    gallery_builder_image_size_bytes{image}             each environment image's size
    gallery_builder_images_size_bytes                   all of them (shared layers counted
                                                        once per image)

Builds are counted from the build store when Prometheus scrapes, from the builder's start
on: so builds that `build-image` records from another process count too. Readable with a
token holding JupyterHub's `read:metrics` scope, the one the hub's own /hub/metrics wants,
so one scrape token reads both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gallery_builder.build_store import TERMINAL_STATES, BuildRecord, BuildState
from gallery_common.image_labels import MARKER_FILTER

log = logging.getLogger("gallery_builder")

DURATION_BUCKETS = (5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
# Builds looked at per scrape (newest first): far more than end between two scrapes.
RECENT_BUILDS = 500


def outcome(record: BuildRecord) -> str:
    if record.state is BuildState.BUILT and record.reused:
        return "reused"
    return record.state.value


def duration_s(record: BuildRecord) -> float | None:
    if not (record.started_at and record.finished_at):
        return None
    started = datetime.fromisoformat(record.started_at)
    return max(0.0, (datetime.fromisoformat(record.finished_at) - started).total_seconds())


class BuildMetrics:
    """Counts ended builds once each; reads the queue and the images at every scrape."""

    def __init__(
        self,
        recent_builds: Callable[[int], list[BuildRecord]],
        docker_api: Callable[[], Any],
        *,
        since: datetime | None = None,
    ) -> None:
        self.recent_builds = recent_builds
        self.docker_api = docker_api
        self.since = since or datetime.now(UTC)
        self._counted: set[str] = set()
        self.registry = CollectorRegistry()
        self.builds = Counter(
            "gallery_builder_builds",
            "Builds that ended, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "gallery_builder_build_duration_seconds",
            "From the start of a build until its end",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._gauges = _Gauges(self)
        self.registry.register(self._gauges)

    def count_ended_builds(self) -> None:
        """Count the builds that ended since the last scrape (and since the builder started)."""
        for record in self.recent_builds(RECENT_BUILDS):
            if record.id in self._counted or record.state not in TERMINAL_STATES:
                continue
            if not record.finished_at or datetime.fromisoformat(record.finished_at) < self.since:
                continue
            self._counted.add(record.id)
            kind = outcome(record)
            self.builds.labels(kind).inc()
            seconds = duration_s(record)
            if seconds is not None:
                self.duration.labels(kind).observe(seconds)

    def exposition(self, queued: int, running: int) -> bytes:
        """The text Prometheus reads (blocking: Docker and sqlite; call it in a thread)."""
        self.count_ended_builds()
        self._gauges.queued, self._gauges.running = queued, running
        return generate_latest(self.registry)


class _Gauges(Collector):
    def __init__(self, metrics: BuildMetrics) -> None:
        self.metrics = metrics
        self.queued = 0
        self.running = 0

    def collect(self):
        yield GaugeMetricFamily(
            "gallery_builder_queue_length", "Builds waiting for a worker", value=self.queued
        )
        yield GaugeMetricFamily(
            "gallery_builder_builds_running", "Builds running now", value=self.running
        )
        sizes = GaugeMetricFamily(
            "gallery_builder_image_size_bytes", "Size of each environment image", labels=["image"]
        )
        total = 0
        try:
            images = self.metrics.docker_api().images(filters={"label": MARKER_FILTER})
        except Exception as e:  # metrics must answer while Docker does not
            log.warning("metrics: could not list the images: %s", e)
            images = []
        for image in images:
            tags = [t for t in image.get("RepoTags") or [] if t and t != "<none>:<none>"]
            size = int(image.get("Size") or 0)
            total += size
            for tag in tags:
                sizes.add_metric([tag], size)
        yield sizes
        yield GaugeMetricFamily(
            "gallery_builder_images_size_bytes",
            "All environment images together (layers they share counted once per image)",
            value=total,
        )
