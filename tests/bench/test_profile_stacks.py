"""The py-spy stack reader that says where a segmenter's time goes (bench/profile_stacks.py)."""

from __future__ import annotations

from pathlib import Path

from bench.profile_stacks import main, parse, summarise

BATCH = "thread (23211): segmenter-cpu-d9714e3b40e0-0-batch_{n};Thread.run (threading.py:982)"
INFER = "infer_grouped (/srv/app/trtseg/pipeline.py:75)"
RAW = "\n".join(
    [
        f"{BATCH.format(n=0)};{INFER};process_masks (/srv/app/engines/postprocess.py:183) 6",
        f"{BATCH.format(n=1)};{INFER};Session.run (/v/lib/python3.12/site-packages/onnxruntime/capi/x.py:220) 3",
        "thread (23300): segment-conn;Connection._fill (/srv/app/trtseg/channel.py:90) 1",
        "not a stack line",
    ]
)


def test_samples_are_shared_by_thread_kind_own_code_and_callers() -> None:
    report = summarise(parse(RAW.splitlines()), top=10)
    assert report["samples"] == 10
    threads = {row["name"]: row["share"] for row in report["threads"]}
    # the two batch threads differ only by ids: one kind; a function named process_* is no thread
    assert threads == {
        "thread (#): segmenter-cpu-#-0-batch_0": 0.6,
        "thread (#): segmenter-cpu-#-0-batch_1": 0.3,
        "thread (#): segment-conn": 0.1,
    }
    own = {row["name"]: row["samples"] for row in report["self"]}
    assert own == {
        "process_masks (engines/postprocess.py)": 6,
        "Session.run (onnxruntime/capi/x.py)": 3,
        "Connection._fill (trtseg/channel.py)": 1,
    }
    inclusive = {row["name"]: row["samples"] for row in report["inclusive"]}
    assert inclusive["infer_grouped (trtseg/pipeline.py)"] == 9
    assert inclusive["Thread.run (threading.py)"] == 9


def test_the_command_writes_json(tmp_path: Path) -> None:
    raw = tmp_path / "segmenter-1cams-1.txt"
    raw.write_text(RAW)
    out = tmp_path / "summary.json"
    assert main([str(raw), "--json", str(out)]) == 0
    assert '"samples": 10' in out.read_text()
