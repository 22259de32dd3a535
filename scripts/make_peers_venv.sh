#!/usr/bin/env bash
# Build .venv-peers/: LeRobot 0.3.2 beside robopolicy, for bench/bench_peers.py (not CI).
# It never shares the project's .venv: lerobot 0.3.2 needs gymnasium < 1.0, we need >= 1.1.
# A constraints file holds torch==2.13.0 (the local CPU wheel: a range admitting anything else
# pulls a multi-GB CUDA build), numpy < 2 (robopolicy's pin) and so pyarrow < 22 (22 and later
# need numpy 2; datasets imports it). pip's plan is checked with --dry-run before installing.
# torchvision: pip offers only CUDA-linked builds (0.28.0 for torch 2.13), whose ops fail to load;
# the bench declares their two op schemas before importing lerobot (tests/robomimic_compat.py).
# robopolicy goes in editable without its dependencies (no sim, robots or robomimic): only what
# its policies and data code import.
# Optional: DIFFUSION_POLICY_SRC=<checkout of real-stanford/diffusion_policy> is read by the bench
# at run time; its scheduler comes from diffusers, which lerobot already installs.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-peers
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
printf 'torch==2.13.0\nnumpy>=1.26,<2\npyarrow<22\n' > "$constraints"
PACKAGES=(
    "lerobot==0.3.2"
    "zarr>=3.0.8,<3.1" "numcodecs>=0.15,<0.17" google-crc32c
    "hydra-core>=1.3.2,<1.4" "omegaconf>=2.3,<2.4" safetensors
    "onnxruntime>=1.20" "onnx>=1.16" # sampler.runtime=onnx (robopolicy/policies/runtime.py)
)

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# pip, minus the "Location ... is ignored" lines this machine's local index settings cause
pip_() { "$VENV/bin/pip" "$@" 2> >(grep -v "^WARNING: Location" >&2); }
pip_ install -q --upgrade pip
plan="$(pip_ install --dry-run -c "$constraints" "${PACKAGES[@]}" | grep '^Would install' || true)"
other_torch="$(echo "$plan" | tr ' ' '\n' | grep -E '^(torch-|nvidia-|triton-)' |
    grep -v -x 'torch-2.13.0+cpu' || true)"
if [ -n "$other_torch" ]; then
    echo "[make_peers_venv] pip would install another torch or CUDA packages; stopping:" >&2
    echo "$other_torch" >&2
    exit 1
fi
pip_ install -q -c "$constraints" "${PACKAGES[@]}"
pip_ install -q --no-deps -e .
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md

import torch

assert torch.__version__ == "2.13.0+cpu", f"pip resolved torch {torch.__version__}"
versions = {name: md.version(name) for name in ("lerobot", "torchvision", "gymnasium", "numpy")}
print(f"[make_peers_venv] torch {torch.__version__}", *(f"{k} {v}" for k, v in versions.items()))
PY
