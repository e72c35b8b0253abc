"""A model file that is not a model: the engine refuses it at load with an EngineError that says why.

The shipped PyTorch checkpoint renamed to .onnx (a pickle: never unpickled), a truncated ONNX, a
text file, random bytes, an empty file and a directory. None may crash the process or hang.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.base import EngineError
from engines.engine import SegmentationEngine
from trtseg.config import EngineConfig

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "trtseg-cable-n.onnx"
CHECKPOINT = ROOT / "models" / "trtseg-cable-n.pt"


def _bad_models(tmp: Path) -> dict[str, Path]:
    made: dict[str, Path] = {}
    if CHECKPOINT.is_file():
        made["pickle"] = tmp / "checkpoint.onnx"
        made["pickle"].write_bytes(CHECKPOINT.read_bytes())
    if MODEL.is_file():
        made["truncated"] = tmp / "truncated.onnx"
        made["truncated"].write_bytes(MODEL.read_bytes()[: MODEL.stat().st_size // 3])
    made["text"] = tmp / "readme.onnx"
    made["text"].write_text("this is not a model\n" * 50)
    made["random"] = tmp / "random.onnx"
    made["random"].write_bytes(np.random.default_rng(3).integers(0, 255, 100_000, dtype=np.uint8).tobytes())
    made["empty"] = tmp / "empty.onnx"
    made["empty"].write_bytes(b"")
    made["directory"] = tmp / "dir.onnx"
    made["directory"].mkdir()
    return made


def test_files_that_are_not_models_are_refused(tmp_path: Path) -> None:
    for kind, path in _bad_models(tmp_path).items():
        try:
            config = EngineConfig(model=path, backend="onnxruntime", device="cpu", intra_op_threads=1)
        except ValueError as refused:  # the configuration may already refuse it (a directory)
            assert str(refused).strip(), kind
            continue
        with pytest.raises(EngineError) as refused:
            SegmentationEngine(config).load()
        message = str(refused.value)
        assert message.strip() and "Traceback" not in message, kind
        assert len(message) < 2000, f"{kind}: the error should be a message, not a dump"


@pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing")
def test_a_good_model_still_loads_after_bad_ones(tmp_path: Path) -> None:
    """Control case: the same code path accepts the real model, so the refusals above are about the files."""
    engine = SegmentationEngine(EngineConfig(model=MODEL, backend="onnxruntime", device="cpu", intra_op_threads=1))
    found = engine.load().predict([np.zeros((120, 160, 3), np.uint8)])
    assert len(found) == 1 and found[0].frame_shape == (120, 160)
