"""A camera's rolling buffer of compressed video packets, as demuxed: what clips are cut from.

The decoder hands every demuxed packet of its video stream to ``PacketRing.packet`` (the decoder's
``packet_tap``) before decoding it; the ring copies the bytes (a few kB per packet, nothing
decoded or encoded) with their timestamps, key frame flag and capture time. It keeps:

- by time: everything from the last key frame at or before ``lookback_s`` ago, so a clip can begin
  at a key frame ``lookback_s`` back whatever the GOP (at most ``lookback_s`` plus one GOP of video);
- what a recording has pinned (not yet written);
- by bytes: at most ``max_bytes``; beyond it the oldest GOP goes even if that cuts the look-back
  or a pinned recording short (counted: ``evicted_over_cap``; the recording notes a gap).

Each demux session (a reconnect, a file's loop) has its codec parameters kept as a
``StreamSession``: an output-stream template that outlives the input container, so a clip can be
written after the source was closed and reopened. Appends come from the decode thread, reads from
the recorder's thread: one lock, held for microseconds.
"""

from __future__ import annotations

import io
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

logger = logging.getLogger(__name__)

MUX_FORMAT = "mp4"


class StreamSession:
    """Codec parameters of one demux session, held as an MP4 output-stream template.

    ``template`` belongs to a never-started in-memory MP4 container, so it stays valid after the
    input is closed; ``OutputContainer.add_stream_from_template(template, opaque=True)`` copies the
    parameters (extradata included) without opening any encoder. ``signature`` tells whether packets
    of two sessions can continue one clip (same codec, size, time base and extradata).
    """

    _ids = itertools.count(1)

    def __init__(
        self,
        template: Any,
        holder: Any,
        time_base: Fraction,
        codec: str,
        width: int,
        height: int,
        extradata: bytes = b"",
    ) -> None:
        self.id = next(self._ids)
        self.template = template
        self._holder = holder  # the in-memory container that owns the template stream
        self.time_base = time_base
        self.codec = codec
        self.width = width
        self.height = height
        self.signature = (codec, width, height, time_base, extradata)

    @classmethod
    def from_stream(cls, stream: Any) -> StreamSession:
        """A session from an input video stream (PyAV); ValueError when MP4 cannot hold its codec."""
        import av

        holder = av.open(io.BytesIO(), "w", format=MUX_FORMAT)
        template = holder.add_stream_from_template(stream, opaque=True)
        ctx = stream.codec_context
        time_base = stream.time_base or Fraction(1, 90_000)
        extradata = bytes(ctx.extradata or b"")
        return cls(template, holder, Fraction(time_base), ctx.name, int(ctx.width), int(ctx.height), extradata)

    def compatible(self, other: StreamSession) -> bool:
        return other is self or other.signature == self.signature

    def __repr__(self) -> str:
        return f"StreamSession(id={self.id}, {self.codec} {self.width}x{self.height}, tb={self.time_base})"


@dataclass(slots=True, frozen=True)
class RingPacket:
    """One compressed packet: bytes, timestamps in its session's time base, capture time (epoch s)."""

    seq: int
    data: bytes
    pts: int | None
    dts: int | None
    duration: int
    key: bool
    ts: float
    session: Any  # StreamSession (any object in tests)


