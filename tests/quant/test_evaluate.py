"""The evaluator end to end: a real data set written by datasets.yolo, a real model, real errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.evaluate import accuracy_table, evaluate, format_table
from engines.quant.dataset import DatasetError, YoloDataset, label_path, parse_label_file
from tests.quant.conftest import SMALL_IMGSZ


def test_dataset_reading(scenes_dataset: Path) -> None:
    data = YoloDataset(scenes_dataset)
    assert data.split == "test" and len(data) == 6
    assert data.names == {0: "charging_cable", 1: "e_bike", 2: "person"}
    items = list(data)
    assert sum(len(i.class_ids) for i in items) > 0
    item = next(i for i in items if len(i.class_ids))
    boxes = item.boxes((360, 640))
    assert np.all(boxes[:, 2:] > boxes[:, :2]) and boxes.max() <= 640


def test_label_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "labels" / "a.txt"
    bad.parent.mkdir()
    bad.write_text("0 0.1 0.1 0.2 0.1 0.2 0.2\n7 0.1 0.1 0.2 0.1 0.2 0.2\n")
    with pytest.raises(DatasetError, match=r"a\.txt:2: class 7"):
        parse_label_file(bad, 3)
    bad.write_text("0 0.1 0.1 0.2\n")
    with pytest.raises(DatasetError, match=r"a\.txt:1: a polygon needs"):
        parse_label_file(bad, 3)
    bad.write_text("0 12 40 60 40 60 80\n")
    with pytest.raises(DatasetError, match="normalised"):
        parse_label_file(bad, 3)
    assert label_path(Path("/d/images/test/x.jpg")) == Path("/d/labels/test/x.txt")
    with pytest.raises(DatasetError, match="not found"):
        YoloDataset(tmp_path / "nope.yaml")
    (tmp_path / "data.yaml").write_text("names: [a]\nval: images/val\n")
    with pytest.raises(DatasetError, match="neither a folder"):
        YoloDataset(tmp_path)


def test_evaluate_runs_the_engine(seg_model: Path, scenes_dataset: Path) -> None:
    result = evaluate(seg_model, scenes_dataset, imgsz=SMALL_IMGSZ, max_images=3)
    assert result.images == 3 and result.instances > 0
    for value in (result.box_map50, result.box_map, result.mask_map50, result.mask_map):
        assert 0.0 <= value <= 1.0
    assert result.box_map <= result.box_map50 + 1e-12
    assert set(result.per_class) <= {"charging_cable", "e_bike", "person"}
    table = format_table({"fp32": result, "again": result})
    assert table.count("\n") == 4 and "+0.00" in table


def test_class_mismatch_is_refused(seg_model: Path, tmp_path: Path, scenes_dataset: Path) -> None:
    text = scenes_dataset.read_text().replace("person", "bicycle")
    other = tmp_path / "data.yaml"
    other.write_text(text)
    with pytest.raises(ValueError, match="differ from the data set"):
        accuracy_table({"fp32": seg_model}, other, imgsz=SMALL_IMGSZ, max_images=1)
