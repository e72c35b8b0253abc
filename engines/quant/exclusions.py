"""Which nodes of an Ultralytics YOLOv8/YOLO11-seg graph stay in floating point.

Precision-sensitive parts of a segmentation model: the last convolution of each head branch per
scale (``cv2`` boxes/DFL logits, ``cv3`` class scores, ``cv4`` mask coefficients — their outputs
are compared against thresholds or fed to softmax/sigmoid with no later layer to absorb rounding),
the box decoding after them (DFL softmax, anchor arithmetic in pixels), and the mask prototype
output. Node names in exports follow the PyTorch module path (``/model.22/cv3.1/cv3.1.2/Conv``;
the head's index differs between v8 and YOLO11), so the rules are name patterns, independent of
the head's index.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence

logger = logging.getLogger(__name__)

# Last Conv of every cv2/cv3/cv4 branch: /model.N/cvB.S/cvB.S.2/Conv
HEAD_FINAL_CONV = re.compile(r"^(?P<head>/model\.\d+/)cv[234]\.\d+/cv[234]\.\d+\.2/Conv$")
# The mask prototype's output block (its last Conv and activation).
PROTO_OUTPUT = r"/proto/cv3/"
DEFAULT_PATTERNS: tuple[str, ...] = (HEAD_FINAL_CONV.pattern, PROTO_OUTPUT)


def head_prefix(names: Iterable[str]) -> str | None:
    """The detection head's module prefix (``/model.22/``), found from its final convolutions."""
    for name in names:
        match = HEAD_FINAL_CONV.match(name)
        if match:
            return match.group("head")
    return None


def decode_nodes(names: Sequence[str]) -> list[str]:
    """Nodes of the head that decode boxes and scores (not inside a cv2/cv3/cv4/proto branch)."""
    prefix = head_prefix(names)
    if prefix is None:
        return []
    branch = re.compile(r"^(cv[234]\.\d+|proto)/")
    return [n for n in names if n.startswith(prefix) and not branch.match(n[len(prefix) :])]


def resolve_exclusions(names: Sequence[str], patterns: Iterable[str] | None = None, defaults: bool = True) -> list[str]:
    """Node names to keep in floating point: defaults (head convs, decode, proto output) plus ``patterns``.

    Patterns are regular expressions searched in node names; an invalid one is a clear error.
    """
    compiled: list[re.Pattern[str]] = []
    for pattern in [*(DEFAULT_PATTERNS if defaults else ()), *(patterns or ())]:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"invalid exclude pattern {pattern!r}: {exc}") from exc
    excluded = {n for n in names if any(p.search(n) for p in compiled)}
    if defaults:
        decode = decode_nodes(names)
        if not decode:
            logger.warning(
                "no YOLO head found by node names; only explicit exclude patterns apply head_pattern=%s",
                HEAD_FINAL_CONV.pattern,
            )
        excluded.update(decode)
    for pattern in patterns or ():
        if not any(re.search(pattern, n) for n in names):
            logger.warning("exclude pattern matches no node pattern=%s", pattern)
    return [n for n in names if n in excluded]
