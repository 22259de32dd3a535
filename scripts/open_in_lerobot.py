"""Open a LeRobot dataset directory with LeRobot's own ``LeRobotDataset`` and print a few items.

Checks that what ``datasets/convert.py zarr-to-lerobot`` writes is a dataset LeRobot reads.
Runs in the peers' venv (``bash scripts/make_peers_venv.sh``; lerobot 0.3.2, which reads v2.1;
with ``PYTHONPATH=/work/venvs/lerobot044-site``, lerobot 0.4.4, which reads v3.0: see
scripts/make_lerobot_fixture.py for that install), offline::

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv-peers/bin/python scripts/open_in_lerobot.py DIR \
        [--compare SOURCE.zarr]

Prints the dataset's size, fps, tasks and features, then for the first frame, the last frame
of the first episode, the first frame of the second episode and the last frame: episode and
frame index, task and each camera frame's shape and mean; with ``--compare ZARR`` (the dataset
the export came from) whether every numeric feature equals the zarr's row exactly and each
camera's PSNR against the zarr's frame. Exits 1 if an item's episode or frame index is not
where the episode metadata puts it, or a value differs.

Video frames: LeRobot 0.3.2 decodes through torchcodec or torchvision's ``VideoReader``, and
neither works in this venv (the only torchcodec wheel for torch 2.13 is CUDA-linked and fails to
load; torchvision 0.28 removed ``VideoReader``), for LeRobot's own datasets as for ours. So by
default (``--video-backend standin``) the one function LeRobot calls to decode,
``decode_video_frames(path, timestamps, tolerance_s, backend)``, is replaced by ``pyav_frames``
below: the same contract (each requested timestamp's nearest frame, within ``tolerance_s``, as
float32 CHW in [0, 1]) through PyAV, LeRobot's own video dependency. Everything else (metadata,
parquet loading, timestamp checks, episode indexing, the timestamp query) is LeRobot's code.
``--video-backend pyav`` or ``torchcodec`` uses LeRobot's decoder unchanged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench/: its torchvision shim, which LeRobot's import needs

from bench.peer_policies import declare_torchvision_ops  # noqa: E402

REPO_ID = "local/exported"  # a name only: with root= and the hub offline nothing is downloaded
STANDIN = "standin"  # --video-backend value that decodes with pyav_frames


def pyav_frames(video_path, timestamps: list[float], tolerance_s: float, backend=None):
    """Each timestamp's nearest frame of ``video_path`` as float32 (N, C, H, W) in [0, 1]."""
    import av
    import torch

    with av.open(str(video_path)) as container:
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    times = torch.tensor([t for t, _ in frames])
    picked = []
    for ts in timestamps:
        distance, nearest = (times - ts).abs().min(0)
        assert distance < tolerance_s, f"{video_path}: no frame within {tolerance_s} s of {ts}"
        picked.append(torch.from_numpy(frames[int(nearest)][1]).permute(2, 0, 1))
    return torch.stack(picked).float() / 255


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="LeRobot dataset directory")
    parser.add_argument(
        "--video-backend", default=STANDIN, help=f"{STANDIN} (default), pyav or torchcodec"
    )
    parser.add_argument(
        "--compare", type=Path, help="the zarr the export came from: check items against it"
    )
    args = parser.parse_args()
    declare_torchvision_ops()
    from lerobot.datasets import lerobot_dataset
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    backend = args.video_backend
    if backend == STANDIN:
        lerobot_dataset.decode_video_frames = pyav_frames
        backend = "pyav"
    dataset = LeRobotDataset(REPO_ID, root=args.root, video_backend=backend)
    meta = dataset.meta
    print(
        f"LeRobotDataset {args.root}: {dataset.num_episodes} episodes, {dataset.num_frames} frames,"
        f" fps {dataset.fps}, codebase {meta.info['codebase_version']}"
    )
    tasks = list(meta.tasks.values() if isinstance(meta.tasks, dict) else meta.tasks.index)
    print(f"tasks: {tasks}")
    print(f"features: {list(meta.features)}")
    ends = _episode_ends(dataset)
    checks = [(0, 0, 0), (ends[0] - 1, 0, ends[0] - 1)]
    if len(ends) > 1:
        checks.append((ends[0], 1, 0))
    checks.append((ends[-1] - 1, len(ends) - 1, ends[-1] - 1 - (ends[-2] if len(ends) > 1 else 0)))
    source = _source(args.compare, args.root)
    wrong = 0
    for index, episode, frame in checks:
        item = dataset[index]
        found = (int(item["episode_index"]), int(item["frame_index"]))
        wrong += found != (episode, frame)
        parts = [f"[{index}] episode {found[0]} frame {found[1]} task {item['task']!r}"]
        for key in meta.camera_keys:
            parts.append(f"{key} {tuple(item[key].shape)} mean {float(item[key].mean()):.3f}")
        if source is not None:
            same, psnr = _compare(item, index, source, meta)
            wrong += not same
            parts.append(f"low-dim equal to the zarr: {same}; PSNR vs zarr " + psnr)
        print("  " + "; ".join(parts))
    print("items: " + ("ok" if not wrong else f"{wrong} problem(s)"))
    return 1 if wrong else 0


def _episode_ends(dataset) -> list[int]:
    """Each episode's end row: LeRobot 0.3 keeps them in ``episode_data_index``, 0.4 in the
    episodes metadata."""
    if hasattr(dataset, "episode_data_index"):
        return dataset.episode_data_index["to"].tolist()
    return [int(end) for end in dataset.meta.episodes["dataset_to_index"]]


def _source(path: Path | None, root: Path):
    """The zarr dataset the export came from, and LeRobot's name -> our key (its sidecar)."""
    if path is None:
        return None
    import json

    from robopolicy.data import ReplayBuffer

    keys = json.loads((root / "meta/robopolicy.json").read_text())["lerobot_keys"]
    return ReplayBuffer.open(path), keys


def _compare(item: dict, index: int, source, meta) -> tuple[bool, str]:
    """Whether an item's numeric features equal the zarr's row, and each camera's PSNR."""
    import numpy as np

    buffer, keys = source
    same = True
    for name, ours in keys.items():
        row = buffer.data[ours][index]
        if name in meta.camera_keys:
            continue
        value = item[name].numpy().reshape(np.shape(row))
        # LeRobot's loader hands float64 columns (our sim_state) out as float32 tensors
        same &= bool(np.array_equal(value, np.asarray(row).astype(value.dtype)))
    psnrs = []
    for name in meta.camera_keys:
        frame = item[name].permute(1, 2, 0).numpy() * 255
        mse = float(((frame - buffer.data[keys[name]][index].astype(np.float64)) ** 2).mean())
        psnrs.append(f"{name.rsplit('.', 1)[-1]} {10 * np.log10(255**2 / max(mse, 1e-12)):.1f} dB")
    return same, ", ".join(psnrs)


if __name__ == "__main__":
    sys.exit(main())
