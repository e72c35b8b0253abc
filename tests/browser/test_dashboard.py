"""The dashboard in a real headless Chromium (Playwright), served by the real Ray Serve app over the real
pipeline, acting as an operator and as a viewer.

- the live grid loads without console errors (a CSP violation is one) and a camera's live view moves;
- an event written to the event database shows up in the events list with its key frame;
- the operator draws a zone by clicking on the camera's picture, drags a point, adds a presence rule with an
  escalation and changes the tracker, and saves it (checked through the API); an invalid shape, an
  escalation share above 1 and a lost-track time of 0 show the API's 422 messages next to their fields;
- the camera shows the demo's charging bay (rendered small by ``datasets.video``) and the shipped model
  finds its cable in the drawn zone: the incident it causes appears in the list by the page's live
  update; the operator opens it, sees the key frame with the zone, plays its clip and sees the object's
  outline drawn over it in step with the video, and acknowledges it;
- incidents written to the incident table are filtered and acknowledged in bulk;
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

from datasets.video import render_sample_video
from tests.actors.system_helpers import MODEL, camera, system_config, wait_for
from tests.api.conftest import make_record
from tests.db.incident_helpers import incident
from tests.services.ports import free_port
from tests.services.ray_cluster import RayTestCluster
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
    # The demo's scene with its charging bay, small and short so that two shared cores keep up: the shipped
    # model finds the bay's cable (scores 0.85+) in the left third of the picture, where the operator draws.
    render_sample_video(media / "bay.mp4", seconds=8.0, fps=10, size=(640, 360), gop=10, charging_bay=True)
    tmp = tmp_path_factory.mktemp("browser-system")
    clips = {"pre_capture_s": 1.0, "post_capture_s": 1.0, "max_clip_s": 6.0}  # capped: ready while still open
    cam1 = camera("cam1", media / "bay.mp4", site="block-7", name="Yard", clips=clips)
    config = system_config(tmp, media, NAMESPACE, [cam1])
    config.evidence.clip_dir = tmp / "clips"
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


def _incident_of_rule(base: str, rule: str) -> str | None:
    """The id of the pipeline's incident of ``rule`` on cam1 with its open key frame stored, or None yet."""
    answer = httpx.get(f"{base}incidents", params={"rule": rule, "camera_id": "cam1"}, headers=AS_ADMIN, timeout=10)
    items = [i for i in answer.json()["items"] if i["keyframe_paths"].get("open")] if answer.status_code == 200 else []
    return items[-1]["incident_id"] if items else None


