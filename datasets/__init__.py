"""Synthetic data for trtseg: procedural scenes, YOLO datasets and sample videos.

No model or data set can be downloaded where trtseg runs, so the project makes its
own: `scenes` draws labelled street/facade frames (charging cables, e-bikes, persons),
`yolo` writes them as a YOLO segmentation data set, `video` renders H.264 clips.
"""

from datasets.scenes import CLASS_NAMES

__all__ = ["CLASS_NAMES"]
