"""How many workers a pool should have: a pure function of its backlog, its policy and
its recent history. No I/O here; autoscale.py feeds it fresh numbers and acts on it.

The rules, each for a reason:
- need = ceil((queued + running) / tasksPerReplica), clamped to min..max: every waiting
  or running attempt gets a slot, and a pool never leaves the range its owner set.
- Up at once, at most `maxScaleUpStep` replicas per decision: work that waits costs more
  than an idle pod, but a step bound keeps one spike from stampeding a cluster.
- Down only to the highest need seen during the last `cooldownSeconds` (the stabilisation
  window of the HPA): a bursty load then holds its size instead of flapping.
- Never below the pods that run a task: scale-down removes idle pods only (autoscale.py
  makes them the ones the ReplicaSet deletes), so `busy` is a floor.
- To zero only when nothing is queued or running (ceil of a positive number is >= 1).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class Direction(enum.StrEnum):
    UP = "up"  # more replicas
    DOWN = "down"  # fewer replicas (idle pods only)
    NONE = "none"  # keep the current size


@dataclass(frozen=True)
class Policy:
    min_replicas: int
    max_replicas: int
    tasks_per_replica: int
    cooldown_seconds: float
    max_scale_up_step: int
    paused: bool = False


@dataclass(frozen=True)
class Observation:
    queued: int  # messages waiting in the pool's queue (every priority list)
    running: int  # attempts held by workers of the pool (claimed or prefetched)
    replicas: int  # the Deployment's spec.replicas now
    busy_pods: int  # pods of the Deployment running at least one attempt
    now: float  # seconds, any monotonic clock


@dataclass(frozen=True)
class Decision:
    desired: int
    direction: Direction
    reason: str
    need: int  # what the load alone asks for, before cooldown and the busy floor


# Recommendations (time, need) inside the cooldown window, oldest first.
History = tuple[tuple[float, int], ...]


def need(policy: Policy, *, queued: int, running: int) -> int:
    """Replicas the load asks for, clamped to min..max."""
    per = max(1, policy.tasks_per_replica)
    raw = math.ceil(max(0, queued + running) / per)
    return max(policy.min_replicas, min(policy.max_replicas, raw))


def decide(policy: Policy, obs: Observation, history: History) -> tuple[Decision, History]:
    """The decision for `obs`, and the history to pass to the next call."""
    wanted = need(policy, queued=obs.queued, running=obs.running)
    window_start = obs.now - policy.cooldown_seconds
    history = (*(h for h in history if h[0] > window_start), (obs.now, wanted))
    load = f"{obs.queued} queued + {obs.running} running at {policy.tasks_per_replica} per replica"

    if policy.paused:
        return Decision(obs.replicas, Direction.NONE, "paused", wanted), history
    if wanted > obs.replicas:
        step = max(1, policy.max_scale_up_step)
        desired = min(wanted, obs.replicas + step)
        capped = " (step-limited)" if desired < wanted else ""
        return Decision(desired, Direction.UP, f"{load} need {wanted}{capped}", wanted), history

    # A lowered maxReplicas applies at once: older, higher needs are clamped too.
    stabilised = min(policy.max_replicas, max(n for _, n in history))
    desired = min(obs.replicas, max(stabilised, obs.busy_pods))
    if desired < obs.replicas:
        return Decision(desired, Direction.DOWN, f"{load} need {wanted}; idle pods removed", wanted), history
    if wanted < obs.replicas:
        held = (
            f"held by the {policy.cooldown_seconds:g} s cooldown"
            if stabilised >= obs.replicas
            else f"{obs.busy_pods} busy pods kept"
        )
        return Decision(obs.replicas, Direction.NONE, f"{load} need {wanted}; {held}", wanted), history
    return Decision(obs.replicas, Direction.NONE, f"{load} need {wanted}", wanted), history
