"""The dashboard in a real headless Chromium, served by the real Ray Serve app over the real pipeline.

The page loads without console errors, a camera's live MJPEG view moves, and an event written to the
event database shows up in the list with its key frame thumbnail.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.actors.system_helpers import MODEL, camera, system_config, wait_for
from tests.api.conftest import make_record
from tests.services.ports import free_port
from tests.services.ray_cluster import RayTestCluster
from tests.services.streaming import make_test_clip
from trtseg.config import SystemConfig
from trtseg.db import EventStore
from trtseg.keyframes import KeyframeStore

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.ray,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing"),
    pytest.mark.skipif(not Path("/usr/bin/chromium").is_file(), reason="/usr/bin/chromium is missing"),
]

NAMESPACE = "trtseg-test-browser"
TOKEN = "browser-token"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def served(ray_local: RayTestCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemConfig]:
    from ray import serve

    from actors.launch import running_system
    from deployments.app import deploy

    media = tmp_path_factory.mktemp("browser-media")
    make_test_clip(media / "clip.mp4", seconds=2.0, fps=10, size=(320, 240))
    tmp = tmp_path_factory.mktemp("browser-system")
    config = system_config(tmp, media, NAMESPACE, [camera("cam1", media / "clip.mp4", site="block-7", name="Yard")])
    config.api.token = TOKEN  # type: ignore[assignment]
    config.api.token_for_reads = True
    config.api.port = free_port()
    with running_system(config, start_timeout_s=240):
        try:
            deploy(config)
            yield config
        finally:
            serve.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def test_dashboard(served: SystemConfig, browser: Any, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{served.api.port}/"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(f"localStorage.setItem('trtseg.token', '{TOKEN}')")
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        page.goto(base, wait_until="domcontentloaded", timeout=30_000)
        image = page.locator('img[data-camera="cam1"]')
        image.wait_for(timeout=30_000)
        page.wait_for_function(
            "() => { const i = document.querySelector('img[data-camera=\"cam1\"]'); return i && i.naturalWidth > 0; }",
            timeout=90_000,
        )
        assert page.locator("#camera-cam1 .badge").inner_text(timeout=10_000) in ("live", "connecting")
        first = image.screenshot()
        assert wait_for(lambda: image.screenshot() != first, 30, "the live view to change", interval_s=1.0)

        frame = httpx.get(f"{base}cameras/cam1/frame.jpg", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"
        store = EventStore(served.sink.database_url)
        record = make_record(site="block-7", camera_id="cam1", started=datetime.now(UTC), status="open")
        paths = KeyframeStore(served.sink.keyframe_dir).save(
            "block-7", "cam1", record.started_at.date(), record.event_id, {"annotated": frame.content}
        )
        record.keyframe_annotated_path = paths["annotated"]
        store.upsert([record])
        store.close()
        row = page.locator(f'tr[data-event="{record.event_id}"]')
        row.wait_for(timeout=20_000)
        thumb = row.locator("img.thumb")
        page.wait_for_function(
            "(id) => { const i = document.querySelector(`tr[data-event='${id}'] img.thumb`); "
            "return i && i.complete && i.naturalWidth > 0; }",
            arg=record.event_id,
            timeout=20_000,
        )
        assert thumb.get_attribute("src").startswith(f"events/{record.event_id}/keyframe")
        page.locator("#f-class").fill("no_such_class")
        page.locator(f'tr[data-event="{record.event_id}"]').wait_for(state="detached", timeout=10_000)
        page.locator("#f-class").fill("")
        row.wait_for(timeout=10_000)
        assert page.locator("#counts tbody tr").count() >= 1
        assert page.locator("#ready").inner_text() in ("ready", "not ready")
        time.sleep(1.0)
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000
        if os.environ.get("TRTSEG_DASHBOARD_SCREENSHOT"):  # refresh docs/img/dashboard.png for the README
            shutil.copy(tmp_path / "dashboard.png", os.environ["TRTSEG_DASHBOARD_SCREENSHOT"])
        assert not problems, problems
    finally:
        context.close()
