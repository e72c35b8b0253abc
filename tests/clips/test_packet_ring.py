"""PacketRing: bounded by look-back plus one GOP and by bytes, pins, key frame search, sessions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clips.helpers import FPS, Clock, demux, render
from trtseg.clips.packet_ring import PacketRing, StreamSession


def _fill(ring: PacketRing, clock: Clock, seconds: float, gop: int = 25, size: int = 1000) -> None:
    """Synthetic packets: one per frame, a key frame every ``gop`` frames, timestamps in 1/25 s."""
    start = ring.next_seq
    for i in range(start, start + round(seconds * FPS)):
        clock.now += 1.0 / FPS
        ring.add(b"x" * size, i, i, 1, i % gop == 0, ts=clock.now)


def test_keeps_lookback_plus_one_gop_from_a_key_frame() -> None:
    clock = Clock()
    ring = PacketRing(lookback_s=2.0, max_bytes=10**9, clock=clock)
    ring.set_session(object())
    _fill(ring, clock, 20.0, gop=25)  # a key frame every second
    stats = ring.stats()
    packets, _ = ring.read(0)
    assert packets[0].key, "the buffer always begins at a key frame"
    assert clock.now - packets[0].ts >= 2.0
    assert 2.0 <= stats["span_s"] <= 2.0 + 1.0 + 1e-6, stats
    assert stats["longest_gop_s"] == pytest.approx(1.0, abs=1e-6)
    assert stats["bytes"] == 1000 * stats["packets"]


def test_a_long_gop_is_kept_whole() -> None:
    """A 4 s GOP with a 2 s look-back: the buffer reaches back to the key frame 4-6 s ago."""
    clock = Clock()
    ring = PacketRing(lookback_s=2.0, max_bytes=10**9, clock=clock)
    ring.set_session(object())
    _fill(ring, clock, 19.0, gop=100)
    found = ring.start_seq(clock.now - 2.0)
    assert found is not None
    seq, short = found
    assert not short and seq % 100 == 0
    packets, _ = ring.read(0)
    assert packets[0].key and 2.0 <= clock.now - packets[0].ts <= 6.0 + 1e-6
    assert ring.stats()["longest_gop_s"] == pytest.approx(4.0, abs=1e-6)


def test_byte_cap_drops_whole_gops_and_counts() -> None:
    clock = Clock()
    ring = PacketRing(lookback_s=60.0, max_bytes=30_000, clock=clock)
    ring.set_session(object())
    _fill(ring, clock, 10.0, gop=10, size=1000)  # 250 kB offered, 30 kB allowed
    stats = ring.stats()
    assert stats["bytes"] <= 30_000 and stats["evicted_over_cap"] > 0
    packets, lost = ring.read(0)
    assert packets[0].key and lost > 0


def test_pins_hold_packets_beyond_the_lookback_but_not_the_cap() -> None:
    clock = Clock()
    ring = PacketRing(lookback_s=1.0, max_bytes=10**9, clock=clock)
    ring.set_session(object())
    _fill(ring, clock, 2.0)
    ring.pin("rec", 0)
    _fill(ring, clock, 8.0)
    packets, lost = ring.read(0)
    assert lost == 0 and packets[0].seq == 0, "a pinned recording loses nothing"
    ring.pin("rec", 150)  # written up to here
    _fill(ring, clock, 0.04)
    packets, lost = ring.read(150)
    assert lost == 0 and ring.read(0)[1] > 0, "a pin that moves on frees what lies before it"
    ring.unpin("rec")
    _fill(ring, clock, 0.04)
    assert ring.stats()["span_s"] <= 2.0 + 1e-6

    capped = PacketRing(lookback_s=1.0, max_bytes=20_000, clock=clock)
    capped.set_session(object())
    capped.pin("rec", 0)
    _fill(capped, clock, 4.0)
    assert capped.read(0)[1] > 0 and capped.stats()["evicted_over_cap"] > 0


def test_start_seq_short_and_without_key_frames() -> None:
    clock = Clock()
    ring = PacketRing(lookback_s=2.0, max_bytes=10**9, clock=clock)
    ring.set_session(object())
    assert ring.start_seq(clock.now) is None
    ring.add(b"p", 0, 0, 1, False, ts=clock.now)
    assert ring.start_seq(clock.now) is None, "no key frame yet: a clip waits for the next one"
    _fill(ring, clock, 5.0)
    oldest, short = ring.start_seq(clock.now - 100.0)  # type: ignore[misc]
    assert short and ring.read(oldest)[0][0].key
    seq, short = ring.start_seq(clock.now - 1.5)  # type: ignore[misc]
    packet = ring.read(seq)[0][0]
    assert not short and packet.key and packet.ts <= clock.now - 1.5


def test_read_stops_at_upto_and_limit() -> None:
    clock = Clock()
    ring = PacketRing(lookback_s=10.0, max_bytes=10**9, clock=clock)
    ring.set_session(object())
    _fill(ring, clock, 2.0)
    packets, _ = ring.read(0, upto_ts=clock.now - 1.0)
    assert packets and all(p.ts <= clock.now - 1.0 for p in packets) and len(packets) < 50
    assert len(ring.read(0, limit=7)[0]) == 7


def test_sessions_from_a_real_stream(tmp_path: Path) -> None:
    clip = demux(render(tmp_path / "src.mp4", seconds=1.0))
    try:
        ring = PacketRing(lookback_s=5.0, max_bytes=10**9)
        ring.begin_session(clip.stream)
        first = ring._session
        assert isinstance(first, StreamSession) and first.codec == "h264" and first.width == 320
        ring.begin_session(clip.stream)
        assert ring._session is not first and ring._session.compatible(first)
        clip.container.seek(0)
        for packet in clip.container.demux(clip.stream):  # the decoder's tap: PyAV packets as demuxed
            ring.packet(packet)
        assert ring.stats()["packets"] == len(clip.packets) and ring.stats()["sessions"] == 2
    finally:
        clip.container.close()


def test_a_stream_mp4_cannot_hold_is_refused_and_ignored() -> None:
    ring = PacketRing(lookback_s=5.0, max_bytes=10**9)
    ring.begin_session(object())  # not a stream at all
    assert ring.unsupported
    ring.add(b"x", 0, 0, 1, True)  # tests may still append; the tap drops packets without a session

    class _Packet:
        size, pts, dts, duration, is_keyframe = 1, 0, 0, 1, True

        def __bytes__(self) -> bytes:
            return b"x"

    ring.packet(_Packet())
    assert ring.stats()["packets"] == 1


def test_refuses_bad_bounds() -> None:
    with pytest.raises(ValueError):
        PacketRing(lookback_s=-1, max_bytes=10)
    with pytest.raises(ValueError):
        PacketRing(lookback_s=1, max_bytes=0)
