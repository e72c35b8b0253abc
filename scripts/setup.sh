#!/usr/bin/env bash
# Set up what trtseg needs on a Debian/Ubuntu machine: system packages (FFmpeg, and for the
# tests a MariaDB server, an RTMP server, an RTSP server, an MQTT broker and Chromium) and a Python virtualenv.
#   scripts/setup.sh          runtime only (the demo)
#   scripts/setup.sh --test   runtime plus everything the test suite talks to
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

runtime_pkgs=(ffmpeg)
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
if (( ${#missing[@]} )); then
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
stamp=.venv/.requirements.sha
want_hash=$(cat requirements*.txt | sha256sum | cut -d' ' -f1)
req_file=requirements.txt
(( want_test )) && req_file=requirements-dev.txt
if [[ ! -f $stamp ]] || ! grep -qx "$req_file $want_hash" "$stamp"; then
  echo "[setup] installing Python packages from $req_file"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "$req_file"
  echo "$req_file $want_hash" > "$stamp"
fi
echo "[setup] ready"
