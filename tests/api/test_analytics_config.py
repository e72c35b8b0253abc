"""GET/PUT /cameras/{id}/analytics and GET /zones/counts against a stand-in controller whose camera
changes go to a real camera registry (SQLite): valid changes are kept in the database, bad zones,
lines and rules are 422s naming the field, a camera removed meanwhile is a 404. The real controller
is exercised by test_analytics_ray.py."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from deployments.control import CameraNotFound, InvalidRequest
from trtseg.config import CameraConfig
from trtseg.db import CameraRegistry

MODEL_NAMES = {0: "charging_cable", 1: "e_bike", 2: "person"}
SAFE_ZONE = [[0.1, 0.2], [0.9, 0.2], [0.9, 0.95], [0.1, 0.95]]
DEMO = {
    "zones": [{"name": "building_safe_zone", "points": SAFE_ZONE}],
    "lines": [{"name": "door", "points": [[0.4, 0.9], [0.6, 0.9]]}],
    "rules": [
        {
            "kind": "presence",
            "name": "cable_outside",
            "classes": ["charging_cable"],
            "zone": "building_safe_zone",
            "label": "safe",
            "escalate": {"min_outside": 0.4, "label": "danger"},
        },
        {"kind": "crossing", "name": "in_out", "classes": ["person"], "line": "door"},
    ],
}
TOKEN = "analytics-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class StandInControl:
    """The controller's camera calls as the API makes them (validate, keep in the registry, report figures)."""

    def __init__(self, registry: CameraRegistry, cameras: list[CameraConfig], names: dict[int, str]) -> None:
        self.registry = registry
        self.cameras = {c.id: c for c in cameras}
        self.names = names
        self.zone_counts: dict[str, dict[str, dict[str, int]]] = {}
        self.updates = 0

    def _describe(self, camera: CameraConfig) -> dict[str, Any]:
        output: dict[str, Any] = {"fps_out": 4.0}
        if camera.id in self.zone_counts:
            output["zone_counts"] = copy.deepcopy(self.zone_counts[camera.id])
        return {"id": camera.id, "site": camera.site, "state": "live", "config": camera.model_dump(mode="json"),
                "stats": {"decoder": {"state": "live"}, "output": output}}  # fmt: skip

    async def list_cameras(self) -> list[dict[str, Any]]:
        return [self._describe(c) for c in self.cameras.values()]

    async def get_camera(self, camera_id: str) -> dict[str, Any]:
        if camera_id not in self.cameras:
            raise CameraNotFound(camera_id)
        return self._describe(self.cameras[camera_id])

    async def update_camera(self, camera_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        if camera_id not in self.cameras:
            raise CameraNotFound(camera_id)
        try:
            config = CameraConfig.model_validate({**self.cameras[camera_id].model_dump(), **changes})
        except ValidationError as error:
            raise InvalidRequest(str(error)) from None
        self.cameras[camera_id] = config
        self.registry.save(config)
        self.updates += 1
        return self._describe(config)

    async def remove_camera(self, camera_id: str) -> None:
        if self.cameras.pop(camera_id, None) is None:
            raise CameraNotFound(camera_id)
        self.registry.remove(camera_id)

    async def model_names(self) -> dict[int, str]:
        return dict(self.names)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[CameraRegistry]:
    registry = CameraRegistry(f"sqlite:///{tmp_path / 'events.db'}")
    registry.migrate()
    yield registry
    registry.close()


@pytest.fixture
def control(registry: CameraRegistry) -> StandInControl:
    cameras = [
        CameraConfig(id="cam1", site="block-7", source="rtsp://cams.local/1", classes=[]),  # infers every class
        CameraConfig(id="cam2", site="block-9", source="rtsp://cams.local/2", classes=["charging_cable", "e_bike"]),
    ]
    return StandInControl(registry, cameras, MODEL_NAMES)


@pytest.fixture
def api(make_client: Callable[..., TestClient], control: StandInControl) -> TestClient:
    return make_client(control=control, token=TOKEN)


def _problems(answer: Any) -> list[dict[str, Any]]:
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, list), detail
    return detail


def _put(api: TestClient, body: dict[str, Any], camera_id: str = "cam1") -> Any:
    return api.put(f"/cameras/{camera_id}/analytics", json=body, headers=AUTH)


def test_get_and_put_keep_the_change_in_the_database(
    api: TestClient, control: StandInControl, registry: CameraRegistry
) -> None:
    empty = api.get("/cameras/cam1/analytics")
    assert empty.status_code == 200 and empty.json()["zones"] == [] and empty.json()["tracker"]["enabled"] is True

    answer = _put(api, DEMO)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rules"][0]["escalate"] == {"min_inside": None, "min_outside": 0.4, "label": "danger"}
    assert api.get("/cameras/cam1/analytics").json() == answer.json()
    stored = {row.camera_id: row.config for row in registry.load()}
    assert stored["cam1"] is not None and stored["cam1"].analytics.model_dump(mode="json") == answer.json()
    assert stored["cam1"].source == "rtsp://cams.local/1", "the rest of the camera is untouched"

    cleared = _put(api, {})
    assert cleared.status_code == 200 and cleared.json()["rules"] == []
    assert control.updates == 2


