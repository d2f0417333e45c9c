"""Prometheus metrics of one server (a registry per app, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pointkd_requests_total",
            "Requests by endpoint and status code",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pointkd_request_seconds",
            "Server-side request latency",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "pointkd_batch_size", "Clouds per runtime call", buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry
        )
        self.queue_seconds = Histogram(
            "pointkd_queue_seconds",
            "Longest queue wait in a micro-batch",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "pointkd_inference_seconds", "Runtime call duration", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.worker_replacements = Counter(
            "pointkd_parse_worker_replacements_total",
            "Parse worker processes replaced, by why (crashed, timed out, out of memory)",
            ["reason"],
            registry=self.registry,
        )
