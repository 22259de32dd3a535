"""Teleoperation: the keyboard device read from a real pipe, and the whole recording journey on
the sim arm (datasets/teleop.py in its own process, keys written into its stdin) -> a dataset that
opens and validates -> train.py trains a policy on it."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from tiny_runs import TINY_POLICY

from hardware.teleop import KeyboardTeleop, SpaceMouseTeleop, make_teleop
from robopolicy.data.errors import DatasetError

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1"}
TICK = 0.1  # seconds per step of the task's 10 Hz loop


@pytest.fixture
def pipe():
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        with contextlib.suppress(OSError):  # the test may have closed it already
            os.close(fd)


def test_keys_become_ee_deltas_gripper_toggles_and_events(pipe):
    read_end, write_end = pipe
    teleop = KeyboardTeleop(read_end, speed=0.5)
    os.write(write_end, b"wwaRj ")
    first = teleop.poll()
    np.testing.assert_allclose(first.translation, [1.0, 0.5, 0.5])  # two w presses: a full step
    np.testing.assert_allclose(first.rotation, [0.0, 0.0, 0.5])  # j: yaw +, upper case too
    assert first.gripper == 1.0 and first.events == ()  # space closed the gripper
    os.write(write_end, b"wsdnyx")
    second = teleop.poll()
    np.testing.assert_allclose(second.translation, [0.0, -0.5, 0.0])  # w and s cancel
    assert second.events == ("start", "save", "discard")
    assert second.gripper == 1.0  # stays closed until toggled again
    np.testing.assert_allclose(second.ee_delta_action(), [0, -0.5, 0, 0, 0, 0, 1.0])
    idle = teleop.poll()  # nothing typed: no motion, nothing blocks
    np.testing.assert_allclose(idle.ee_delta_action()[:6], 0.0)
    os.close(write_end)
    assert "quit" in teleop.poll().events  # the end of the stream quits


def test_bad_teleop_requests_fail_clearly(pipe):
    with pytest.raises(ValueError, match=r"speed must be in \(0, 1\]; got 2"):
        KeyboardTeleop(pipe[0], speed=2)
    with pytest.raises(ValueError, match="unknown teleop device 'joystick'"):
        make_teleop("joystick")


def test_spacemouse_without_device_says_what_is_missing():
    try:
        import pyspacemouse  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="'pyspacemouse' package: pip install pyspacemouse"):
            SpaceMouseTeleop()
        return
    with pytest.raises(RuntimeError, match="no SpaceMouse could be opened"):
        SpaceMouseTeleop()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["device=joystick"], "device=joystick: expected one of keyboard, spacemouse"),
        (["hardware=kuka"], "hardware=kuka: Could not find 'hardware/kuka'; expected one of"),
        (["--out", "x"], "--out: expected KEY=VALUE arguments"),
        (
            ["task.env_kwargs.action_space=joint_pos"],
            "task.env_kwargs.action_space=joint_pos: expected ee_delta",
        ),
    ],
)
def test_bad_arguments_are_one_line_with_status_2(args, line):
    done = subprocess.run(
        [sys.executable, "datasets/teleop.py", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"teleop.py: error: {line}"), done.stderr


# ---- the journey ----------------------------------------------------------------------------


def start_teleop(*overrides: str) -> subprocess.Popen:
    """datasets/teleop.py on the sim arm (state observations), keys read from its stdin."""
    command = [sys.executable, "datasets/teleop.py", "task.env_kwargs.obs_mode=state", *overrides]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_ready(process) -> None:
    """Read the recorder's stderr up to its key help (printed when the loop starts)."""
    for line in process.stderr:
        if line.startswith("keys:"):
            return
    raise AssertionError("datasets/teleop.py ended before it was ready")


def finish(process) -> tuple[str, str]:
    """The recorder's exit, and the rest of its stdout and stderr."""
    try:
        process.wait(timeout=120)
        return process.stdout.read(), process.stderr.read()
    finally:
        process.kill()


def drive(process, script):
    """Wait for the recorder's key help, then type ``script``: (keys, seconds after) pairs."""
    wait_until_ready(process)
    for keys, pause in script:
        process.stdin.write(keys)
        process.stdin.flush()
        time.sleep(pause)
    process.stdin.close()  # the end of the input quits the recorder


