"""What verifying a dataset costs: ``datasets/inspect.py verify=true`` (every chunk decoded) and
train.py's pre-flight (low-dim decoded, image chunks checked for presence and their 16-byte blosc
header), on the state dataset and on a 100k-step two-camera store.

    .venv/bin/python bench/dataset_verify.py               # bench/results/dataset_verify.json
    .venv/bin/python bench/dataset_verify.py --steps 5000  # a quick run, writes nothing

The two-camera store is written once with ``DatasetWriter`` into ``--workdir`` (84x84x3 uint8
``scene_rgb`` and ``wrist_rgb``, one chunk per frame, plus eef_pos, action and sim_state; smooth
images with a little noise, which compress about as poorly as rendered ones: 3.9 GB for 100k
steps) and reused by later runs. Each check runs twice, reporting the first (cold page cache if
the store was not just written) and the second pass, wall and CPU seconds: on a machine shared
with other jobs the CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from robopolicy.data import DatasetWriter
from robopolicy.data.verify import verify_dataset

REPO = Path(__file__).resolve().parents[1]
STATE_DATASET = REPO / "datasets" / "data" / "push_cube_main.zarr"
RESULTS = REPO / "bench" / "results" / "dataset_verify.json"
EPISODE, GROUP, SIZE = 200, 25, 84  # steps per episode, episodes per append, image side


def _frames(rng: np.random.Generator, n: int) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    base = np.stack([x * 3 % 256, y * 3 % 256, (x + y) % 256], -1).astype(np.int16)
    centre = (SIZE / 2 + SIZE / 3 * np.sin(np.arange(n) / 20)).astype(np.int16)[:, None, None]
    blob = ((x[None] - centre) ** 2 + (y[None] - SIZE // 2) ** 2 < 100)[..., None] * 80
    noise = rng.integers(0, 8, (n, SIZE, SIZE, 3), dtype=np.int16)
    return np.clip(base[None] + blob + noise, 0, 255).astype(np.uint8)


def write_camera_store(path: Path, n_steps: int) -> float:
    """A two-camera dataset of ``n_steps`` steps; returns the seconds it took."""
    meta = {
        "obs": {
            "scene_rgb": {"shape": [SIZE, SIZE, 3], "type": "rgb"},
            "wrist_rgb": {"shape": [SIZE, SIZE, 3], "type": "rgb"},
            "eef_pos": {"shape": [3], "type": "low_dim"},
        },
        "action": {"shape": [7]},
    }
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    spec = {"id": "robopolicy/PushCube-v0", "kwargs": {}}
    with DatasetWriter.create(path, meta, fps=10, env_spec=spec, overwrite=True) as writer:
        for group in range(max(1, n_steps // (EPISODE * GROUP))):
            episodes = [
                (
                    {
                        "scene_rgb": _frames(rng, EPISODE),
                        "wrist_rgb": _frames(rng, EPISODE)[:, ::-1].copy(),
                        "eef_pos": rng.normal(size=(EPISODE, 3)).astype(np.float32),
                        "action": rng.normal(size=(EPISODE, 7)).astype(np.float32),
                        "sim_state": rng.normal(size=(EPISODE, 20)),
                    },
                    {"seed": group * GROUP + i},
                )
                for i in range(GROUP)
            ]
            writer.append_episodes(episodes)
    return time.perf_counter() - start


def measure(path: Path, images: str) -> dict:
    """Two passes of ``verify_dataset``: wall and CPU seconds of each, and what was checked."""
    passes = []
    for _ in range(2):
        cpu = time.process_time()
        report = verify_dataset(path, images=images)
        passes.append(
            {"wall_s": round(report.seconds, 2), "cpu_s": round(time.process_time() - cpu, 2)}
        )
        assert report.ok, report.problems[:3]
    print(f"{path.name} images={images}: {passes} ({report.summary()})", flush=True)
    return {"first": passes[0], "second": passes[1], "checked": report.summary()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps of the camera store")
    parser.add_argument("--workdir", default="/tmp/robopolicy_verify_bench", help="where it goes")
    args = parser.parse_args()
    results: dict = {}
    if STATE_DATASET.exists():
        results["state dataset (push_cube_main.zarr)"] = {
            mode: measure(STATE_DATASET, mode) for mode in ("full", "presence")
        }
    store = Path(args.workdir) / f"two_cameras_{args.steps}.zarr"
    if not store.exists():
        print(f"writing {store} ...", flush=True)
        results["camera store written in s"] = round(write_camera_store(store, args.steps), 1)
    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    results[f"two-camera store, {args.steps} steps, {size / 1e9:.1f} GB"] = {
        "full (inspect.py verify=true)": measure(store, "full"),
        "presence (train.py pre-flight)": measure(store, "presence"),
    }
    print(json.dumps(results, indent=2))
    if args.steps == 100_000:
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
