"""The gallery's Prometheus metrics, served with JupyterHub's own at /hub/metrics.

prometheus_client's default registry is the one JupyterHub serves (to tokens with the
`read:metrics` scope), so metrics defined here appear there beside JupyterHub's.

    gallery_launches_total{example, outcome}     warm, ready, failed, refused, running
    gallery_launch_duration_seconds{example}     click until the server answers (warm: the claim)
    gallery_refusals_total{reason}               capacity, per-visitor, rate, disk, broken
    gallery_visitor_servers{example, state}      visitors' servers now: ready, starting, warm
    gallery_verifications_total{example, result} passed, failed
    gallery_verification_render_seconds{example} navigation until Voila finished
    gallery_verification_duration_seconds        a whole verification (start, render, stop)
    gallery_example_verified{example}            1 verified, 0 broken (absent: not yet)
    gallery_example_verified_timestamp_seconds{example}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gallery_hub.verification_results import VerificationResult

LAUNCH_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120, 300)
RENDER_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)

LAUNCHES = Counter(
    "gallery_launches", "Gallery launches by example and outcome", ["example", "outcome"]
)
LAUNCH_DURATION = Histogram(
    "gallery_launch_duration_seconds",
    "From a Launch click until the example's server answers (warm: until the claim)",
    ["example"],
    buckets=LAUNCH_BUCKETS,
)
REFUSALS = Counter("gallery_refusals", "Launches refused, by reason", ["reason"])
VERIFICATIONS = Counter(
    "gallery_verifications", "Verifications by example and result", ["example", "result"]
)
VERIFICATION_RENDER = Histogram(
    "gallery_verification_render_seconds",
    "Verification: navigation until Voila finished rendering the example",
    ["example"],
    buckets=RENDER_BUCKETS,
)
VERIFICATION_DURATION = Histogram(
    "gallery_verification_duration_seconds",
    "A whole verification: start of the server, render, stop",
    buckets=RENDER_BUCKETS,
)


def launch_refused(example: str, reason: str, *, count_reason: bool = True) -> None:
    """A launch refused; `count_reason=False` when the spawner counted the refusal itself."""
    LAUNCHES.labels(example, "refused").inc()
    if count_reason:
        REFUSALS.labels(reason).inc()


def launch_ended(example: str, outcome: str, seconds: float | None = None) -> None:
    LAUNCHES.labels(example, outcome).inc()
    if seconds is not None:
        LAUNCH_DURATION.labels(example).observe(seconds)


def verification_recorded(result: VerificationResult) -> None:
    VERIFICATIONS.labels(result.example, "passed" if result.passed else "failed").inc()
    if result.render_s is not None:
        VERIFICATION_RENDER.labels(result.example).observe(result.render_s)
    VERIFICATION_DURATION.observe(result.total_s)


class GalleryCollector(Collector):
    """Gauges read when Prometheus scrapes: the servers now, the last verifications."""

    def __init__(
        self,
        servers: Callable[[], Iterable[tuple[str, str]]],
        results: Callable[[], dict[str, VerificationResult]],
    ):
        self.servers = servers  # (example, state) per visitor server
        self.results = results

    def collect(self):
        running = GaugeMetricFamily(
            "gallery_visitor_servers",
            "Visitors' servers now, by example and state (ready, starting, warm)",
            labels=["example", "state"],
        )
        counts: dict[tuple[str, str], int] = {}
        for key in self.servers():
            counts[key] = counts.get(key, 0) + 1
        for (example, state), count in sorted(counts.items()):
            running.add_metric([example, state], count)
        yield running
        verified = GaugeMetricFamily(
            "gallery_example_verified",
            "1 if the example's last verification passed, 0 if it is broken",
            labels=["example"],
        )
        when = GaugeMetricFamily(
            "gallery_example_verified_timestamp_seconds",
            "When the example's last verification ended (Unix time)",
            labels=["example"],
        )
        for example, result in sorted(self.results().items()):
            verified.add_metric([example], 1 if result.passed else 0)
            when.add_metric([example], result.when.timestamp())
        yield verified
        yield when


_collector: GalleryCollector | None = None


def register_collector(collector: GalleryCollector) -> None:
    """Serve `collector`'s gauges at /hub/metrics (replacing an earlier one of this process)."""
    global _collector
    if _collector is not None:
        REGISTRY.unregister(_collector)
    REGISTRY.register(collector)
    _collector = collector
