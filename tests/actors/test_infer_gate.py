"""The object-store route's gate to its segmenter, and how the supervisor reads a restarting actor.

Plain: the gate is given the calls' outcomes as Ray would report them (pending, done, the actor's
error) and a clock; no cluster is started.
"""

from __future__ import annotations

from typing import Any

import ray

from actors.infer_gate import InferGate
from actors.supervisor import is_dead, is_restarting


class Calls:
    """Outcomes by reference: None while pending, False when it answered, else the error it raised."""

    def __init__(self) -> None:
        self.outcomes: dict[str, BaseException | bool | None] = {}
        self.pings = 0

    def poll(self, ref: Any) -> BaseException | bool | None:
        return self.outcomes.get(ref)

    def ping(self) -> str:
        self.pings += 1
        ref = f"ping-{self.pings}"
        self.outcomes[ref] = None
        return ref


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _gate(calls: Calls, clock: Clock) -> InferGate:
    return InferGate(calls.ping, calls.poll, stall_s=2.0, clock=clock)


def test_a_dead_segmenter_is_skipped_until_a_ping_answers() -> None:
    calls, clock = Calls(), Clock()
    gate = _gate(calls, clock)
    assert gate.allows()
    gate.sent("infer-1")
    calls.outcomes["infer-1"] = ray.exceptions.ActorDiedError()
    assert not gate.allows() and gate.state == "down" and gate.outages == 1
    clock.now += 1.1  # probes once a second
    assert not gate.allows() and calls.pings == 1
    clock.now += 0.5
    assert not gate.allows(), "still restarting: the ping is pending"
    calls.outcomes["ping-1"] = False
    assert gate.allows() and gate.state == "up"
    assert gate.skipped == 3


def test_a_ping_that_fails_is_tried_again() -> None:
    calls, clock = Calls(), Clock()
    gate = _gate(calls, clock)
    gate.sent("infer-1")
    calls.outcomes["infer-1"] = ray.exceptions.ActorDiedError()
    assert not gate.allows()
    clock.now += 1.1
    assert not gate.allows() and calls.pings == 1
    calls.outcomes["ping-1"] = ray.exceptions.ActorDiedError()
    assert not gate.allows() and calls.pings == 1
    clock.now += 1.1
    assert not gate.allows() and calls.pings == 2


def test_a_stalled_call_stops_asking_until_it_answers() -> None:
    calls, clock = Calls(), Clock()
    gate = _gate(calls, clock)
    gate.sent("infer-1")
    clock.now += 1.0
    assert gate.allows(), "1 s is no stall"
    gate.sent("infer-2")
    clock.now += 1.5
    assert not gate.allows() and gate.state == "stalled"
    assert calls.pings == 0, "the overdue call itself is the probe"
    calls.outcomes["infer-1"] = False
    assert gate.allows() and gate.state == "up"


def test_an_engine_error_is_an_answer_not_an_outage() -> None:
    calls, clock = Calls(), Clock()
    gate = _gate(calls, clock)
    gate.sent("infer-1")
    calls.outcomes["infer-1"] = ValueError("bad picture")
    assert gate.allows() and gate.outages == 0


def test_restarting_is_told_apart_from_dead() -> None:
    restarting = ray.exceptions.ActorUnavailableError("The actor is restarting", b"\0" * 16)
    assert is_restarting(restarting) and not is_dead(restarting)
    dead = ray.exceptions.ActorDiedError()
    assert is_dead(dead) and not is_restarting(dead)
    assert not is_restarting(TimeoutError("segmenter did not answer in 5 s"))
