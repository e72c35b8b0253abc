"""The clip wiring on a real Ray cluster: the decoder actor announces itself to its pusher, the pusher's
ClipLink turns incident records into clip_start / clip_stop calls, and the decoder actor writes the clip."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from actors.clips import ClipLink
from tests.clips.helpers import probe, render
from tests.services.ray_cluster import RayTestCluster
from trtseg.analytics.records import IncidentRecord
from trtseg.clips.layout import ClipLayout
from trtseg.config import CameraConfig
from trtseg.config.clips import ClipConfig, EvidenceConfig

pytestmark = [pytest.mark.slow, pytest.mark.ray]


class Camera(CameraConfig):
    clips: ClipConfig = Field(default_factory=ClipConfig)


def _pusher_class() -> Any:
    import ray

    @ray.remote
    class FakePusher:
        """The part of PusherActor clips need: set_decoder, and records through a ClipLink."""

        def __init__(self, config: ClipConfig) -> None:
            self.link = ClipLink(config, "cam1")

        def set_decoder(self, decoder: Any) -> None:
            self.link.set_decoder(decoder)

        def process(self, frame: Any, detections: Any = None) -> float:
            return 0.0

        def send(self, records: list[IncidentRecord]) -> dict[str, Any]:
            self.link.send(records)
            self.link.reap(wait_s=5.0)
            return self.link.stats()

    return FakePusher


def _record(status: str, at: float, **fields: Any) -> IncidentRecord:
    when = datetime.fromtimestamp(at, tz=UTC)
    return IncidentRecord(
        incident_id="inc1", site="s", camera_id="cam1", rule="r", rule_kind="presence", severity="alert",
        status=status, result="danger", started_at=when, last_seen_at=when, **fields,
    )  # fmt: skip


def test_pusher_asks_the_decoder_actor_for_a_clip(ray_local: RayTestCluster, media_dir: Path, tmp_path: Path) -> None:
    import ray

    from actors.decoder import DecoderActor

    source = render(media_dir / "clips_ray.mp4", seconds=3.0, size=(320, 180))
    clips = ClipConfig(pre_capture_s=1.0, post_capture_s=0.5)
    camera = Camera(id="cam1", source=source.name, loop=True, inference_fps=1.0, clips=clips)
    evidence = EvidenceConfig(clip_dir=tmp_path / "clips")
    pusher = _pusher_class().remote(clips)
    decoder = DecoderActor.remote(camera, None, pusher, 2, media_dir, "object_store", evidence)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ray.get(pusher.send.remote([]))["decoder_known"]:
            time.sleep(0.2)
        time.sleep(2.0)
        opened = time.time()
        sent = ray.get(pusher.send.remote([_record("open", opened, keyframes={"open": {"raw": b"j"}})]))
        assert sent["sent"] == 1 and sent["errors"] == 0, sent
        time.sleep(1.5)
        closed = time.time()
        ray.get(pusher.send.remote([_record("closed", opened, ended_at=datetime.fromtimestamp(closed, tz=UTC))]))
        stats: dict[str, Any] = {}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            stats = ray.get(decoder.clip_stats.remote())
            if stats["clips"]:
                break
            time.sleep(0.2)
        assert stats["clips"] == 1 and stats["failures"] == 0, stats
        summary = ray.get(decoder.stats.remote())["clips"]
        assert summary["ok"] and summary["clips"] == 1
    finally:
        ray.get(decoder.stop.remote(), timeout=30)
        ray.kill(decoder)
        ray.kill(pusher)
    pointer = ClipLayout(evidence.clip_dir).read_pointer("inc1")
    assert pointer is not None and pointer["status"] == "ready"
    seen = probe(ClipLayout(evidence.clip_dir).resolve(pointer["clip"]))
    assert seen["frames"][0][1] and seen["duration"] >= (closed + 0.5) - (opened - 1.0) - 0.3
