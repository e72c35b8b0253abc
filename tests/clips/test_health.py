"""The evidence component of /ready: failing clips and an evidence disk above its cap show, readiness stays."""

from __future__ import annotations

from trtseg.clips.health import evidence_health


def test_ok_failing_and_over_cap() -> None:
    ok = {"clips": {"enabled": True, "ok": True, "clips": 3, "failures": 0, "last_error": None}}
    bad = {"clips": {"enabled": True, "ok": False, "clips": 1, "failures": 2, "last_error": "OSError: [Errno 28]"}}
    gpu = {"clips": {"enabled": False, "unsupported": "NVDEC", "ok": True}}
    health = evidence_health({"a": ok, "b": bad, "c": gpu, "d": {}})
    assert health["state"] == "failing" and health["ready"] is True
    assert health["failing_cameras"] == {"b": "OSError: [Errno 28]"} and health["cameras_without_clips"] == ["c"]
    assert health["clips"] == 4 and health["clip_failures"] == 2
    assert evidence_health({"a": ok})["state"] == "ok"
    over = evidence_health({"a": ok}, {"last_run": {"over_cap": True}, "last_error": None})
    assert over["state"] == "over_cap" and over["over_cap"]
