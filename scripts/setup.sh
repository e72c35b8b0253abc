#!/usr/bin/env bash
# Set up what trtseg needs on a Debian/Ubuntu machine: system packages (FFmpeg, and for the
# tests a MariaDB server, an RTMP server, an RTSP server, an MQTT broker and Chromium) and a Python virtualenv.
#   scripts/setup.sh                  runtime only (the demo)
#   scripts/setup.sh --test           runtime plus everything the test suite talks to
#   scripts/setup.sh --gpu            plus a GPU node's extras for its CUDA version (nvidia-smi, else nvcc):
#                                     CuPy, a CUDA build of PyTorch, onnx2torch, PyNvVideoCodec, and an FFmpeg
#                                     with libx264 (imageio-ffmpeg's, linked into .venv/bin) where there is none
#   scripts/setup.sh --wheels DIR     install Python packages only from the wheels in DIR (no registry, no apt)
# Flags combine: scripts/setup.sh --gpu --wheels /path/to/wheels
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
want_gpu=0
wheels=""
while (( $# )); do
  case "$1" in
    --test) want_test=1 ;;
    --gpu) want_gpu=1 ;;
    --wheels)
      [[ $# -ge 2 && -d "$2" ]] || { echo "[setup] --wheels needs a directory of wheels" >&2; exit 2; }
      wheels=$(cd "$2" && pwd); shift ;;
    *) echo "[setup] unknown option: $1 (use --test, --gpu, --wheels DIR)" >&2; exit 2 ;;
  esac
  shift
done

runtime_pkgs=(ffmpeg)
# A GPU node without FFmpeg gets imageio-ffmpeg's build (with libx264) below instead of the system's.
(( want_gpu )) && ! command -v ffmpeg >/dev/null && runtime_pkgs=()
python=${PYTHON:-python3}
# A fresh Debian has python3 but neither venv nor pip.
if ! command -v "$python" >/dev/null || ! "$python" -c "import ensurepip, venv" 2>/dev/null; then
  runtime_pkgs+=(python3 python3-venv python3-pip)
fi
test_pkgs=(mariadb-server nginx-light libnginx-mod-rtmp chromium mosquitto
           python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
           gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav)

pkgs=("${runtime_pkgs[@]}")
(( want_test )) && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )) && [[ -n $wheels ]]; then
  # --wheels means no registry: the tests that need these servers skip with the reason.
  echo "[setup] offline (--wheels): not installing system packages: ${missing[*]}"
elif (( ${#missing[@]} )); then
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  echo "[setup] installing system packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts nginx and mosquitto from their packages; the tests run their own instances.
  $sudo_cmd systemctl disable --now nginx >/dev/null 2>&1 || $sudo_cmd service nginx stop >/dev/null 2>&1 || true
  $sudo_cmd systemctl disable --now mosquitto >/dev/null 2>&1 || $sudo_cmd service mosquitto stop >/dev/null 2>&1 || true
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "[setup] creating .venv with $($python --version)"
  $python -m venv .venv
fi
pip=(.venv/bin/python -m pip install -q)
[[ -n $wheels ]] && pip+=(--no-index --find-links "$wheels")
stamp=.venv/.requirements.sha
want_hash=$(cat requirements*.txt | sha256sum | cut -d' ' -f1)
req_file=requirements.txt
(( want_test )) && req_file=requirements-dev.txt
if [[ ! -f $stamp ]] || ! grep -qx "$req_file $want_hash" "$stamp"; then
  echo "[setup] installing Python packages from $req_file${wheels:+ (wheels in $wheels)}"
  [[ -z $wheels ]] && .venv/bin/python -m pip install -q --upgrade pip
  "${pip[@]}" -r "$req_file"
  echo "$req_file $want_hash" > "$stamp"
fi

if (( want_gpu )); then
  # A GPU image often ships PyTorch and CuPy in its system Python: let the venv see them rather
  # than install gigabytes again (the venv's own packages still come first).
  if ! .venv/bin/python -c "import torch" 2>/dev/null && "$python" -c "import torch" 2>/dev/null; then
    echo "[setup] using the system Python's PyTorch/CuPy (include-system-site-packages)"
    sed -i 's/^include-system-site-packages = false/include-system-site-packages = true/' .venv/pyvenv.cfg
  fi
  gpu_plan=$(.venv/bin/python scripts/gpu_packages.py plan)  # exits here, with the reason, on a machine without CUDA
  eval "$gpu_plan"
  echo "[setup] GPU node, CUDA $cuda_version${gpu_present[*]:+; already there: ${gpu_present[*]}}"
  if (( ${#gpu_remove[@]} )); then
    echo "[setup] removing CuPy built for another CUDA: ${gpu_remove[*]}"
    .venv/bin/python -m pip uninstall -q -y "${gpu_remove[@]}"
  fi
  if (( ${#torch_reqs[@]} )); then
    echo "[setup] installing ${torch_reqs[*]} (${wheels:-$torch_index})"
    if [[ -n $wheels ]]; then "${pip[@]}" "${torch_reqs[@]}"; else "${pip[@]}" --index-url "$torch_index" "${torch_reqs[@]}"; fi
  fi
  if (( ${#gpu_reqs[@]} )); then
    echo "[setup] installing ${gpu_reqs[*]}"
    "${pip[@]}" "${gpu_reqs[@]}"
  fi
  if ! command -v ffmpeg >/dev/null && [[ ! -x .venv/bin/ffmpeg ]]; then
    # imageio-ffmpeg's static build has libx264; the scripts put .venv/bin on PATH for the pushers.
    ln -sf "$(.venv/bin/python -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')" .venv/bin/ffmpeg
    echo "[setup] ffmpeg: $(readlink .venv/bin/ffmpeg)"
  fi
  .venv/bin/python - <<'EOF'
import cupy, torch, PyNvVideoCodec  # noqa: F401  (fails here, clearly, when a GPU extra is missing)
print(f"[setup] GPU extras: torch {torch.__version__} (CUDA {torch.version.cuda}), cupy {cupy.__version__}, "
      f"PyNvVideoCodec {getattr(PyNvVideoCodec, '__version__', '?')}, GPUs visible: {cupy.cuda.runtime.getDeviceCount()}")
EOF
fi
echo "[setup] ready"
