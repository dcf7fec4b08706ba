"""The autoscaler's decision (pure), table-driven.

Covers: need = ceil((queued + running) / tasksPerReplica) clamped to min..max; immediate,
step-bounded scale-up; scale-down held for the cooldown (no flapping under bursts);
never below the busy pods; to zero only when nothing is queued or running; paused;
a lowered maxReplicas.
"""

from __future__ import annotations

import pytest

from longtask_operator import scaling

D = scaling.Direction


def policy(**overrides: object) -> scaling.Policy:
    base: dict[str, object] = {
        "min_replicas": 0,
        "max_replicas": 5,
        "tasks_per_replica": 4,
        "cooldown_seconds": 30,
        "max_scale_up_step": 10,
    }
    return scaling.Policy(**{**base, **overrides})  # type: ignore[arg-type]


def obs(queued: int = 0, running: int = 0, replicas: int = 0, busy: int = 0, now: float = 1000.0):
    return scaling.Observation(queued=queued, running=running, replicas=replicas, busy_pods=busy, now=now)


@pytest.mark.parametrize(
    ("pol", "ob", "desired", "direction"),
    [
        (policy(), obs(40), 5, D.UP),  # ceil(40/4) = 10, clamped to max 5
        (policy(), obs(1), 1, D.UP),  # one task needs one replica
        (policy(), obs(4), 1, D.UP),
        (policy(), obs(5), 2, D.UP),
        (policy(), obs(3, 2, replicas=1), 2, D.UP),  # queued and running both count
        (policy(), obs(0, 0, replicas=0), 0, D.NONE),  # idle pool at zero stays there
        (policy(min_replicas=1), obs(0, 0, replicas=0), 1, D.UP),  # min is honoured
        (policy(max_scale_up_step=2), obs(40, replicas=1), 3, D.UP),  # step bound
        (policy(max_scale_up_step=0), obs(40, replicas=1), 2, D.UP),  # a step of 0 still moves by 1
        (policy(tasks_per_replica=0), obs(3), 3, D.UP),  # a nonsense 0 counts as 1
        (policy(paused=True), obs(40, replicas=1), 1, D.NONE),
        (policy(max_replicas=2), obs(0, 0, replicas=4), 0, D.DOWN),  # lowered max, all idle
        (policy(max_replicas=2), obs(0, 8, replicas=4, busy=3), 3, D.DOWN),  # never below busy
    ],
)
def test_single_decision(pol, ob, desired, direction):
    decision, _ = scaling.decide(pol, ob, ())
    assert (decision.desired, decision.direction) == (desired, direction)


def test_scale_down_waits_for_the_cooldown_then_removes_idle_pods():
    pol = policy(cooldown_seconds=30)
    d, h = scaling.decide(pol, obs(40, replicas=0, now=0), ())
    assert (d.desired, d.direction) == (5, D.UP)
    # The queue drained at t=10: the need drops to zero but the window still holds 5.
    d, h = scaling.decide(pol, obs(0, 0, replicas=5, now=10), h)
    assert (d.desired, d.direction) == (5, D.NONE)
    assert "cooldown" in d.reason
    d, h = scaling.decide(pol, obs(0, 0, replicas=5, now=29.9), h)
    assert d.direction is D.NONE
    d, h = scaling.decide(pol, obs(0, 0, replicas=5, now=30.1), h)
    assert (d.desired, d.direction) == (0, D.DOWN)


def test_busy_pods_are_a_floor():
    pol = policy(cooldown_seconds=0)
    d, _ = scaling.decide(pol, obs(0, 2, replicas=5, busy=2, now=1), ())
    assert (d.desired, d.direction) == (2, D.DOWN)
    d, _ = scaling.decide(pol, obs(0, 5, replicas=3, busy=3, now=1), ())
    # 5 running at 4 per replica need 2, but 3 pods are busy: nothing is removed.
    assert (d.desired, d.direction) == (3, D.NONE)
    assert "3 busy pods kept" in d.reason


def test_zero_only_when_nothing_is_queued_or_running():
    pol = policy(cooldown_seconds=0)
    d, _ = scaling.decide(pol, obs(1, 0, replicas=2, now=1), ())
    assert d.desired == 1
    d, _ = scaling.decide(pol, obs(0, 1, replicas=2, busy=1, now=1), ())
    assert d.desired == 1
    d, _ = scaling.decide(pol, obs(0, 0, replicas=2, now=1), ())
    assert d.desired == 0


def test_bursts_every_few_seconds_do_not_flap():
    """Bursts of 12 tasks every 5 s that drain in 2 s: one scale-up, then steady."""
    pol = policy(cooldown_seconds=15)
    history: scaling.History = ()
    replicas, changes = 0, 0
    for second in range(60):
        queued = 12 if second % 5 == 0 else (4 if second % 5 == 1 else 0)
        d, history = scaling.decide(pol, obs(queued, 0, replicas=replicas, now=float(second)), history)
        if d.desired != replicas:
            changes += 1
            replicas = d.desired
    assert changes == 1
    assert replicas == 3


def test_history_keeps_only_the_window():
    pol = policy(cooldown_seconds=10)
    _, h = scaling.decide(pol, obs(40, now=0), ())
    _, h = scaling.decide(pol, obs(0, replicas=5, now=5), h)
    _, h = scaling.decide(pol, obs(0, replicas=5, now=20), h)
    assert [t for t, _ in h] == [20]
