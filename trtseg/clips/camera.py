"""CameraClips: one camera's packet ring and clip recorder, sized from its configuration.

The decoder actor owns one per camera (``for_camera``) and attaches it to its decoder, whose
demux loop then hands every packet to the ring (``CameraDecoder.packet_tap``). How far back the
ring reaches and how long the recorder holds packets back follow from the camera's rules:

- an incident opens ``min_duration_s`` after its condition first held, and its clip starts
  ``pre_capture_s`` before that: the ring keeps ``pre_capture_s`` + the longest ``min_duration_s`` +
  a margin for the request to arrive (plus one GOP, as it cuts at key frames);
- an incident's close is known ``close_after_s`` after it was last seen, and its clip ends
  ``post_capture_s`` after it was last seen: while incidents are open the recorder writes only
  packets older than ``close_after_s - post_capture_s`` + a margin, so the end is cut where it belongs.

Both are capped (``MAX_EXTRA_S``); the ring's byte cap bounds the memory whatever the settings.
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import Any

from trtseg.clips.layout import ClipInfo
from trtseg.clips.packet_ring import PacketRing
from trtseg.clips.recorder import ClipRecorder
from trtseg.config.camera import CameraConfig
from trtseg.config.clips import ClipConfig, EvidenceConfig

logger = logging.getLogger(__name__)

REQUEST_MARGIN_S = 2.0  # an incident's opening reaches the decoder actor well within this
MAX_EXTRA_S = 30.0
RECENT_CLIPS = 20


def ring_lookback_s(camera: CameraConfig, clips: ClipConfig) -> float:
    """How far back the ring must reach (before its GOP) for an incident's pre-capture."""
    inertia = max((rule.min_duration_s for rule in camera.analytics.rules), default=0.0)
    return clips.pre_capture_s + min(inertia, MAX_EXTRA_S) + REQUEST_MARGIN_S


def hold_s(camera: CameraConfig, clips: ClipConfig) -> float:
    """How long the recorder holds packets back while incidents are open."""
    close_after = max((rule.close_after_s for rule in camera.analytics.rules), default=0.0)
    return min(max(close_after - clips.post_capture_s, 0.0), MAX_EXTRA_S) + REQUEST_MARGIN_S


class CameraClips:
    """Ring + recorder of one camera; ``start``/``stop``/``stats`` are what the decoder actor exposes."""

    def __init__(
        self,
        camera_id: str,
        site: str,
        config: ClipConfig,
        clip_dir: Path | str,
        lookback_s: float | None = None,
        hold: float = REQUEST_MARGIN_S,
        start_thread: bool = True,
    ) -> None:
        self.camera_id = camera_id
        self.config = config
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_CLIPS)
        lookback = config.pre_capture_s + REQUEST_MARGIN_S if lookback_s is None else lookback_s
        self.ring = PacketRing(lookback, int(config.buffer_mb * 1024 * 1024))
        self.recorder = ClipRecorder(
            self.ring,
            clip_dir,
            camera_id,
            site,
            pre_capture_s=config.pre_capture_s,
            post_capture_s=config.post_capture_s,
            max_clip_s=config.max_clip_s,
            hold_s=hold,
            on_clip=self._clip_done,
            start_thread=start_thread,
        )
        self.recorder.recover()  # clips a previous process of this camera left unfinished

    @classmethod
    def for_camera(cls, camera: CameraConfig, evidence: EvidenceConfig | None) -> CameraClips | None:
        """The camera's clips, or None when clips are off (no evidence settings, or the camera's own)."""
        config: ClipConfig = camera.clips  # type: ignore[attr-defined]
        if evidence is None or not config.enabled:
            return None
        return cls(
            camera.id,
            camera.site,
            config,
            evidence.clip_dir,
            lookback_s=ring_lookback_s(camera, config),
            hold=hold_s(camera, config),
        )

    def attach(self, decoder: Any) -> bool:
        """Tap ``decoder``'s demuxed packets (CPU and NVDEC decoders demux alike, through PyAV)."""
        decoder.packet_tap = self.ring
        return True

    def start(self, incident_id: str, opened_ts: float) -> str | None:
        return self.recorder.start(incident_id, opened_ts)

    def stop(self, incident_id: str, closed_ts: float) -> bool:
        return self.recorder.stop(incident_id, closed_ts)

    def stats(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "unsupported": self.ring.unsupported,  # a codec MP4 cannot hold: no clips, decoding goes on
            **self.recorder.stats(),
            "buffer": self.ring.stats(),
            "hold_s": self.recorder.hold_s,
            "recent": list(self.recent)[-5:],
        }

    def close(self) -> ClipInfo | None:
        return self.recorder.close()

    def _clip_done(self, info: ClipInfo) -> None:
        self.recent.append(info.to_dict())