@pytest.mark.slow
def test_teleop_on_the_sim_arm_records_a_dataset_that_trains(tmp_path):
    from robopolicy.data.reader import ReplayBuffer

    dataset = tmp_path / "teleop.zarr"
    process = start_teleop(f"out={dataset}", "speed=0.5")
    push_x = [("n", TICK)] + [("w", TICK)] * 8 + [(" ", 3 * TICK), ("y", 2 * TICK)]
    push_y = [("n", TICK)] + [("a", TICK)] * 6 + [("y", 2 * TICK)]
    thrown_away = [("n", TICK), ("r", TICK), ("r", TICK), ("x", TICK)]
    try:
        drive(process, push_x + push_y + thrown_away)
    finally:
        stdout, stderr = finish(process)
    assert process.returncode == 0, stderr[-3000:]
    assert "saved 2 episodes" in stdout and "discarded an episode" in stderr

    buffer = ReplayBuffer.open(dataset)  # validates the layout, shapes and episode ends
    assert buffer.n_episodes == 2 and buffer.fps == 10.0
    assert list(buffer.episode_meta["seed"]) == [0, 1]
    assert set(buffer.shape_meta["obs"]) == {
        "joint_pos",
        "eef_pos",
        "eef_quat",
        "gripper_pos",
        "object_state",
        "object_pos",  # the sim arm publishes the env's relative observations as sensors too
        "eef_to_object",
        "object_to_goal",
    }
    first, second = buffer.get_episode(0), buffer.get_episode(1)
    # the recorded actions are the commanded ee_delta: +x at half a step a w press (8 of them;
    # presses that a loaded machine delivers in one tick add up, to at most a full step)
    assert (first["action"][:, 0] >= 0).all() and first["action"][:, 0].sum() >= 2.0
    assert (first["action"][:, 1] == 0).all()
    assert first["action"][-1, 6] == 1.0  # gripper closed by the space bar
    assert (second["action"][:, 1] >= 0).all() and second["action"][:, 1].sum() >= 1.5  # 6 a's
    assert (second["action"][:, 0] == 0).all()
    # ... and the sim arm followed them
    assert first["eef_pos"][-1, 0] - first["eef_pos"][0, 0] > 0.05
    assert second["eef_pos"][-1, 1] - second["eef_pos"][0, 1] > 0.03
    assert first["gripper_pos"][-1, 0] < first["gripper_pos"][0, 0]

    run_dir = tmp_path / "run"
    training = subprocess.run(
        [
            sys.executable,
            "train.py",
            "task=push_cube",
            f"task.dataset_path={dataset}",
            "task.env_kwargs.obs_mode=state",
            "task.max_episode_steps=12",
            *TINY_POLICY,
            "algo.num_steps=20",
            "algo.warmup_steps=2",
            "algo.eval_every=0",
            "data.batch_size=8",
            "data.val_ratio=0.5",
            "eval.n_episodes=2",
            "eval.n_envs=1",
            "eval.video_episodes=0",
            "torch_threads=1",
            "logger=none",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert training.returncode == 0, training.stderr[-3000:]
    summary = json.loads((run_dir / "eval.json").read_text())
    assert summary["n_episodes"] == 2


@pytest.mark.parametrize("stop", ["end of input", "ctrl-c"])
def test_a_run_that_saves_no_episode_leaves_no_dataset(tmp_path, stop):
    dataset = tmp_path / "teleop.zarr"
    process = start_teleop(f"out={dataset}")
    try:
        wait_until_ready(process)
        assert dataset.exists()  # made when the recorder starts
        process.stdin.write("n")  # an episode starts recording, and is never saved
        process.stdin.flush()
        time.sleep(5 * TICK)
        if stop == "ctrl-c":
            process.send_signal(signal.SIGINT)
        else:
            process.stdin.close()
    finally:
        stdout, stderr = finish(process)
    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr and "discarded an episode" in stderr
    assert f"saved no episode; removed {dataset}" in stdout
    assert not dataset.exists()


def test_append_onto_a_dataset_with_no_episode_saves_its_first(tmp_path):
    """A store that a run made and saved nothing to (what teleop left before it removed them)."""
    from robopolicy.config.collect_plan import compose
    from robopolicy.data.reader import ReplayBuffer
    from robopolicy.data.writer import DatasetWriter
    from robopolicy_cli.teleop import task_shape_meta

    dataset = tmp_path / "empty.zarr"
    composed = compose("teleop", ["task.env_kwargs.obs_mode=state"])
    task = OmegaConf.to_container(composed.task, resolve=True)
    env_spec = {"id": task["env_id"], "kwargs": task["env_kwargs"]}
    DatasetWriter.create(dataset, task_shape_meta(task), task["fps"], env_spec).close()
    with pytest.raises(DatasetError, match="holds no arrays"):
        ReplayBuffer.open(dataset)  # nothing to read yet
    process = start_teleop(f"out={dataset}", "append=true", "seed=7")
    try:
        drive(process, [("n", TICK)] + [("d", TICK)] * 4 + [("y", 2 * TICK)])
    finally:
        stdout, stderr = finish(process)
    assert process.returncode == 0, stderr[-3000:]
    assert f"saved 1 episodes to {dataset}" in stdout
    buffer = ReplayBuffer.open(dataset)
    assert buffer.n_episodes == 1 and list(buffer.episode_meta["seed"]) == [7]
    # d: -y at half a step a press (presses that land in one tick add up, to at most a full step)
    sideways = buffer.get_episode(0)["action"][:, 1]
    assert (sideways <= 0).all() and sideways.sum() <= -1.0, sideways
