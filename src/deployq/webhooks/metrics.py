"""Prometheus metrics: webhooks by result (counted here), jobs by status, queue depth and the
wait and build-time histograms (read from the database at each scrape)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from deployq.store import Histogram, JobMetrics, Timings


class _JobCollector(Collector):
    """Yields the snapshot taken by the /metrics handler just before rendering."""

    def __init__(self) -> None:
        self.snapshot: JobMetrics | None = None
        self.timings: Timings | None = None

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        if snap is None:
            return
        jobs = GaugeMetricFamily("deployq_jobs", "Jobs by status", labels=["status"])
        for status, count in sorted(snap.by_status.items()):
            jobs.add_metric([status], count)
        yield jobs
        yield GaugeMetricFamily(
            "deployq_queue_depth", "Queued jobs (due or not)", value=snap.queued
        )
        yield GaugeMetricFamily(
            "deployq_queue_due", "Queued jobs due now (waiting for a slot)", value=snap.due
        )
        if self.timings is not None:
            yield _histogram(
                "deployq_wait_seconds",
                "Wait of finished jobs: enqueued to the start of their last attempt",
                self.timings.wait,
            )
            yield _histogram(
                "deployq_build_duration_seconds",
                "Build time of jobs that succeeded, failed or timed out (start to end)",
                self.timings.build,
            )


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name,
        documentation,
        buckets=[(_bucket_label(b), c) for b, c in histogram.buckets],
        sum_value=histogram.sum_s,
    )


def _bucket_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Metrics:
    """One registry per web application (tests run many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhooks = Counter(
            "deployq_webhooks",
            "Webhook deliveries by provider and result",
            ["provider", "result"],
            registry=self.registry,
        )
        self.jobs = _JobCollector()
        self.registry.register(self.jobs)
