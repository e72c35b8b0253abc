"""datasets.yolo: the written files are a well-formed YOLO segmentation data set."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from datasets.scenes import CLASS_NAMES, generate_scene, polygon_to_mask
from datasets.yolo import SPLIT_SEED_BASE, write_yolo_dataset

COUNTS = {"train": 4, "val": 2, "test": 2}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("yolo")
    write_yolo_dataset(root, COUNTS, workers=1)
    return root


def test_data_yaml(dataset: Path) -> None:
    cfg = yaml.safe_load((dataset / "data.yaml").read_text())
    assert cfg["names"] == dict(enumerate(CLASS_NAMES))
    assert Path(cfg["path"]) == dataset.resolve()
    for split in COUNTS:
        assert (Path(cfg["path"]) / cfg[split]).is_dir()


def test_every_image_has_well_formed_labels(dataset: Path) -> None:
    for split, n in COUNTS.items():
        images = sorted((dataset / "images" / split).glob("*.jpg"))
        labels = sorted((dataset / "labels" / split).glob("*.txt"))
        assert len(images) == len(labels) == n
        assert [p.stem for p in images] == [p.stem for p in labels]
        for img, lab in zip(images, labels, strict=True):
            im = cv2.imread(str(img))
            assert im is not None and im.shape == (720, 1280, 3)
            for line in lab.read_text().splitlines():
                parts = line.split()
                assert int(parts[0]) in range(len(CLASS_NAMES))
                coords = np.array(parts[1:], float)
                assert len(coords) >= 6 and len(coords) % 2 == 0
                assert coords.min() >= 0.0 and coords.max() <= 1.0


def test_labels_are_the_scene_polygons(dataset: Path) -> None:
    lab = dataset / "labels" / "train" / f"train_{SPLIT_SEED_BASE['train'] + 1:09d}.txt"
    scene = generate_scene(SPLIT_SEED_BASE["train"] + 1)
    lines = lab.read_text().splitlines()
    assert len(lines) == len(scene.instances)
    for line, ins in zip(lines, scene.instances, strict=True):
        parts = line.split()
        assert int(parts[0]) == ins.class_id
        poly = np.array(parts[1:], float).reshape(-1, 2) * [1280, 720]
        a, b = polygon_to_mask(poly, (720, 1280)), polygon_to_mask(ins.polygon, (720, 1280))
        assert (a & b).sum() / (a | b).sum() > 0.98


def test_splits_use_disjoint_seeds(dataset: Path) -> None:
    seeds = {s: {int(p.stem.split("_")[1]) for p in (dataset / "images" / s).glob("*.jpg")} for s in COUNTS}
    assert not seeds["train"] & seeds["val"] and not seeds["train"] & seeds["test"] and not seeds["val"] & seeds["test"]


def test_workers_write_the_same_labels(dataset: Path, tmp_path: Path) -> None:
    write_yolo_dataset(tmp_path, {"val": 2}, workers=2)
    for p in (dataset / "labels" / "val").glob("*.txt"):
        assert (tmp_path / "labels" / "val" / p.name).read_text() == p.read_text()


def test_unknown_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_yolo_dataset(tmp_path, {"holdout": 1})
