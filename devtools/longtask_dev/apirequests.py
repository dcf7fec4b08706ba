"""What the embedded apiserver says it served: its `apiserver_request_total` counter, read
from its own /metrics, by verb and resource, for tests and benchmarks that count a
component's requests.

The counter has no client label: a figure is every client's requests of that verb and
resource. Callers pick resources and verbs only the component under test uses in their
window (e.g. a WorkerPool's status PATCH, a Deployment GET). It must not start or change
anything in the cluster.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from prometheus_client import parser

from longtask_dev import cluster as cluster_mod

READS = frozenset({"GET", "LIST", "WATCH"})


@dataclass(frozen=True, order=True)
class Key:
    verb: str  # as the apiserver counts it: GET, LIST, WATCH, PATCH, POST, PUT, DELETE...
    resource: str  # e.g. "deployments", "workerpools"
    subresource: str = ""  # e.g. "status", "scale"

    @property
    def read(self) -> bool:
        return self.verb in READS

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}{'/' + self.subresource if self.subresource else ''}"


Counts = collections.Counter[Key]


def snapshot(c: cluster_mod.Cluster) -> Counts:
    """The apiserver's request counts so far (every response code), by verb and resource."""
    text = c.kubectl("get", "--raw", "/metrics").stdout
    counts: Counts = collections.Counter()
    for family in parser.text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            labels = sample.labels
            key = Key(labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
            counts[key] += int(sample.value)
    return counts


def delta(before: Counts, after: Counts, *, resources: set[str]) -> Counts:
    """The requests served between two snapshots, for `resources` only."""
    return collections.Counter(
        {key: n - before[key] for key, n in after.items() if key.resource in resources and n > before[key]}
    )
