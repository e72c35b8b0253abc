"""The dashboard in a real headless Chromium (Playwright), served by the real Ray Serve app over the real
pipeline, acting as an operator and as a viewer.

- the live grid loads without console errors (a CSP violation is one) and a camera's live view moves;
- an event written to the event database shows up in the events list with its key frame;
- the operator draws a zone by clicking on the camera's picture, drags a point, adds a rule and saves it
  (checked through the API); an invalid shape shows the API's 422 message next to the form;
- an incident of that zone and rule (written to the incident table) appears in the incident list; the
  operator opens it, sees the key frame and acknowledges it, then acknowledges two more in bulk;
- adding a camera with a bad URL shows the API's validation error next to the source field;
- a viewer finds no edit controls, and the API answers 403 to its changes;
- the pages work at phone width without horizontal scrolling.

Screenshots of each page land in tmp_path; with TRTSEG_DASHBOARD_SCREENSHOTS=<dir> (docs/img) they are
copied there for the README.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.actors.system_helpers import MODEL, camera, system_config, wait_for
from tests.api.conftest import make_record
from tests.db.incident_helpers import incident
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
ADMIN = "browser-admin-token"
VIEWER = "browser-viewer-token"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
AS_VIEWER = {"Authorization": f"Bearer {VIEWER}"}
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
SHOTS: dict[str, Path] = {}


@pytest.fixture(scope="module")
def served(ray_local: RayTestCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemConfig]:
    from ray import serve

    from actors.launch import running_system
    from deployments.app import deploy

    media = tmp_path_factory.mktemp("browser-media")
    make_test_clip(media / "clip.mp4", seconds=2.0, fps=10, size=(320, 240))
    tmp = tmp_path_factory.mktemp("browser-system")
    config = system_config(tmp, media, NAMESPACE, [camera("cam1", media / "clip.mp4", site="block-7", name="Yard")])
    config.api.admin_token = ADMIN  # type: ignore[assignment]
    config.api.viewer_token = VIEWER  # type: ignore[assignment]
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


@pytest.fixture(scope="module", autouse=True)
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    target = os.environ.get("TRTSEG_DASHBOARD_SCREENSHOTS")  # e.g. docs/img: refresh the README's pictures
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for name, path in SHOTS.items():
            shutil.copy(path, Path(target) / name)


def _base(served: SystemConfig) -> str:
    return f"http://127.0.0.1:{served.api.port}/"


class Page:
    """A browser page with a token in localStorage that collects console errors."""

    def __init__(self, browser: Any, token: str, width: int = 1280, height: int = 900) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.context.add_init_script(f"localStorage.setItem('trtseg.token', '{token}')")
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda msg: self.problems.append(msg.text) if msg.type == "error" else None)
        self.page.on("pageerror", lambda error: self.problems.append(str(error)))

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *_: Any) -> None:
        self.context.close()

    def shot(self, folder: Path, name: str, full_page: bool = True) -> None:
        time.sleep(0.5)
        path = folder / name
        self.page.screenshot(path=str(path), full_page=full_page)
        assert path.stat().st_size > 5_000
        SHOTS[name] = path


def _loaded(page: Any, selector: str, timeout: int = 30_000) -> None:
    page.wait_for_function(
        "(s) => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; }",
        arg=selector,
        timeout=timeout,
    )


def test_dashboard(served: SystemConfig, browser: Any, screenshots: Path) -> None:
    base = _base(served)
    with Page(browser, ADMIN) as p:
        page = p.page
        response = page.goto(base, wait_until="domcontentloaded", timeout=30_000)
        assert "script-src 'self'" in response.headers["content-security-policy"]
        image = page.locator('img[data-camera="cam1"]')
        image.wait_for(timeout=30_000)
        _loaded(page, 'img[data-camera="cam1"]', timeout=90_000)
        assert "sig=" in image.get_attribute("src") and ADMIN not in image.get_attribute("src")
        assert page.locator("#camera-cam1 .badge").inner_text(timeout=10_000) in ("live", "connecting")
        assert page.locator("#role").inner_text() == "role: admin"
        first = image.screenshot()
        assert wait_for(lambda: image.screenshot() != first, 30, "the live view to change", interval_s=1.0)
        p.shot(screenshots, "dashboard-live.png")
        shutil.copy(SHOTS["dashboard-live.png"], screenshots / "dashboard.png")
        SHOTS["dashboard.png"] = screenshots / "dashboard.png"

        frame = httpx.get(f"{base}cameras/cam1/frame.jpg", headers=AS_ADMIN, timeout=10)
        assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"
        store = EventStore(served.sink.database_url)
        record = make_record(site="block-7", camera_id="cam1", started=datetime.now(UTC), status="open")
        paths = KeyframeStore(served.sink.keyframe_dir).save(
            "block-7", "cam1", record.started_at.date(), record.event_id, {"annotated": frame.content}
        )
        record.keyframe_annotated_path = paths["annotated"]
        store.upsert([record])
        store.close()
        page.locator("#nav-events").click()
        row = page.locator(f'tr[data-event="{record.event_id}"]')
        row.wait_for(timeout=20_000)
        _loaded(page, f"tr[data-event='{record.event_id}'] img.thumb", timeout=20_000)
        assert row.locator("img.thumb").get_attribute("src").startswith(f"events/{record.event_id}/keyframe?exp=")
        page.locator("#f-class").fill("no_such_class")
        page.locator(f'tr[data-event="{record.event_id}"]').wait_for(state="detached", timeout=10_000)
        page.locator("#f-class").fill("")
        row.wait_for(timeout=10_000)
        assert page.locator("#counts tbody tr").count() >= 1
        assert page.locator("#ready").inner_text() in ("ready", "not ready")
        p.shot(screenshots, "dashboard-events.png")
        assert not p.problems, p.problems


def _click_at(page: Any, box: dict[str, float], x: float, y: float) -> None:
    page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])


def test_operator_draws_a_zone_and_reviews_its_incident(served: SystemConfig, browser: Any, screenshots: Path) -> None:
    base = _base(served)
    with Page(browser, ADMIN) as p:
        page = p.page
        page.goto(base + "#zones", wait_until="domcontentloaded", timeout=30_000)
        _loaded(page, "#z-img", timeout=60_000)
        svg = page.locator("#z-svg")
        # a zone of two points is refused by the API; its message shows next to the form
        page.locator("#z-add-zone").click()
        box = svg.bounding_box()
        _click_at(page, box, 0.1, 0.2)
        _click_at(page, box, 0.5, 0.2)
        page.locator("#z-save").click()
        error = page.locator("#z-error")
        error.wait_for(state="visible", timeout=30_000)
        assert "zone" in error.inner_text() and "3" in error.inner_text(), error.inner_text()
        # two more points make a quadrilateral; drag the last one, rename it, add a rule
        _click_at(page, box, 0.6, 0.8)
        _click_at(page, box, 0.15, 0.8)
        assert page.locator("#z-svg circle.vertex").count() == 4
        start = page.locator("#z-svg circle.vertex").nth(3).bounding_box()
        page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + 0.05 * box["width"], box["y"] + 0.9 * box["height"], steps=5)
        page.mouse.up()
        page.locator("#z-name").fill("yard_zone")
        page.locator("#z-add-rule").click()
        form = page.locator("#z-rule-form")
        form.locator("[name=name]").fill("in_yard")
        form.locator("[name=name]").dispatch_event("change")
        form.locator("[name=kind]").select_option("dwell")
        form.locator("[name=min_dwell_s]").fill("4")
        form.locator("[name=min_dwell_s]").dispatch_event("change")
        form.locator("[name=severity]").select_option("alert")
        form.locator("[name=min_inside]").fill("0.5")
        form.locator("[name=min_inside]").dispatch_event("change")
        p.shot(screenshots, "dashboard-zones.png")
        page.locator("#z-save").click()
        page.wait_for_function("() => !document.getElementById('z-saved').hidden || !document.getElementById('z-error')"
                               ".hidden", timeout=60_000)  # fmt: skip
        assert page.locator("#z-error").is_hidden(), page.locator("#z-error").inner_text()

        analytics = httpx.get(f"{base}cameras/cam1/analytics", headers=AS_ADMIN, timeout=10).json()
        (zone,) = analytics["zones"]
        assert zone["name"] == "yard_zone" and len(zone["points"]) == 4
        assert zone["points"][3][0] == pytest.approx(0.05, abs=0.02) and zone["points"][3][1] == pytest.approx(
            0.9, abs=0.02
        )
        assert zone["points"][0] == pytest.approx([0.1, 0.2], abs=0.02)
        (rule,) = analytics["rules"]
        assert rule["kind"] == "dwell" and rule["name"] == "in_yard" and rule["zone"] == "yard_zone"
        assert rule["severity"] == "alert" and rule["min_dwell_s"] == 4 and rule["min_inside"] == 0.5

        # an incident of that rule, as the pipeline would store it, shows up in the list
        frame = wait_for(
            lambda: (
                (r := httpx.get(f"{base}cameras/cam1/frame.jpg", headers=AS_ADMIN, timeout=10)).status_code == 200
                and r.content
            ),
            60,
            "a frame after the restart",
        )
        now = datetime.now(UTC)
        keyframes = KeyframeStore(served.sink.keyframe_dir)
        records = []
        for i in range(3):
            iid = f"inc-browser-{i}"
            paths = keyframes.save("block-7", "cam1", now.date(), f"{iid}-open", {"annotated": frame, "raw": frame})
            records.append(
                replace(
                    incident(
                        iid,
                        started=now - timedelta(seconds=30 - i),
                        seen_s=8.0,
                        camera_id="cam1",
                        rule="in_yard",
                        rule_kind="dwell",
                        zone="yard_zone",
                        severity="alert",
                        result=f"alert: charging_cable in yard_zone for {8 + i} s",
                        trajectory=[[0.0, 0.3, 0.6], [4.0, 0.35, 0.62], [8.0, 0.4, 0.65]],
                    ),
                    keyframe_paths={"open": paths},
                )
            )
        store = EventStore(served.sink.database_url)
        store.incidents.upsert(records)
        store.close()
        page.locator("#nav-incidents").click()
        row = page.locator('tr[data-incident="inc-browser-0"]')
        row.wait_for(timeout=20_000)
        _loaded(page, "tr[data-incident='inc-browser-0'] img.thumb", timeout=20_000)
        page.locator("#incident-filters [name=zone]").fill("yard_zone")
        wait_for(lambda: page.locator("#incidents tbody tr").count() == 3, 10, "the zone filter")
        p.shot(screenshots, "dashboard-incidents.png")
        row.get_by_role("button").click()
        dialog = page.locator("#incident-dialog")
        dialog.wait_for(state="visible", timeout=10_000)
        _loaded(page, "#incident-img", timeout=20_000)
        assert "sig=" in page.locator("#incident-img").get_attribute("src")
        assert "yard_zone" in page.locator("#incident-fields").inner_text()
        assert "alert: charging_cable in yard_zone" in page.locator("#incident-result").inner_text()
        assert page.locator("#incident-updates li").count() == 4
        page.locator("#incident-clip-note").filter(has_text="no clip").wait_for(timeout=10_000)
        p.shot(screenshots, "dashboard-incident.png")
        page.locator("#incident-ack").click()
        page.locator("#incident-ack").filter(has_text="Acknowledged").wait_for(timeout=10_000)
        one = httpx.get(f"{base}incidents/inc-browser-0", headers=AS_ADMIN, timeout=10).json()
        assert one["acknowledged"] and one["acknowledged_by"] == "admin"
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden", timeout=5_000)
        # bulk: select all shown, acknowledge the rest
        page.locator("#incident-filters [name=acknowledged]").select_option("false")
        wait_for(lambda: page.locator("#incidents tbody tr").count() == 2, 10, "unacknowledged only")
        page.locator("#ack-all").check()
        page.locator("#ack-selected").click()
        page.locator("#no-incidents").wait_for(state="visible", timeout=10_000)
        for i in (1, 2):
            assert httpx.get(f"{base}incidents/inc-browser-{i}", headers=AS_ADMIN, timeout=10).json()["acknowledged"]
        # the refused zone (422) and the clip that does not exist (404) are the only failed loads
        allowed = ("status of 422 (Unprocessable Entity)", "status of 404 (Not Found)")
        assert not [m for m in p.problems if not m.endswith(allowed)], p.problems


def test_adding_a_camera_with_a_bad_url_shows_the_fields_error(
    served: SystemConfig, browser: Any, screenshots: Path
) -> None:
    with Page(browser, ADMIN) as p:
        page = p.page
        page.goto(_base(served), wait_until="domcontentloaded", timeout=30_000)
        page.locator("#camera-add").click()
        form = page.locator("#camera-form")
        form.locator("[name=id]").fill("cam-bad")
        form.locator("[name=source]").fill("ftp://nowhere.invalid/stream")
        form.locator("button[type=submit]").click()
        message = form.locator('.field-error[data-field="source"]')
        message.wait_for(state="visible", timeout=20_000)
        assert message.inner_text().strip(), "the API's message is shown"
        assert form.locator("[name=source]").get_attribute("aria-invalid") == "true"
        assert form.locator('.field-error[data-field="id"]').is_hidden()
        p.shot(screenshots, "dashboard-camera-form.png", full_page=False)
        assert httpx.get(f"{_base(served)}cameras/cam-bad", headers=AS_ADMIN, timeout=10).status_code == 404
        page.locator("#camera-cancel").click()
        assert not [m for m in p.problems if "422" not in m], p.problems


def test_viewer_sees_no_edit_controls_and_the_api_refuses(
    served: SystemConfig, browser: Any, screenshots: Path
) -> None:
    base = _base(served)
    with Page(browser, VIEWER) as p:
        page = p.page
        page.goto(base, wait_until="domcontentloaded", timeout=30_000)
        page.locator("#role").filter(has_text="viewer").wait_for(timeout=20_000)
        page.locator('img[data-camera="cam1"]').wait_for(timeout=30_000)
        _loaded(page, 'img[data-camera="cam1"]', timeout=60_000)
        assert page.locator("#camera-add").is_hidden()
        visible_buttons = [b.inner_text() for b in page.locator("#camera-cam1 button").all() if b.is_visible()]
        assert visible_buttons == ["Zones"], visible_buttons
        page.goto(base + "#zones", wait_until="domcontentloaded")
        _loaded(page, "#z-img", timeout=30_000)
        for control in ("#z-save", "#z-add-zone", "#z-add-line", "#z-add-rule"):
            assert page.locator(control).is_hidden(), control
        assert page.locator("#z-readonly").is_visible()
        page.goto(base + "#incidents", wait_until="domcontentloaded")
        page.locator('tr[data-incident="inc-browser-0"]').wait_for(timeout=20_000)
        assert page.locator("#ack-selected").is_visible()  # viewers acknowledge
        assert not p.problems, p.problems
    with httpx.Client(base_url=base, headers=AS_VIEWER, timeout=10) as viewer:
        assert viewer.delete("/cameras/cam1").status_code == 403
        assert viewer.patch("/cameras/cam1", json={"enabled": False}).status_code == 403
        assert viewer.post("/cameras", json={"id": "cam7", "source": "rtsp://x/y"}).status_code == 403
        assert viewer.put("/cameras/cam1/analytics", json={"zones": []}).status_code == 403
        assert viewer.get("/cameras/cam1/analytics").status_code == 200
    assert httpx.get(f"{base}cameras/cam1/frame.jpg", timeout=10).status_code == 401


def test_phone_width_and_keyboard(served: SystemConfig, browser: Any, screenshots: Path) -> None:
    base = _base(served)
    with Page(browser, ADMIN, width=390, height=844) as p:
        page = p.page
        for view in ("live", "incidents", "zones", "events"):
            page.goto(f"{base}#{view}", wait_until="domcontentloaded", timeout=30_000)
            page.locator(f"#view-{view}").wait_for(state="visible", timeout=10_000)
            time.sleep(1.0)
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, (view, overflow)
        page.goto(f"{base}#live", wait_until="domcontentloaded")
        page.locator('img[data-camera="cam1"]').wait_for(timeout=30_000)
        p.shot(screenshots, "dashboard-phone.png")
        # keyboard: tab from the top reaches the navigation, Enter follows it
        page.keyboard.press("Tab")
        focused = []
        for _ in range(8):
            page.keyboard.press("Tab")
            focused.append(page.evaluate("() => document.activeElement.id"))
        assert "nav-incidents" in focused, focused
        while page.evaluate("() => document.activeElement.id") != "nav-incidents":
            page.keyboard.press("Shift+Tab")
        page.keyboard.press("Enter")
        page.locator("#view-incidents").wait_for(state="visible", timeout=5_000)
        assert not p.problems, p.problems
