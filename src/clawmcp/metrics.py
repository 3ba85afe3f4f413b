"""`/metrics`: the host's counters and histograms in the Prometheus text format.

Counters and histograms follow the activity log (`clawmcp.events`) and count from the host's
start, as Prometheus expects. Gauges (mailbox depth, dead letters, tool servers up, restarts) are
read when scraped. The exposition format is prometheus_client's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from clawmcp.events import Events
from clawmcp.store import Event

__all__ = ["Metrics"]

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series beside every counter

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_LATENESS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 60, 3600)


class Metrics:
    """The host's metrics, fed by its events."""

    def __init__(self, events: Events) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.runs = Counter("clawmcp_runs", "Runs finished, by outcome.", ["claw", "outcome"], registry=r)
        self.run_seconds = Histogram(
            "clawmcp_run_duration_seconds", "How long runs took.", ["claw"], buckets=_SECONDS, registry=r
        )
        self.tool_calls = Counter(
            "clawmcp_tool_calls", "Tool calls, by outcome.", ["claw", "tool", "outcome"], registry=r
        )
        self.tool_seconds = Histogram(
            "clawmcp_tool_call_duration_seconds",
            "How long tool calls took.",
            ["claw", "tool"],
            buckets=_SECONDS,
            registry=r,
        )
        self.messages = Counter("clawmcp_messages", "Messages queued, by kind.", ["claw", "kind"], registry=r)
        self.deliveries = Counter(
            "clawmcp_deliveries", "Messages handled, by outcome.", ["claw", "outcome"], registry=r
        )
        self.lateness = Histogram(
            "clawmcp_schedule_lateness_seconds",
            "How long after its slot a schedule fired.",
            ["claw"],
            buckets=_LATENESS,
            registry=r,
        )
        self.tokens = Counter(
            "clawmcp_tokens",
            "Model tokens of ended runs, as providers report them.",
            ["claw", "kind"],
            registry=r,
        )
        events.listen(self.observe)

    def observe(self, event: Event) -> None:
        claw, d = event.claw or "", event.data
        if event.kind == "run" and d["state"] not in ("running", "waiting"):
            self.runs.labels(claw, d["state"]).inc()
            self.run_seconds.labels(claw).observe(d["duration"])
            for kind in ("input", "output"):
                self.tokens.labels(claw, kind).inc(d.get(f"{kind}_tokens") or 0)
        elif event.kind == "tool":
            self.tool_calls.labels(claw, d["tool"], d["outcome"]).inc()
            self.tool_seconds.labels(claw, d["tool"]).observe(d["duration"])
        elif event.kind == "message":
            self.messages.labels(claw, d["type"]).inc()
        elif event.kind == "delivery":
            self.deliveries.labels(claw, d["outcome"]).inc()
        elif event.kind == "fire" and "lateness" in d:  # a schedule's (a trigger's has none)
            self.lateness.labels(claw).observe(max(0.0, d["lateness"]))

    def text(
        self,
        *,
        mailboxes: Mapping[str, tuple[int, int]],
        restarts: Mapping[str, int],
        servers: Mapping[str, tuple[bool, int]],
        approvals: Mapping[str, int],
        shown: Callable[[str], bool],
    ) -> bytes:
        """The exposition, with the gauges read now: per Claw its mailbox (depth, dead letters),
        restarts and pending approvals, per tool server whether it is up and its reconnects.
        Only the Claws that `shown` admits appear."""
        depth = GaugeMetricFamily("clawmcp_mailbox_depth", "Messages queued or running.", labels=["claw"])
        dead = GaugeMetricFamily("clawmcp_dead_letters", "Messages given up on.", labels=["claw"])
        restarted = CounterMetricFamily(
            "clawmcp_claw_restarts", "Restarts of a Claw's task by its supervisor.", labels=["claw"]
        )
        pending = GaugeMetricFamily(
            "clawmcp_approvals_pending", "Tool calls and questions waiting for a person.", labels=["claw"]
        )
        for claw, count in restarts.items():
            queued, given_up = mailboxes.get(claw, (0, 0))
            depth.add_metric([claw], queued)
            dead.add_metric([claw], given_up)
            restarted.add_metric([claw], count)
            pending.add_metric([claw], approvals.get(claw, 0))
        up = GaugeMetricFamily(
            "clawmcp_tool_server_up", "1 when the tool server is connected.", labels=["server"]
        )
        reconnects = CounterMetricFamily(
            "clawmcp_tool_server_reconnects", "Connections made again to a tool server.", labels=["server"]
        )
        for server, (is_up, count) in servers.items():
            up.add_metric([server], int(is_up))
            reconnects.add_metric([server], count)
        return prometheus_client.generate_latest(
            _View([*self.registry.collect(), depth, dead, restarted, pending, up, reconnects], shown)
        )


class _View:
    """The metric families with only the samples of the Claws shown."""

    def __init__(self, families: Iterable[Metric], shown: Callable[[str], bool]) -> None:
        self.families, self.shown = families, shown

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            family.samples = [s for s in family.samples if self._shown(s.labels)]
            yield family

    def _shown(self, labels: dict[str, Any]) -> bool:
        return "claw" not in labels or self.shown(labels["claw"])
