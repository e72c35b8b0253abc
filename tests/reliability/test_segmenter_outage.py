"""A camera's frames while its segmenter is gone or stalled: real sockets and shared memory, no Ray.

Frames must go on to the pusher at once, without detections and marked as failed inference, while
the segmenter is gone; a segmenter that hangs may hold a frame only the stall timeout; detections
come back with the segmenter (or its replacement).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.core.test_handoff import NODE, FakePusher, FakeSegmenter, _frame, _wait
from trtseg.channel import channel_available
from trtseg.handoff import ChannelHandoff, Endpoint

pytestmark = pytest.mark.skipif(not channel_available(), reason="the channel needs Linux (memfd, abstract sockets)")

LIMIT = 3


def _feed(handoff: ChannelHandoff, first: int, count: int, every_s: float = 0.0) -> list[float]:
    """Submit ``count`` frames to infer as a decoder does; returns how long each waited for room."""
    waits = []
    for seq in range(first, first + count):
        started = time.monotonic()
        assert handoff.wait_room(LIMIT, timeout_s=10.0), f"no room for frame {seq}"
        waits.append(time.monotonic() - started)
        assert handoff.submit(_frame(seq), slots_wanted=LIMIT + 1)
        time.sleep(every_s)
    return waits


def _state(handoff: ChannelHandoff) -> str:
    return str(handoff.stats()["channel_segmenter_state"])


def _close(handoff: ChannelHandoff, *parts: Any) -> None:
    handoff.close()
    for part in parts:
        getattr(part, "close", part.listener.close)()


def test_frames_go_on_at_once_while_the_segmenter_is_gone_and_wait_again_when_it_is_back() -> None:
    pusher, segmenter = FakePusher(), FakeSegmenter(delay_s=0.3)
    current = {"segmenter": segmenter}
    handoff = ChannelHandoff("cam", pusher.endpoint, lambda: current["segmenter"].endpoint(), NODE)
    _feed(handoff, 0, 2)
    _wait(lambda: len(segmenter.seen) == 2)
    segmenter.close()  # the process died with two frames in inference
    _wait(lambda: handoff.stats()["channel_segmenter_state"] == "down")

    started = time.monotonic()
    waits = _feed(handoff, 2, 30)  # 30 frames as fast as the pusher takes them
    assert handoff.drain(5.0)
    assert time.monotonic() - started < 2.0, "frames waited for a segmenter that is gone"
    assert max(waits) < 0.5
    assert [f[0] for f in pusher.frames] == list(range(32)), "every frame reached the pusher, in order"
    assert all(f[2] is None and f[3] for f in pusher.frames), "no detections, marked as failed inference"
    stats = handoff.stats()
    assert stats["channel_infer_skipped"] == 30 and stats["channel_segmenter_outages"] == 1
    assert stats["channel_infer_failed"] == 2  # the two it held when it died

    current["segmenter"] = replacement = FakeSegmenter()  # restarted: a new address
    time.sleep(1.1)  # the next reconnect is due
    _feed(handoff, 32, 4)
    assert handoff.drain(5.0)
    assert [f[2] is not None for f in pusher.frames[32:]] == [True] * 4, "detections are back"
    assert handoff.stats()["channel_segmenter_state"] == "up"
    assert handoff.stats()["channel_segmenter"]["connects"] == 2
    _close(handoff, pusher, replacement)


def test_a_segmenter_that_cannot_be_reached_from_the_start_holds_nothing() -> None:
    pusher = FakePusher()

    def dead() -> Endpoint:
        raise RuntimeError("ActorDiedError: the actor died unexpectedly")

    handoff = ChannelHandoff("cam", pusher.endpoint, dead, NODE)
    started = time.monotonic()
    _feed(handoff, 0, 10)
    assert handoff.drain(5.0)
    assert time.monotonic() - started < 1.0
    assert len(pusher.frames) == 10 and all(f[3] for f in pusher.frames)
    stats = handoff.stats()
    assert stats["channel_segmenter_state"] == "down" and "ActorDiedError" in stats["channel_segmenter"]["last_error"]
    _close(handoff, pusher)


def test_a_stalled_segmenter_holds_frames_once_for_the_bound_then_is_probed_until_it_answers() -> None:
    pusher, segmenter = FakePusher(), FakeSegmenter(delay_s=5.0)  # alive, but hangs
    handoff = ChannelHandoff("cam", pusher.endpoint, segmenter.endpoint, NODE, detections_timeout_s=0.3)
    started = time.monotonic()
    waits = _feed(handoff, 0, 60, every_s=0.04)  # 25 fps for 2.4 s
    assert handoff.drain(5.0)
    assert [f[0] for f in pusher.frames] == list(range(60))
    assert max(waits) < 0.6, f"a frame waited {max(waits):.2f} s for room"
    assert sum(waits) < 1.0, "only the frames before the stall was noticed waited"
    assert time.monotonic() - started < 4.0
    stats = handoff.stats()
    assert stats["channel_segmenter_state"] == "stalled" and stats["channel_segmenter_outages"] == 1
    assert stats["channel_infer_timeouts"] >= 1 and stats["channel_infer_skipped"] >= 50
    asked = len(segmenter.seen)
    assert asked <= LIMIT + 4, f"a stalled segmenter was asked about {asked} frames (probes only, about 1 a second)"

    segmenter.delay_s = 0.0  # it recovers: the next probe's answer ends the stall
    _wait(lambda: bool(_feed(handoff, 100 + len(pusher.frames), 1, 0.05)) and _state(handoff) == "up")
    _feed(handoff, 1000, 3)
    assert handoff.drain(5.0)
    assert all(f[2] is not None and not f[3] for f in pusher.frames[-3:]), "frames wait for detections again"
    _close(handoff, pusher, segmenter)


def test_a_new_segmenter_releases_the_frames_waiting_on_the_old_one() -> None:
    pusher, old, new = FakePusher(), FakeSegmenter(delay_s=5.0), FakeSegmenter()
    handoff = ChannelHandoff("cam", pusher.endpoint, old.endpoint, NODE)
    _feed(handoff, 0, 2)
    _wait(lambda: len(old.seen) == 2)
    started = time.monotonic()
    handoff.reset_segmenter(new.endpoint)  # the controller hands the camera to a replacement
    _wait(lambda: len(pusher.frames) == 2, timeout_s=1.0)
    assert time.monotonic() - started < 1.0
    assert all(f[3] for f in pusher.frames)
    _feed(handoff, 2, 3)
    assert handoff.drain(5.0)
    assert all(f[2] is not None for f in pusher.frames[2:]), "the new segmenter answers"
    _close(handoff, pusher, old, new)
