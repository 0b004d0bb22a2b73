"""Prometheus metrics of one server (``GET /metrics`` on the HTTP port).

What an operator of a vector search service expects to see: requests by RPC, transport and
status code; request latency and the latency of each pipeline stage as histograms; how full
the micro-batches are; the index's size and version; and the process itself (CPU, memory).

Each server has its own registry (no module-level state), so tests and benchmarks can run
several servers in one process. Batch sizes and the index are read when Prometheus scrapes,
from the objects that hold them, so the request path pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

# milliseconds-scale stages up to multi-second queueing under load
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class _PipelineCollector(Collector):
    """Index size and version, micro-batch sizes: read from the live pipeline at scrape time."""

    def __init__(self, pipeline: Callable[[], Any], serving: Callable[[], bool]) -> None:
        self._pipeline = pipeline
        self._serving = serving

    def collect(self) -> Iterator[Any]:
        serving = GaugeMetricFamily("retrieval_serving", "1 when health is SERVING, else 0")
        serving.add_metric([], 1.0 if self._serving() else 0.0)
        yield serving
        p = self._pipeline()
        if p is None:
            return
        from retrieval.service import store_size, store_version

        store = p.store
        size = GaugeMetricFamily("retrieval_index_items", "items in the index that answers searches")
        size.add_metric([], float(store_size(store)))
        yield size
        info = InfoMetricFamily("retrieval_index", "the index that answers searches")
        info.add_metric([], {"version": store_version(store), "dir": str(p.index_dir)})
        yield info
        batch = HistogramMetricFamily(
            "retrieval_batch_size", "model calls by micro-batch size (images per forward)", labels=["model"]
        )
        dropped = GaugeMetricFamily(
            "retrieval_batch_dropped_items", "queued model inputs dropped because their caller had gone",
            labels=["model"],
        )
        for model, stats in (("generator", p.edit_batcher.stats), ("encoder", p.encode_batcher.stats)):
            buckets = [(str(le), float(sum(n for size, n in stats.sizes.items() if size <= le)))
                       for le in BATCH_BUCKETS]
            buckets.append(("+Inf", float(stats.batches)))
            batch.add_metric([model], buckets, float(stats.items))
            dropped.add_metric([model], float(stats.dropped))
        yield batch
        yield dropped
        alone = GaugeMetricFamily(
            "retrieval_unbatched_requests", "requests whose model calls ran without micro-batching "
            "(batching off, or no other request in flight)",
        )
        alone.add_metric([], float(p.batch_stats()["unbatched"]["requests"]))
        yield alone


class Metrics:
    """The server's metrics; ``observe_request`` is called once per RPC by :class:`retrieval.api.Api`."""

    def __init__(self, pipeline: Callable[[], Any] = lambda: None, serving: Callable[[], bool] = lambda: False,
                 process: bool = True) -> None:
        self.registry = CollectorRegistry()
        if process:
            ProcessCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.requests = Counter(
            "retrieval_requests", "RPCs answered, by transport, RPC and status code",
            ["transport", "rpc", "code"], registry=self.registry,
        )
        self.latency = Histogram(
            "retrieval_request_duration_seconds", "server-side RPC latency (parsing the request to the response)",
            ["transport", "rpc"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.stages = Histogram(
            "retrieval_stage_duration_seconds", "latency of each pipeline stage of successful Search/Modify calls",
            ["rpc", "stage"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge(
            "retrieval_requests_in_flight", "RPCs being answered now", ["transport"], registry=self.registry,
        )
        self.registry.register(_PipelineCollector(pipeline, serving))

    def observe_request(self, transport: str, rpc: str, code: str, seconds: float,
                        timings: Sequence[Any] | None = None) -> None:
        self.requests.labels(transport, rpc, code).inc()
        self.latency.labels(transport, rpc).observe(seconds)
        for t in timings or ():
            self.stages.labels(rpc, t.stage).observe(t.ms / 1000.0)

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)