def test_put_needs_the_token(api: TestClient, control: StandInControl) -> None:
    assert api.put("/cameras/cam1/analytics", json=DEMO).status_code == 401
    assert api.put("/cameras/cam1/analytics", json=DEMO, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert control.updates == 0


def _with_zone(points: list[list[float]]) -> dict[str, Any]:
    return {"zones": [{"name": "z", "points": points}]}


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        (_with_zone([[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]), ["body", "zones", 0], "self-intersecting"),
        (_with_zone([[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]]), ["body", "zones", 0], "degenerate"),
        (_with_zone([[0.1, 0.1], [0.1, 0.1], [0.9, 0.9]]), ["body", "zones", 0], "repeats a point"),
        (_with_zone([[0.1, 0.1], [1.2, 0.1], [0.5, 0.9]]), ["body", "zones", 0, "points", 1, 0], "less than or equal"),
        (_with_zone([[-0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]), ["body", "zones", 0, "points", 0, 0], "greater than"),
        (_with_zone([[0.1, 0.1], [0.9, 0.1]]), ["body", "zones", 0, "points"], "at least 3"),
        ({"lines": [{"name": "l", "points": [[0.5, 0.5], [0.5, 0.5]]}]}, ["body", "lines", 0], "coincide"),
        ({"rules": [{"kind": "presence", "name": "r", "zone": "nowhere"}]}, ["body"], "zone 'nowhere' is not defined"),
        ({"rules": [{"kind": "crossing", "name": "r", "line": "gone"}]}, ["body"], "line 'gone' is not defined"),
        ({"rules": [{"kind": "teleport", "name": "r"}]}, ["body", "rules", 0], "kind"),
        ({"rules": [{"kind": "presence", "name": "r", "severity": "urgent"}]}, ["body", "rules", 0], "severity"),
        ({"zones": [{"name": "z", "points": SAFE_ZONE, "colour": "red"}]}, ["body", "zones", 0, "colour"], "Extra"),
        ({**DEMO, "zones": DEMO["zones"] * 2}, ["body"], "used more than once"),
    ],
)
def test_bad_zones_lines_and_rules_are_422_naming_the_field(
    api: TestClient, control: StandInControl, body: dict[str, Any], loc: list[Any], words: str
) -> None:
    problems = _problems(_put(api, body))
    assert any(p["loc"][: len(loc)] == loc and words in p["msg"] + p["type"] + str(p["loc"]) for p in problems), (
        problems
    )
    assert control.updates == 0, "nothing was applied"


def test_a_rule_on_a_class_the_model_lacks_is_refused(api: TestClient, control: StandInControl) -> None:
    body = {**DEMO, "rules": [{**DEMO["rules"][0], "classes": ["charging_cable", "drone"]}]}
    (problem,) = _problems(_put(api, body))
    assert problem["loc"] == ["body", "rules", 0, "classes"]
    assert "drone" in problem["msg"] and "model's classes" in problem["msg"]
    # cam2 infers only cables and e-bikes: a rule on people there would never fire either.
    person_rule = {"rules": [{"kind": "presence", "name": "people", "classes": ["person"]}]}
    problems = _problems(_put(api, person_rule, camera_id="cam2"))
    assert any("analytics.rules.0.classes" in p["msg"] and "person" in p["msg"] for p in problems), problems
    assert control.updates == 0


def test_without_a_running_model_the_camera_classes_still_apply(api: TestClient, control: StandInControl) -> None:
    control.names = {}  # no segmenter ready yet: the model's names are unknown
    drone = {"rules": [{"kind": "presence", "name": "r", "classes": ["drone"]}]}
    assert _put(api, drone, camera_id="cam1").status_code == 200, "cam1 infers every class"
    assert _put(api, drone, camera_id="cam2").status_code == 422


def test_unknown_or_removed_camera_is_404(api: TestClient, control: StandInControl) -> None:
    assert api.get("/cameras/cam9/analytics").status_code == 404
    assert _put(api, DEMO, camera_id="cam9").status_code == 404
    assert api.delete("/cameras/cam1", headers=AUTH).status_code == 204
    gone = _put(api, DEMO)
    assert gone.status_code == 404 and "cam1" in gone.json()["detail"]

    async def vanish(camera_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        raise CameraNotFound(camera_id)  # removed between the API's read and its change

    control.update_camera = vanish  # type: ignore[method-assign]
    cables = {"zones": DEMO["zones"], "rules": DEMO["rules"][:1]}
    assert _put(api, cables, camera_id="cam2").status_code == 404


def test_zone_counts_and_their_metrics(api: TestClient, control: StandInControl) -> None:
    control.zone_counts["cam1"] = {"building_safe_zone": {"charging_cable": 2, "person": 1}, "door": {}}
    answer = api.get("/zones/counts")
    assert answer.status_code == 200
    assert answer.json() == {
        "items": [
            {"camera_id": "cam1", "site": "block-7", "zone": "building_safe_zone", "class_name": "charging_cable",
             "count": 2},
            {"camera_id": "cam1", "site": "block-7", "zone": "building_safe_zone", "class_name": "person", "count": 1},
        ],
        "unavailable": ["cam2"],
    }  # fmt: skip
    assert api.get("/zones/counts", params={"camera_id": "cam2"}).json() == {"items": [], "unavailable": ["cam2"]}
    assert api.get("/zones/counts", params={"site": "block-9"}).json()["items"] == []
    assert len(api.get("/zones/counts", params={"zone": "door"}).json()["items"]) == 0
    assert api.get("/zones/counts", params={"camera_id": "cam9"}).status_code == 404
    assert _problems(api.get("/zones/counts", params={"camera_id": "../x"}))[0]["loc"] == ["query", "camera_id"]
    text = api.get("/metrics").text
    line = (
        'trtseg_zone_objects{camera_id="cam1",site="block-7",zone="building_safe_zone",class_name="charging_cable"} 2'
    )
    assert line in text


def test_controller_down_is_503(client: TestClient) -> None:
    for path in ("/cameras/cam1/analytics", "/zones/counts"):
        answer = client.get(path)
        assert answer.status_code == 503 and answer.headers["retry-after"], path
    assert client.put("/cameras/cam1/analytics", json=DEMO).status_code == 503
