"""Session-wide test set-up: the project root on sys.path and the real-service fixtures.

Fixtures that start real servers (MariaDB, RTMP/RTSP streaming servers, Ray clusters) live one
module per service in ``tests/services/`` and are loaded here as pytest plugins.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = sorted(
    f"tests.services.{path.stem}" for path in (ROOT / "tests" / "services").glob("*.py") if path.stem != "__init__"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests run only where a CUDA device is visible."""
    try:
        import cupy

        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="no CUDA GPU here (run on the GPU machine: docs/BENCHMARKS.md)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
