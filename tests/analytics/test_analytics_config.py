"""The analytics configuration refuses bad shapes and dangling references, naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from trtseg.config import ConfigError, parse_config
from trtseg.config.analytics import AnalyticsConfig, polygon_problem


def system(analytics: dict[str, Any], classes: list[str] | None = None) -> dict[str, Any]:
    camera = {"id": "c1", "source": "rtsp://127.0.0.1/x", "analytics": analytics}
    if classes is not None:
        camera["classes"] = classes
    return {"cameras": [camera]}


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return str(caught.value)


def test_the_origin_rule_validates() -> None:
    config = parse_config(
        system(
            {
                "zones": [{"name": "building_safe_zone", "points": [[0.1, 0.1], [0.6, 0.1], [0.6, 0.9], [0.1, 0.9]]}],
                "rules": [
                    {
                        "name": "flying_lead",
                        "kind": "presence",
                        "zone": "building_safe_zone",
                        "classes": ["charging_cable"],
                        "label": "safe",
                        "escalate": {"min_outside": 0.4, "label": "danger"},
                    }
                ],
            }
        )
    )
    rule = config.cameras[0].analytics.rules[0]
    assert rule.kind == "presence" and rule.membership == "mask_fraction" and rule.escalate.min_outside == 0.4


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]], "self-intersecting"),
        ([[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]], "degenerate"),
        ([[0.1, 0.1], [0.1, 0.1], [0.9, 0.9], [0.2, 0.8]], "repeats a point"),
        ([[0.1, 0.1], [1.5, 0.1], [0.5, 0.9]], "less than or equal to 1"),
    ],
)
def test_bad_polygons_name_the_zone(points: list[list[float]], expected: str) -> None:
    text = error_of(system({"zones": [{"name": "z", "points": points}]}))
    assert "cameras.0.analytics.zones.0" in text and expected in text


def test_a_line_needs_two_distinct_points() -> None:
    text = error_of(system({"lines": [{"name": "door", "points": [[0.5, 0.5], [0.5, 0.5]]}]}))
    assert "cameras.0.analytics.lines.0" in text and "coincide" in text


def test_rules_must_name_defined_zones_and_lines_and_unique_names() -> None:
    text = error_of(system({"rules": [{"name": "r", "kind": "dwell", "zone": "nowhere", "min_dwell_s": 3}]}))
    assert "zone 'nowhere' is not defined" in text and "cameras.0.analytics" in text
    text = error_of(system({"rules": [{"name": "r", "kind": "crossing", "line": "door"}]}))
    assert "line 'door' is not defined" in text
    zone = {"name": "z", "points": [[0, 0], [1, 0], [1, 1]]}
    text = error_of(system({"zones": [zone, zone]}))
    assert "zone name 'z' is used more than once" in text


def test_unknown_rule_kind_and_unknown_keys_are_refused() -> None:
    text = error_of(system({"rules": [{"name": "r", "kind": "teleport"}]}))
    assert "cameras.0.analytics.rules.0" in text and "teleport" in text
    text = error_of(system({"rules": [{"name": "r", "kind": "presence", "colour": "red"}]}))
    assert "colour" in text


def test_rule_classes_must_be_inferred_classes() -> None:
    rule = {"name": "r", "kind": "presence", "classes": ["person"]}
    text = error_of(system({"rules": [rule]}, classes=["charging_cable"]))
    assert "analytics.rules.0.classes: person not among the camera's classes" in text
    parse_config(system({"rules": [rule]}, classes=["charging_cable", "person"]))


def test_thresholds_need_a_zone_and_one_side() -> None:
    assert "need a zone" in error_of(system({"rules": [{"name": "r", "kind": "presence", "min_inside": 0.5}]}))
    zone = {"name": "z", "points": [[0, 0], [1, 0], [1, 1]]}
    both = {"name": "r", "kind": "presence", "zone": "z", "min_inside": 0.5, "min_outside": 0.5}
    assert "at most one" in error_of(system({"zones": [zone], "rules": [both]}))
    escalate = {"name": "r", "kind": "presence", "zone": "z", "escalate": {}}
    assert "exactly one" in error_of(system({"zones": [zone], "rules": [escalate]}))


def test_polygon_problem_accepts_concave_polygons() -> None:
    concave = [(0.1, 0.1), (0.9, 0.1), (0.5, 0.4), (0.9, 0.9), (0.1, 0.9)]
    assert polygon_problem(concave) is None
    assert AnalyticsConfig(zones=[{"name": "c", "points": concave}]).zones[0].name == "c"
