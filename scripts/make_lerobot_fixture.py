"""Write tests/fixtures/lerobot_v21/ or lerobot_v30/: a tiny dataset made by LeRobot's own writer.

Run in the peers' venv (``bash scripts/make_peers_venv.sh`` builds it), from the repository root.
With its lerobot 0.3.2 this writes codebase v2.1::

    HF_HUB_OFFLINE=1 .venv-peers/bin/python scripts/make_lerobot_fixture.py

and with lerobot 0.4.4 first on the path, codebase v3.0. lerobot 0.4.4 declares torch < 2.11, so
pip cannot install it beside torch 2.13; it imports and writes datasets on 2.13 all the same once
installed without its dependencies into a folder of its own, with the two it adds over 0.3.2::

    .venv-peers/bin/pip install --no-deps --target /work/venvs/lerobot044-site \
        lerobot==0.4.4 "accelerate>=1.10,<2" "datasets>=4,<5"
    HF_HUB_OFFLINE=1 PYTHONPATH=/work/venvs/lerobot044-site .venv-peers/bin/python \
        scripts/make_lerobot_fixture.py

It calls ``LeRobotDataset.create`` / ``add_frame`` / ``save_episode``, exactly as a LeRobot user
recording demos would: a 6-D float32 state, a 4-D float32 action, one 32x32 camera stored as
video (LeRobot's default encoding: AV1 through libsvtav1, yuv420p, crf 30), three episodes of
9-11 frames at 10 fps, two task strings (the last episode switches task half-way, so one episode
holds two tasks). The frames are smooth gradients with a moving square, so that a lossy codec
has something realistic to compress. ``frames.npz`` beside the dataset keeps the exact uint8
frames that were given to LeRobot: tests/test_convert_lerobot.py measures the PSNR of the
converted images against them. Nothing here touches the network (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench/: its torchvision shim, which LeRobot's import needs

from bench.peer_policies import declare_torchvision_ops  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures"
FPS = 10  # frames per second recorded in meta/info.json
SIZE = 32  # camera height = width, pixels
LENGTHS = (10, 9, 11)  # frames per episode
TASKS = ("push the cube to the target", "lift the cube")
REPO_ID = "robopolicy/fixture"  # a name only: the dataset never leaves the disk


def features() -> dict:
    return {
        "observation.state": {"dtype": "float32", "shape": (6,), "names": None},
        "action": {"dtype": "float32", "shape": (4,), "names": ["dx", "dy", "dz", "grip"]},
        "observation.images.front": {
            "dtype": "video",
            "shape": (SIZE, SIZE, 3),
            "names": ["height", "width", "channels"],
        },
    }


def frame_image(episode: int, step: int) -> np.ndarray:
    """A gradient background with a bright square that moves a pixel or two per step."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    image = np.stack([x * 6 + 20 * episode, y * 6, (x + y) * 3 + 40], axis=-1)
    top, left = 4 + step, 6 + 2 * step % (SIZE - 8)
    image[top : top + 8, left : left + 8] = (230, 200, 60)
    return np.clip(image, 0, 255).astype(np.uint8)


def main() -> None:
    declare_torchvision_ops()
    from lerobot.datasets.lerobot_dataset import CODEBASE_VERSION, LeRobotDataset

    name = "lerobot_" + CODEBASE_VERSION.replace(".", "")  # lerobot_v21, lerobot_v30
    fixture = FIXTURES / name
    if fixture.exists():
        shutil.rmtree(fixture)
    rng = np.random.default_rng(0)
    dataset = LeRobotDataset.create(REPO_ID, FPS, root=fixture, features=features())
    new_api = CODEBASE_VERSION >= "v3.0"  # lerobot 0.4 takes the task inside the frame
    frames = {}
    for episode, length in enumerate(LENGTHS):
        images = []
        for step in range(length):
            image = frame_image(episode, step)
            images.append(image)
            task = TASKS[1] if episode == 2 and step >= length // 2 else TASKS[episode % 2]
            frame = {
                "observation.state": rng.normal(size=6).astype(np.float32),
                "action": rng.uniform(-1, 1, size=4).astype(np.float32),
                "observation.images.front": image,
            }
            if new_api:
                dataset.add_frame({**frame, "task": task})
            else:
                dataset.add_frame(frame, task=task)
        dataset.save_episode()
        frames[f"episode_{episode}"] = np.stack(images)
    if new_api:
        dataset.finalize()  # v3.0: closes the parquet writers (their footers)
    np.savez_compressed(FIXTURES / f"{name}_frames.npz", **frames)
    size = sum(f.stat().st_size for f in fixture.rglob("*") if f.is_file())
    print(f"wrote {fixture} ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
