"""Read a YOLO-format segmentation data set (Ultralytics layout) for evaluation.

``data.yaml`` names the root (``path``), the splits (an image folder, a list of folders, or a .txt
of image paths, relative to the root) and the classes (``names``: dict or list). Each image's
labels are in the parallel ``labels`` folder, one instance a line: ``class x1 y1 x2 y2 ...`` with
coordinates normalised to [0, 1]. A missing label file means an image without instances; a
malformed line is an error naming the file and line (a silently dropped label would inflate mAP).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


class DatasetError(ValueError):
    """The data set cannot be read; the message names the file and what is wrong."""


@dataclass(frozen=True)
class LabelledImage:
    """One image and its instances (normalised polygons)."""

    image_path: Path
    class_ids: np.ndarray  # (G,) int64
    polygons: tuple[np.ndarray, ...]  # each (K, 2) float64 in [0, 1]

    def read(self) -> np.ndarray:
        image = cv2.imread(str(self.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"cannot read image {self.image_path}")
        return image

    def boxes(self, shape: tuple[int, int]) -> np.ndarray:
        """(G, 4) xyxy pixel boxes bounding the polygons (Ultralytics' ``segments2boxes``)."""
        height, width = shape
        out = np.zeros((len(self.polygons), 4), np.float64)
        for row, polygon in zip(out, self.polygons, strict=True):
            xy = polygon * np.array([width, height])
            row[:] = (*xy.min(axis=0), *xy.max(axis=0))
        return out


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` of the path becomes ``/labels/``, suffix ``.txt``."""
    text = str(image)
    marker, replacement = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    head, sep, tail = text.rpartition(marker)
    if not sep:
        return image.with_suffix(".txt")
    return Path(head + replacement + tail).with_suffix(".txt")


def parse_label_file(path: Path, num_classes: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Class ids and normalised polygons of one label file (empty when the file is absent)."""
    if not path.is_file():
        return np.zeros(0, np.int64), ()
    classes: list[int] = []
    polygons: list[np.ndarray] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            cls = int(fields[0])
            coords = np.array([float(v) for v in fields[1:]], np.float64)
        except ValueError as exc:
            raise DatasetError(f"{path}:{number}: not numbers: {line[:60]!r}") from exc
        if not 0 <= cls < num_classes:
            raise DatasetError(f"{path}:{number}: class {cls} outside 0..{num_classes - 1}")
        if coords.size < 6 or coords.size % 2:
            raise DatasetError(f"{path}:{number}: a polygon needs an even number (>= 6) of coordinates")
        if np.any(coords < -0.01) or np.any(coords > 1.01):
            raise DatasetError(f"{path}:{number}: coordinates must be normalised to [0, 1]")
        classes.append(cls)
        polygons.append(np.clip(coords.reshape(-1, 2), 0.0, 1.0))
    return np.array(classes, np.int64), tuple(polygons)


class YoloDataset:
    """The labelled images of one split of a ``data.yaml`` data set."""

    def __init__(self, data: Path | str, split: str | None = None) -> None:
        self.yaml_path = Path(data)
        if self.yaml_path.is_dir():
            self.yaml_path = self.yaml_path / "data.yaml"
        if not self.yaml_path.is_file():
            raise DatasetError(f"data set description not found: {self.yaml_path}")
        try:
            spec = yaml.safe_load(self.yaml_path.read_text())
        except yaml.YAMLError as exc:
            raise DatasetError(f"{self.yaml_path} is not valid YAML: {exc}") from exc
        if not isinstance(spec, dict) or "names" not in spec:
            raise DatasetError(f"{self.yaml_path} has no 'names' (class names)")
        names = spec["names"]
        self.names: dict[int, str] = (
            {int(k): str(v) for k, v in names.items()} if isinstance(names, dict) else dict(enumerate(map(str, names)))
        )
        root = Path(spec.get("path") or self.yaml_path.parent)
        self.root = root if root.is_absolute() else (self.yaml_path.parent / root)
        if not self.root.is_dir():  # a moved data set: its yaml's folder is the root
            self.root = self.yaml_path.parent
        self.split = split or next((s for s in ("test", "val") if spec.get(s)), None)
        if self.split is None or not spec.get(self.split):
            raise DatasetError(f"{self.yaml_path} has no split {split or 'test/val'}")
        self.images = self._image_list(spec[self.split])
        if not self.images:
            raise DatasetError(f"split '{self.split}' of {self.yaml_path} has no images")

    def _image_list(self, entry: object) -> list[Path]:
        entries = entry if isinstance(entry, list) else [entry]
        images: list[Path] = []
        for item in entries:
            path = Path(str(item))
            path = path if path.is_absolute() else self.root / path
            if path.is_dir():
                images += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            elif path.suffix == ".txt" and path.is_file():
                lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
                images += [Path(line) if Path(line).is_absolute() else self.root / line for line in lines]
            else:
                raise DatasetError(f"split entry {item!r} of {self.yaml_path} is neither a folder nor a .txt list")
        return images

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[LabelledImage]:
        for image in self.images:
            classes, polygons = parse_label_file(label_path(image), len(self.names))
            yield LabelledImage(image, classes, polygons)
