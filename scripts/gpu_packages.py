"""What a GPU node needs on top of requirements.txt, for the CUDA version its driver offers.

Used by ``scripts/setup.sh --gpu`` (standard library only: it runs before anything is installed):

    python scripts/gpu_packages.py major              # the CUDA major version (nvidia-smi, else nvcc)
    python scripts/gpu_packages.py plan [--cuda-major N]

``plan`` prints shell assignments for setup.sh: the pip requirements still missing in the running
interpreter (a CuPy wheel built for that CUDA major, a CUDA build of PyTorch from PyTorch's own
index, onnx2torch, PyNvVideoCodec, imageio-ffmpeg where the system has no ffmpeg) and PyTorch's
index URL. Packages already installed for the right CUDA are left alone, so a GPU image that ships
PyTorch and CuPy installs nothing twice. ``TRTSEG_CUDA_MAJOR`` overrides the detection.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata

# CUDA major -> (CuPy wheel, PyTorch wheel index tag). PyTorch's CUDA 12 builds run on any 12.x
# driver (minor-version compatibility); 12.8 and later get the newer build.
CUPY = {11: "cupy-cuda11x", 12: "cupy-cuda12x", 13: "cupy-cuda13x"}
TORCH_INDEX = "https://download.pytorch.org/whl/{tag}"
PYNVVIDEOCODEC = "pynvvideocodec>=2.0"
ONNX2TORCH = "onnx2torch>=1.5.15"
IMAGEIO_FFMPEG = "imageio-ffmpeg>=0.5"
NVCC_PATHS = ("nvcc", "/usr/local/cuda/bin/nvcc")

_SMI = re.compile(r"CUDA Version:\s*(\d+)\.(\d+)")
_NVCC = re.compile(r"release\s+(\d+)\.(\d+)")


class NoCuda(RuntimeError):
    """Neither nvidia-smi nor nvcc says which CUDA this machine has."""


def cuda_version_from_smi(text: str) -> tuple[int, int] | None:
    """The driver's CUDA version from ``nvidia-smi``'s banner ("CUDA Version: 13.0")."""
    match = _SMI.search(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def cuda_version_from_nvcc(text: str) -> tuple[int, int] | None:
    """The toolkit's version from ``nvcc --version`` ("Cuda compilation tools, release 12.4, V12.4.131")."""
    match = _NVCC.search(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _output(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None and not os.path.isfile(command[0]):
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def detect_cuda(
    environ: Mapping[str, str] = os.environ, output: Callable[[list[str]], str | None] = _output
) -> tuple[int, int]:
    """The CUDA version to install for: ``TRTSEG_CUDA_MAJOR``, else the driver's (nvidia-smi), else nvcc's."""
    forced = environ.get("TRTSEG_CUDA_MAJOR", "").strip()
    if forced:
        if not forced.isdigit():
            raise NoCuda(f"TRTSEG_CUDA_MAJOR must be a number such as 12 or 13, got {forced!r}")
        return (int(forced), 0)
    smi = output(["nvidia-smi"])
    version = cuda_version_from_smi(smi) if smi else None
    if version is None:
        for nvcc in NVCC_PATHS:
            text = output([nvcc, "--version"])
            version = cuda_version_from_nvcc(text) if text else None
            if version is not None:
                break
    if version is None:
        raise NoCuda("no NVIDIA driver or CUDA toolkit found (nvidia-smi, nvcc): --gpu needs an NVIDIA GPU node")
    return version


def torch_tag(version: tuple[int, int]) -> str:
    """PyTorch's wheel index tag for a CUDA version (cu130, cu128, cu126, cu118)."""
    major, minor = version
    if major >= 13:
        return "cu130"
    if major == 12:
        return "cu128" if minor >= 8 else "cu126"
    if major == 11:
        return "cu118"
    raise NoCuda(f"CUDA {major}.{minor} is too old: the GPU extras need CUDA 11.8 or later")


@dataclass
class Plan:
    """What to install, and what was found already there (for the log)."""

    cuda: tuple[int, int]
    torch_index: str
    requirements: list[str] = field(default_factory=list)  # from the default index (or --wheels)
    torch: list[str] = field(default_factory=list)  # from PyTorch's index (or --wheels)
    present: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)  # to uninstall first

    def shell(self) -> str:
        """Assignments setup.sh evaluates."""
        return "\n".join(
            [
                f"cuda_version={self.cuda[0]}.{self.cuda[1]}",
                f"torch_index={shlex.quote(self.torch_index)}",
                f"gpu_reqs=({' '.join(shlex.quote(r) for r in self.requirements)})",
                f"torch_reqs=({' '.join(shlex.quote(r) for r in self.torch)})",
                f"gpu_present=({' '.join(shlex.quote(p) for p in self.present)})",
                f"gpu_remove=({' '.join(shlex.quote(r) for r in self.remove)})",
            ]
        )


def installed_versions(names: list[str]) -> dict[str, str | None]:
    """Installed distribution versions of ``names`` in this interpreter (None: not installed)."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def torch_cuda_major() -> int | None:
    """CUDA major of the PyTorch installed in this interpreter (None: none, or a CPU build)."""
    try:
        import torch
    except Exception:
        return None
    version = getattr(torch.version, "cuda", None)
    return int(str(version).split(".")[0]) if version else None


def plan(cuda: tuple[int, int], installed: Mapping[str, str | None], have_ffmpeg: bool, torch_cuda: int | None) -> Plan:
    """The packages a GPU node still needs for ``cuda``, given what is installed (``torch_cuda``: the
    CUDA major the installed PyTorch was built for)."""
    major = cuda[0]
    result = Plan(cuda, TORCH_INDEX.format(tag=torch_tag(cuda)))  # refuses CUDA before 11
    cupy = CUPY[min(major, 13)]
    if installed.get(cupy):
        result.present.append(f"{cupy}=={installed[cupy]}")
    else:
        result.requirements.append(cupy)
    # Two CuPy wheels in one environment overwrite each other's files: the other CUDA's goes.
    result.remove.extend(name for name in CUPY.values() if name != cupy and installed.get(name))
    if installed.get("torch") and torch_cuda == major:
        result.present.append(f"torch=={installed['torch']}")
    else:
        result.torch.extend(["torch", "torchvision"])
    for requirement, name in ((ONNX2TORCH, "onnx2torch"), (PYNVVIDEOCODEC, "pynvvideocodec")):
        if installed.get(name):
            result.present.append(f"{name}=={installed[name]}")
        else:
            result.requirements.append(requirement)
    if not have_ffmpeg:
        if installed.get("imageio-ffmpeg"):
            result.present.append(f"imageio-ffmpeg=={installed['imageio-ffmpeg']}")
        else:
            result.requirements.append(IMAGEIO_FFMPEG)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("major", "plan"))
    parser.add_argument("--cuda-major", type=int, default=None, help="skip detection")
    parser.add_argument("--have-ffmpeg", choices=("yes", "no"), default=None, help="default: look on PATH")
    args = parser.parse_args(argv)
    try:
        cuda = (args.cuda_major, 0) if args.cuda_major else detect_cuda()
        if args.command == "major":
            sys.stdout.write(f"{cuda[0]}\n")
            return 0
        names = ["torch", "onnx2torch", "pynvvideocodec", "imageio-ffmpeg", *CUPY.values()]
        have_ffmpeg = shutil.which("ffmpeg") is not None if args.have_ffmpeg is None else args.have_ffmpeg == "yes"
        found = installed_versions(names)
        torch_cuda = torch_cuda_major() if found["torch"] else None
        sys.stdout.write(plan(cuda, found, have_ffmpeg, torch_cuda).shell() + "\n")
    except NoCuda as error:
        sys.stderr.write(f"[setup] {error}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