def _outline_pixels(page: Any) -> int:
    """Pixels of the clip overlay canvas that are drawn on (not transparent)."""
    return int(
        page.evaluate(
            """() => { const c = document.getElementById('incident-overlay');
                 const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                 let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n += 1; return n; }"""
        )
    )


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
        _click_at(page, box, 0.02, 0.2)
        _click_at(page, box, 0.42, 0.2)
        page.locator("#z-save").click()
        error = page.locator("#z-error")
        error.wait_for(state="visible", timeout=30_000)
        assert "zone" in error.inner_text() and "3" in error.inner_text(), error.inner_text()
        # two more points make a quadrilateral over the charging bay; drag the last one, rename it
        svg.scroll_into_view_if_needed()
        box = svg.bounding_box()
        _click_at(page, box, 0.42, 0.85)
        _click_at(page, box, 0.15, 0.8)
        assert page.locator("#z-svg circle.vertex").count() == 4
        start = page.locator("#z-svg circle.vertex").nth(3).bounding_box()
        page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + 0.01 * box["width"], box["y"] + 0.9 * box["height"], steps=5)
        page.mouse.up()
        page.locator("#z-name").fill("yard_zone")
        # a presence rule on the cable, escalated to an alert when half of it is inside
        page.locator("#z-add-rule").click()
        form = page.locator("#z-rule-form")

        def set_field(name: str, value: str) -> None:
            form.locator(f"[name={name}]").fill(value)
            form.locator(f"[name={name}]").dispatch_event("change")

        set_field("name", "in_yard")
        form.locator("[name=severity]").select_option("detection")
        set_field("classes", "charging_cable")
        set_field("min_inside", "0.3")
        form.locator("[name=esc_side]").select_option("min_inside")
        set_field("esc_share", "1.5")  # refused: a share is at most 1
        set_field("esc_label", "danger")
        page.locator("#z-tracker summary").click()
        tracker = page.locator("#z-tracker-form")
        tracker.locator("[name=lost_track_s]").fill("0")  # refused: must be above 0
        tracker.locator("[name=lost_track_s]").dispatch_event("change")
        page.locator("#z-save").click()
        escalate_error = form.locator('.field-error[data-field="escalate"]')
        escalate_error.wait_for(state="visible", timeout=30_000)
        assert "less than or equal to 1" in escalate_error.inner_text(), escalate_error.inner_text()
        assert form.locator("[name=esc_share]").get_attribute("aria-invalid") == "true"
        lost_error = tracker.locator('.field-error[data-field="lost_track_s"]')
        assert lost_error.is_visible() and "greater than 0" in lost_error.inner_text(), lost_error.inner_text()
        assert tracker.locator('.field-error[data-field="high_score"]').is_hidden()
        p.shot(screenshots, "dashboard-zones.png")
        set_field("esc_share", "0.5")
        tracker.locator("[name=lost_track_s]").fill("3")
        tracker.locator("[name=lost_track_s]").dispatch_event("change")
        assert escalate_error.is_hidden() and lost_error.is_hidden()  # edited: the old messages go
        page.locator("#z-save").click()
        page.wait_for_function("() => !document.getElementById('z-saved').hidden || !document.getElementById('z-error')"
                               ".hidden", timeout=60_000)  # fmt: skip
        assert escalate_error.is_hidden() and lost_error.is_hidden()
        if page.locator("#z-error").is_visible():
            # On a loaded machine the camera's restart may outlast the API's 10 s wait for the controller
            # (503); the controller applies the change all the same.
            assert "503" in page.locator("#z-error").inner_text(), page.locator("#z-error").inner_text()
            p.problems[:] = [m for m in p.problems if "503" not in m]

        def saved_analytics() -> dict[str, Any] | None:
            answer = httpx.get(f"{base}cameras/cam1/analytics", headers=AS_ADMIN, timeout=10).json()
            return answer if answer.get("rules") else None

        analytics = wait_for(saved_analytics, 60, "the saved analytics")
        (zone,) = analytics["zones"]
        assert zone["name"] == "yard_zone" and len(zone["points"]) == 4
        assert zone["points"][3] == pytest.approx([0.01, 0.9], abs=0.02)
        assert zone["points"][0] == pytest.approx([0.02, 0.2], abs=0.02)
        (rule,) = analytics["rules"]
        assert rule["kind"] == "presence" and rule["name"] == "in_yard" and rule["zone"] == "yard_zone"
        assert rule["min_inside"] == 0.3 and rule["classes"] == ["charging_cable"]
        assert rule["escalate"] == {"min_inside": 0.5, "min_outside": None, "label": "danger"}
        assert analytics["tracker"]["lost_track_s"] == 3 and analytics["tracker"]["high_score"] == 0.5

        # the pipeline raises the incident; the list shows it by its live update
        page.locator("#nav-incidents").click()
        iid = wait_for(lambda: _incident_of_rule(base, "in_yard"), 120, "the incident of the drawn zone")
        row = page.locator(f'tr[data-incident="{iid}"]')
        row.wait_for(timeout=20_000)
        _loaded(page, f"tr[data-incident='{iid}'] img.thumb", timeout=20_000)
        assert "yard_zone" in row.inner_text() and "charging_cable" in row.inner_text()
        row.get_by_role("button").click()
        dialog = page.locator("#incident-dialog")
        dialog.wait_for(state="visible", timeout=10_000)
        _loaded(page, "#incident-img", timeout=20_000)
        assert "sig=" in page.locator("#incident-img").get_attribute("src")
        assert page.locator("#incident-result").inner_text().startswith("danger: ")
        assert "charging_cable inside yard_zone" in page.locator("#incident-result").inner_text()
        # the key frame with the zone (drawn on the annotated picture, and over it from the stored track)
        page.wait_for_function(
            "() => document.getElementById('incident-img-overlay').dataset.shapes === 'yard_zone'", timeout=10_000
        )
        # the clip (capped at 6 s, so it is ready while the cable is still there); re-open until it is
        wait_for(
            lambda: (
                page.evaluate(f"openIncident('{iid}')") is None
                and page.locator("#incident-clip-note").inner_text().startswith("clip ")
            ),
            60,
            "the incident's clip",
            interval_s=2.0,
        )
        page.wait_for_function("() => document.getElementById('incident-clip').readyState >= 2", timeout=20_000)
        page.evaluate("document.getElementById('incident-clip').play()")
        overlay = page.locator("#incident-overlay")
        page.wait_for_function(
            "() => { const c = document.getElementById('incident-overlay');"
            " return !c.hidden && Number(c.dataset.outlines) > 0 && c.dataset.drawnTs; }",
            timeout=20_000,
        )
        first = float(overlay.get_attribute("data-drawn-ts"))
        assert abs(float(overlay.get_attribute("data-video-ts")) - first) <= 1.0
        assert _outline_pixels(page) > 500
        p.shot(screenshots, "dashboard-incident.png")
        page.wait_for_function(
            f"() => Number(document.getElementById('incident-overlay').dataset.drawnTs) > {first + 0.5}",
            timeout=20_000,
        )  # the outline follows the video as it plays
        assert page.locator("#incident-overlay-note").inner_text().split()[0].isdigit()
        page.locator("#incident-ack").click()
        page.locator("#incident-ack").filter(has_text="Acknowledged").wait_for(timeout=10_000)
        one = httpx.get(f"{base}incidents/{iid}", headers=AS_ADMIN, timeout=10).json()
        assert one["acknowledged"] and one["acknowledged_by"] == "admin"
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden", timeout=5_000)

        # filters and bulk acknowledgement, on incidents written to the incident table
        frame = httpx.get(f"{base}cameras/cam1/frame.jpg", headers=AS_ADMIN, timeout=10).content
        now = datetime.now(UTC)
        keyframes = KeyframeStore(served.sink.keyframe_dir)
        records = []
        for i in range(3):
            stored_id = f"inc-browser-{i}"
            paths = keyframes.save(
                "block-7", "cam1", now.date(), f"{stored_id}-open", {"annotated": frame, "raw": frame}
            )
            records.append(
                replace(
                    incident(
                        stored_id,
                        started=now - timedelta(seconds=30 - i),
                        seen_s=8.0,
                        camera_id="cam1",
                        rule="stored_rule",
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
        page.locator("#incident-filters [name=rule]").fill("stored_rule")
        wait_for(lambda: page.locator("#incidents tbody tr").count() == 3, 10, "the rule filter")
        p.shot(screenshots, "dashboard-incidents.png")
        page.locator("#incident-filters [name=acknowledged]").select_option("false")
        page.locator('tr[data-incident="inc-browser-0"]').get_by_role("button").click()
        dialog.wait_for(state="visible", timeout=10_000)
        assert page.locator("#incident-updates li").count() == 4
        page.locator("#incident-clip-note").filter(has_text="no clip").wait_for(timeout=10_000)
        page.locator("#incident-overlay-note").filter(has_text="no outlines").wait_for(timeout=10_000)
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden", timeout=5_000)
        page.locator("#ack-all").check()
        page.locator("#ack-selected").click()
        page.locator("#no-incidents").wait_for(state="visible", timeout=10_000)
        for i in range(3):
            assert httpx.get(f"{base}incidents/inc-browser-{i}", headers=AS_ADMIN, timeout=10).json()["acknowledged"]
        # the refused saves (422) and the clip that does not exist (404) are the only failed loads
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
