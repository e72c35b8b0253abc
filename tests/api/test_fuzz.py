"""Property-based fuzzing of the OpenAPI schema (schemathesis): whatever comes in, no 500.

Here the controller is down, so controller-backed routes may answer a designed 503 with a reason;
tests/api/test_cameras_ray.py fuzzes the camera routes with a real controller, where no 5xx is allowed.
The schema is built at import (schemathesis' lazy fixture loader does not work with pytest 9).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from deployments.api import create_app
from deployments.control import RayControlPlane
from tests.api.conftest import T0, make_record
from trtseg.config import ApiConfig, PusherConfig
from trtseg.db import EventStore
from trtseg.keyframes import KeyframeStore

ROOT = Path(tempfile.mkdtemp(prefix="trtseg-fuzz-"))
STORE = EventStore(f"sqlite:///{ROOT / 'events.db'}")
STORE.migrate()
STORE.upsert([make_record(started=T0, keyframes=KeyframeStore(ROOT / "kf"))])
APP = create_app(
    RayControlPlane(namespace="trtseg-absent", timeout_s=2.0),
    STORE,
    ApiConfig(max_upload_mb=0.5, file_source_dir=ROOT / "videos"),
    pusher=PusherConfig(hls_dir=ROOT / "hls"),
    keyframe_dir=ROOT / "kf",
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    STORE.close()
    shutil.rmtree(ROOT, ignore_errors=True)


def assert_no_server_error(response: Any, path: str) -> None:
    """500 never; 503 only as the designed 'controller unavailable' answer with a reason."""
    assert response.status_code != 500, f"{path}: 500 {response.text[:300]}"
    if response.status_code >= 500:
        assert response.status_code == 503 and response.json()["detail"], f"{path}: {response.status_code}"


# CI draws the same examples every run (no flaky failures); a wider hunt sets TRTSEG_FUZZ_EXAMPLES
# (random examples, e.g. 500) and reruns this file.
FUZZ_EXAMPLES = int(os.environ.get("TRTSEG_FUZZ_EXAMPLES", "0"))


@pytest.mark.slow
@schema.exclude(path_regex=r".*live\.mjpg$").parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES or 40,
    derandomize=not FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call()
    assert_no_server_error(response, case.path)
