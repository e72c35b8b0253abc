"""The demo's shipped rule against its sample video: the truth of the scene, then the real model.

The safe cable (the bay by the wall) must lie inside ``building_safe_zone`` and the flying lead at
least 40 % outside it in every frame, or the demo would show neither verdict; and the engine plus
CameraAnalytics must turn the clip into one danger alert and one safe detection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets.video import SampleScene
from trtseg.analytics.camera import CameraAnalytics
from trtseg.analytics.geometry import ZoneRaster
from trtseg.config import load_config
from trtseg.frames import Frame

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def demo_camera():  # type: ignore[no-untyped-def]
    return load_config(ROOT / "conf" / "demo.yaml", environ={}).cameras[0]


@pytest.fixture(scope="module")
def scene() -> SampleScene:
    return SampleScene(20.0, 25, (1280, 720), 0, charging_bay=True)


def test_the_sample_scene_has_one_safe_and_one_dangerous_cable(demo_camera, scene) -> None:  # type: ignore[no-untyped-def]
    zone = demo_camera.analytics.zones[0]
    raster = ZoneRaster(zone.name, zone.points).mask((720, 1280))
    for index in range(0, scene.n_frames, 50):
        cables = [i for i in scene.render(index, labels=True).instances or [] if i.name == "charging_cable"]
        outside = sorted(1.0 - np.count_nonzero(c.mask & raster) / np.count_nonzero(c.mask) for c in cables)
        assert len(outside) == 2, f"frame {index}: {len(outside)} cables"
        assert outside[0] <= 0.1 and outside[1] >= 0.5, f"frame {index}: outside shares {outside}"


def test_the_model_and_the_rule_raise_danger_and_safe(demo_camera, scene) -> None:  # type: ignore[no-untyped-def]
    from engines.engine import SegmentationEngine
    from trtseg.config import EngineConfig

    engine = SegmentationEngine(EngineConfig(model=ROOT / "models" / "trtseg-cable-n.onnx")).load()
    analytics = CameraAnalytics(demo_camera, engine.names)
    records = []
    for index in range(0, 80, 5):  # 3.2 s at the demo's 5 inferred frames a second
        image = scene.render(index).image
        (found,) = engine.predict([image], conf=demo_camera.confidence, classes=demo_camera.classes)
        records += analytics.update(Frame("demo-1", index, T0 + index / 25, image), found)
    opened = {r.incident_id: r for r in records if "open" in r.keyframes}
    verdicts = sorted((r.severity, r.result.split(":")[0]) for r in opened.values())
    assert verdicts == [("alert", "danger"), ("detection", "safe")]