class PacketRing:
    """Rolling, pinnable buffer of one camera's compressed video (thread-safe)."""

    def __init__(self, lookback_s: float, max_bytes: int, clock: Callable[[], float] = time.time) -> None:
        if lookback_s < 0 or max_bytes < 1:
            raise ValueError(f"lookback_s must be >= 0 and max_bytes >= 1, got {lookback_s}, {max_bytes}")
        self.lookback_s = float(lookback_s)
        self.max_bytes = int(max_bytes)
        self._clock = clock
        self._lock = threading.Lock()
        self._packets: deque[RingPacket] = deque()
        self._keys: deque[RingPacket] = deque()
        self._bytes = 0
        self._next_seq = 0
        self._pins: dict[Hashable, int] = {}
        self._session: Any = None
        self._last_key_ts: float | None = None
        self.unsupported: str | None = None
        self.figures = {
            "packets_in": 0,
            "bytes_in": 0,
            "evicted_over_cap": 0,
            "sessions": 0,
            "longest_gop_s": 0.0,
        }

    # ------------------------------------------------------------------ the decoder's tap
    def begin_session(self, stream: Any) -> None:
        """A new demux session (first open, reconnect, loop): keep its codec parameters."""
        try:
            session = StreamSession.from_stream(stream)
        except Exception as error:  # a codec MP4 cannot hold: no clips for this session, decoding goes on
            self.unsupported = f"{type(error).__name__}: {error}"
            logger.warning("clip buffer cannot keep this stream error=%s", self.unsupported)
            self.set_session(None)
            return
        self.unsupported = None
        self.set_session(session)

    def packet(self, packet: Any) -> None:
        """Keep one demuxed PyAV packet (called from the decode thread, before it is decoded)."""
        if self._session is None or not packet.size:
            return  # no usable session, or the demuxer's empty flush packet
        self.add(bytes(packet), packet.pts, packet.dts, packet.duration or 0, packet.is_keyframe)

    # ------------------------------------------------------------------ writing
    def set_session(self, session: Any) -> None:
        with self._lock:
            self._session = session
            if session is not None:
                self.figures["sessions"] += 1

    def add(
        self, data: bytes, pts: int | None, dts: int | None, duration: int, key: bool, ts: float | None = None
    ) -> None:
        """Append one packet of the current session, captured at ``ts`` (now when None)."""
        now = self._clock() if ts is None else ts
        with self._lock:
            packet = RingPacket(self._next_seq, data, pts, dts, duration, bool(key), now, self._session)
            self._next_seq += 1
            self._packets.append(packet)
            self._bytes += len(data)
            self.figures["packets_in"] += 1
            self.figures["bytes_in"] += len(data)
            if packet.key:
                if self._last_key_ts is not None:
                    gop = now - self._last_key_ts
                    if gop > self.figures["longest_gop_s"]:
                        self.figures["longest_gop_s"] = round(gop, 3)
                self._last_key_ts = now
                self._keys.append(packet)
            self._evict(now)

    def _evict(self, now: float) -> None:
        pin = min(self._pins.values(), default=None)
        horizon = now - self.lookback_s
        keys = self._keys
        # By time: drop what lies before the last key frame at or before the horizon (and not pinned).
        target = -1
        while target + 1 < len(keys):
            key = keys[target + 1]
            if key.ts > horizon or (pin is not None and key.seq > pin):
                break
            target += 1
        if target >= 0:
            self._drop_before(keys[target].seq)
        # By bytes: whole GOPs from the front, pinned or not.
        while self._bytes > self.max_bytes and len(self._packets) > 1:
            first = self._packets[0].seq
            following = next((k.seq for k in keys if k.seq > first), None)
            self._drop_before(following if following is not None else first + 1)
            self.figures["evicted_over_cap"] += 1

    def _drop_before(self, seq: int) -> None:
        packets, keys = self._packets, self._keys
        while packets and packets[0].seq < seq:
            self._bytes -= len(packets.popleft().data)
        while keys and keys[0].seq < seq:
            keys.popleft()

    # ------------------------------------------------------------------ reading
    def start_seq(self, at_ts: float) -> tuple[int, bool] | None:
        """Where a clip from ``at_ts`` begins: (seq of the last key frame at or before it, short).

        ``short`` is True when the buffer does not reach back that far (its oldest key frame is
        given). None when it holds no key frame yet (the clip starts at the next one).
        """
        with self._lock:
            best: RingPacket | None = None
            for key in self._keys:
                if key.ts > at_ts:
                    break
                best = key
            if best is not None:
                return best.seq, False
            if self._keys:
                return self._keys[0].seq, True
            return None

    def read(self, from_seq: int, upto_ts: float | None = None, limit: int = 10_000) -> tuple[list[RingPacket], int]:
        """Packets from ``from_seq`` on (captured at or before ``upto_ts``) and how many before them are gone."""
        with self._lock:
            packets = self._packets
            if not packets:
                return [], 0
            first = packets[0].seq
            lost = max(0, first - from_seq)
            out: list[RingPacket] = []
            for packet in itertools.islice(packets, max(from_seq - first, 0), None):
                if (upto_ts is not None and packet.ts > upto_ts) or len(out) >= limit:
                    break
                out.append(packet)
            return out, lost

    def pin(self, owner: Hashable, seq: int) -> None:
        """Keep packets from ``seq`` on (within the byte cap) until ``unpin``; pins move forward."""
        with self._lock:
            self._pins[owner] = seq

    def unpin(self, owner: Hashable) -> None:
        with self._lock:
            self._pins.pop(owner, None)

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def newest_ts(self) -> float | None:
        packets = self._packets
        return packets[-1].ts if packets else None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            packets = self._packets
            span = packets[-1].ts - packets[0].ts if packets else 0.0
            return {
                **self.figures,
                "packets": len(packets),
                "bytes": self._bytes,
                "span_s": round(span, 3),
                "keyframes": len(self._keys),
                "lookback_s": self.lookback_s,
                "max_bytes": self.max_bytes,
                "pinned": len(self._pins),
                "unsupported": self.unsupported,
            }
