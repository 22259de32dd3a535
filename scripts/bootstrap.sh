#!/usr/bin/env bash
# Create .venv and install robopolicy with everything it needs, on a fresh machine of this kind.
# Idempotent: does nothing when the venv already matches pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="libusb-1.0-0 libosmesa6 libegl1 libegl-mesa0 libgl1-mesa-dri libgles2"
missing=""
for pkg in $APT_PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "[bootstrap] apt packages:$missing"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get install -y -q $missing >/dev/null 2>&1 || {
        $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q $missing >/dev/null; }
fi

stamp=".venv/.robopolicy-installed"
want="$(cat pyproject.toml setup.py scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# pip, minus the "Location ... is ignored" lines this machine's local index settings cause
pip_install() { .venv/bin/pip install -q "$@" 2> >(grep -v "^WARNING: Location" >&2); }
pip_install --upgrade pip
# torch first and exactly: the local CPU wheel. Everything after it must reuse this build.
pip_install "torch==2.13.0"
pip_install -e ".[dev]" "torch==2.13.0"
.venv/bin/python - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0"), f"pip resolved torch {torch.__version__}, expected 2.13.0"
print(f"[bootstrap] torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
PY
echo "$want" > "$stamp"
