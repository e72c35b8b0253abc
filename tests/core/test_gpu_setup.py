"""scripts/setup.sh --gpu: the CUDA version it finds and the packages it picks, and the scripts' flags.

The installs themselves need an NVIDIA driver and wheels (tools/gpu_smoke.sh runs them on the GPU
machine); what decides them is plain Python, tested here with the banners the tools really print.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gpu_packages", ROOT / "scripts" / "gpu_packages.py")
assert _spec is not None and _spec.loader is not None
gpu_packages = importlib.util.module_from_spec(_spec)
sys.modules["gpu_packages"] = gpu_packages
_spec.loader.exec_module(gpu_packages)

SMI = """+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0     |
|-----------------------------------------+------------------------+----------------------+
"""
NVCC = """nvcc: NVIDIA (R) Cuda compiler driver
Cuda compilation tools, release 12.4, V12.4.131
Build cuda_12.4.r12.4/compiler.34097967_0
"""
NOTHING: dict[str, str | None] = {}


def test_versions_from_the_tools_banners() -> None:
    assert gpu_packages.cuda_version_from_smi(SMI) == (13, 0)
    assert gpu_packages.cuda_version_from_nvcc(NVCC) == (12, 4)
    assert gpu_packages.cuda_version_from_smi("No devices were found") is None


def test_detection_prefers_the_driver_then_nvcc_then_fails_clearly() -> None:
    def tools(answers: dict[str, str]):  # type: ignore[no-untyped-def]
        return lambda command: answers.get(command[0])

    assert gpu_packages.detect_cuda({}, tools({"nvidia-smi": SMI, "nvcc": NVCC})) == (13, 0)
    assert gpu_packages.detect_cuda({}, tools({"/usr/local/cuda/bin/nvcc": NVCC})) == (12, 4)
    assert gpu_packages.detect_cuda({"TRTSEG_CUDA_MAJOR": "12"}, tools({"nvidia-smi": SMI})) == (12, 0)
    with pytest.raises(gpu_packages.NoCuda, match="nvidia-smi, nvcc"):
        gpu_packages.detect_cuda({}, tools({}))
    with pytest.raises(gpu_packages.NoCuda, match="TRTSEG_CUDA_MAJOR"):
        gpu_packages.detect_cuda({"TRTSEG_CUDA_MAJOR": "thirteen"}, tools({}))


def test_a_bare_cuda13_node_gets_everything_for_cuda13() -> None:
    plan = gpu_packages.plan((13, 0), NOTHING, have_ffmpeg=False, torch_cuda=None)
    assert plan.requirements == ["cupy-cuda13x", "onnx2torch>=1.5.15", "pynvvideocodec>=2.0", "imageio-ffmpeg>=0.5"]
    assert plan.torch == ["torch", "torchvision"] and plan.torch_index.endswith("/whl/cu130")
    assert plan.remove == [] and plan.present == []


@pytest.mark.parametrize(
    ("cuda", "cupy", "tag"),
    [((12, 4), "cupy-cuda12x", "cu126"), ((12, 8), "cupy-cuda12x", "cu128"), ((11, 8), "cupy-cuda11x", "cu118")],
)
def test_cuda12_and_11_nodes(cuda: tuple[int, int], cupy: str, tag: str) -> None:
    plan = gpu_packages.plan(cuda, NOTHING, have_ffmpeg=True, torch_cuda=None)
    assert plan.requirements[0] == cupy and plan.torch_index.endswith(tag)
    assert not any(r.startswith("imageio-ffmpeg") for r in plan.requirements)  # the system's FFmpeg serves


def test_what_the_image_ships_is_kept_and_a_wrong_cupy_replaced() -> None:
    installed = {"torch": "2.11.0+cu130", "cupy-cuda12x": "13.3.0", "onnx2torch": "1.5.15"}
    plan = gpu_packages.plan((13, 0), installed, have_ffmpeg=True, torch_cuda=13)
    assert plan.torch == [] and "torch==2.11.0+cu130" in plan.present and "onnx2torch==1.5.15" in plan.present
    assert plan.requirements == ["cupy-cuda13x", "pynvvideocodec>=2.0"] and plan.remove == ["cupy-cuda12x"]
    cpu_torch = gpu_packages.plan((13, 0), {"torch": "2.11.0"}, have_ffmpeg=True, torch_cuda=None)
    assert cpu_torch.torch == ["torch", "torchvision"]  # a CPU build of PyTorch is replaced


def test_too_old_cuda_is_refused() -> None:
    with pytest.raises(gpu_packages.NoCuda, match="too old"):
        gpu_packages.plan((10, 2), NOTHING, have_ffmpeg=True, torch_cuda=None)


def test_the_plan_is_shell_that_bash_reads() -> None:
    plan = gpu_packages.plan((12, 4), {"cupy-cuda13x": "14.2"}, have_ffmpeg=False, torch_cuda=None)
    script = plan.shell() + '\nprintf "%s|" "$cuda_version" "$torch_index" "${gpu_reqs[@]}" "${gpu_remove[@]}"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split("|")[:-1] == [
        "12.4", "https://download.pytorch.org/whl/cu126",
        "cupy-cuda12x", "onnx2torch>=1.5.15", "pynvvideocodec>=2.0", "imageio-ffmpeg>=0.5", "cupy-cuda13x",
    ]  # fmt: skip


def test_helper_runs_as_a_script() -> None:
    helper = str(ROOT / "scripts" / "gpu_packages.py")
    done = subprocess.run(
        [sys.executable, helper, "plan", "--cuda-major", "13", "--have-ffmpeg", "no"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert "torch_index=https://download.pytorch.org/whl/cu130" in done.stdout and "cuda_version=13.0" in done.stdout


@pytest.mark.parametrize("script", ["setup.sh", "demo.sh", "test.sh"])
def test_scripts_parse(script: str) -> None:
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], check=True, timeout=30)


@pytest.mark.parametrize(
    ("args", "message"), [(["--bogus"], "unknown option"), (["--wheels", "/nonexistent"], "--wheels")]
)
def test_setup_refuses_bad_flags_before_doing_anything(args: list[str], message: str) -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup.sh"), *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and message in done.stderr
