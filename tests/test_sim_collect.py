"""datasets/collect.py: writes successful expert episodes; bad configs fail with one clear error."""

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COLLECT = REPO / "datasets" / "collect.py"


def load_collect_module():
    import robopolicy_cli.collect

    return robopolicy_cli.collect


def compose_config(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="collect", overrides=list(overrides))


def test_collect_writes_a_readable_state_only_dataset(tmp_path):
    from robopolicy.data.reader import ReplayBuffer

    out = tmp_path / "push.zarr"
    cfg = compose_config(
        "n_episodes=2", f"out={out}", "task.env_kwargs.obs_mode=state", "n_workers=1"
    )
    load_collect_module().collect(cfg)

    buffer = ReplayBuffer.open(out)
    assert buffer.n_episodes == 2 and buffer.fps == 10
    assert buffer.env_spec["id"] == "robopolicy/PushCube-v0"
    assert buffer.env_spec["kwargs"]["obs_mode"] == "state"
    assert set(buffer.shape_meta["obs"]) == {
        "joint_pos",
        "eef_pos",
        "eef_quat",
        "gripper_pos",
        "object_state",
        "object_pos",
        "eef_to_object",
        "object_to_goal",
    }
    assert buffer.shape_meta["action"]["shape"] == [7]
    # ee_delta: the six pose deltas hold at 0, the gripper command keeps its last value
    assert buffer.shape_meta["action"]["hold"] == ["zero"] * 6 + ["last"]
    assert list(buffer.episode_meta["seed"]) == [0, 1]
    assert buffer.data["sim_state"].dtype == np.float64
    done = np.asarray(buffer.data["done"][:])
    assert done.sum() == 2 and done[-1]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("task.env_kwargs.cameras=[scene,overhead]", "cameras='overhead' is not valid"),
        ("task.env_kwargs.action_space=velocity", "action_space='velocity' is not valid"),
        ("task.env_kwargs.robot=kuka", "robot='kuka' is not valid"),
        ("task.env_id=robopolicy/Nope-v0", "task.env_id='robopolicy/Nope-v0' is not registered"),
        ("n_workers=0", "n_workers=0"),
    ],
)
def test_bad_config_gives_one_clear_error(tmp_path, override, expected):
    collect = load_collect_module()
    cfg = compose_config(f"out={tmp_path / 'x.zarr'}", override)
    with pytest.raises(collect.ConfigError, match=expected.replace("[", r"\[")):
        collect.collect(cfg)
    assert not (tmp_path / "x.zarr").exists()


def test_existing_dataset_is_not_overwritten_by_default(tmp_path):
    collect = load_collect_module()
    existing = tmp_path / "x.zarr"
    existing.mkdir()
    with pytest.raises(collect.ConfigError, match="already exists; pass overwrite=true"):
        collect.collect(compose_config(f"out={existing}"))


def test_unknown_task_names_the_available_ones():
    result = subprocess.run(
        [sys.executable, str(COLLECT), "task=no_such_task"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode != 0
    assert "Could not find 'task/no_such_task'" in result.stderr
    assert "push_cube" in result.stderr


@pytest.mark.slow
def test_collect_script_with_images_and_two_workers(tmp_path):
    from robopolicy.data.reader import ReplayBuffer

    out = tmp_path / "push.zarr.zip"
    command = [
        sys.executable,
        str(COLLECT),
        "n_episodes=3",
        "n_workers=2",
        f"out={out}",
        "task.env_kwargs.image_size=32",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote 3 episodes" in result.stdout
    buffer = ReplayBuffer.open(out)
    assert buffer.n_episodes == 3
    assert buffer.shape_meta["obs"]["scene_rgb"] == {"shape": [32, 32, 3], "type": "rgb"}
    assert buffer.data["wrist_rgb"].dtype == np.uint8
    assert np.asarray(buffer.data["scene_rgb"][0]).std() > 10

    # the stored raw states re-render the stored frames exactly, in a fresh env from env_spec
    import gymnasium as gym

    import sim  # noqa: F401

    spec = buffer.env_spec
    env = gym.make(spec["id"], max_episode_steps=spec["max_episode_steps"], **spec["kwargs"])
    env.reset(seed=12345)
    for step in (0, 7, buffer.n_steps - 1):
        env.unwrapped.set_sim_state(np.asarray(buffer.data["sim_state"][step]))
        rendered = env.unwrapped.observation()
        for key in ("scene_rgb", "wrist_rgb", "eef_pos", "object_state"):
            np.testing.assert_array_equal(rendered[key], buffer.data[key][step], err_msg=key)


@pytest.mark.slow
def test_collected_dataset_shows_in_inspect(tmp_path):
    out = tmp_path / "push.zarr"
    collected = subprocess.run(
        [
            sys.executable,
            str(COLLECT),
            "n_episodes=2",
            f"out={out}",
            "task.env_kwargs.image_size=32",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert collected.returncode == 0, collected.stderr[-2000:]
    report = tmp_path / "report"
    shown = subprocess.run(
        [sys.executable, str(REPO / "datasets" / "inspect.py"), f"path={out}", f"out={report}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "scene_rgb" in shown.stdout and "episodes" in shown.stdout
    assert [p.suffix for p in sorted(report.iterdir())].count(".mp4") >= 1
    assert any(p.suffix == ".png" and p.stat().st_size > 0 for p in report.iterdir())


def test_injected_noise_is_executed_but_not_recorded():
    """DART: the env runs noisy actions; the dataset keeps the expert's own (clean) actions."""
    import gymnasium as gym

    import sim  # noqa: F401
    from sim.experts import make_expert
    from sim.rollout import record_expert_episode

    env = gym.make("robopolicy/PushCube-v0", obs_mode="state")
    expert = make_expert(env)
    clean = record_expert_episode(env, expert, seed=3)
    noisy = record_expert_episode(env, expert, seed=3, injected_noise_std=0.2)
    assert noisy.steps["eef_pos"].shape != clean.steps["eef_pos"].shape or not np.allclose(
        noisy.steps["eef_pos"], clean.steps["eef_pos"]
    ), "the noise must change the trajectory"
    # the PushCube expert is memoryless: at every recorded state it gives the recorded action
    expert.reset(np.random.default_rng(3))
    for t in range(0, len(noisy.steps["action"]), 5):
        env.unwrapped.set_sim_state(noisy.steps["sim_state"][t])
        obs = env.unwrapped.observation()
        np.testing.assert_allclose(expert.act(obs), noisy.steps["action"][t], atol=1e-6)


def _untrained_policy_checkpoint(dataset, path):
    """A freshly initialised (untrained) MLP diffusion policy over [eef_pos, object_state]."""
    from robopolicy.data.normalizer import Normalizer
    from robopolicy.data.reader import ReplayBuffer
    from robopolicy.policies.registry import build_policy, policy_record
    from robopolicy.training.checkpoint import save_checkpoint

    buffer = ReplayBuffer.open(dataset)
    keys = ["eef_pos", "object_state"]
    shape_meta = {"obs": {k: buffer.shape_meta["obs"][k] for k in keys}}
    shape_meta["action"] = buffer.shape_meta["action"]
    normalizer = Normalizer.from_shape_meta(shape_meta)
    normalizer.fit_replay_buffer(buffer, list(range(buffer.n_episodes)))
    args = {
        "horizon": 8,
        "n_obs_steps": 2,
        "n_action_steps": 4,
        "backbone": "mlp",
        "backbone_kwargs": {"hidden_dims": [32, 32]},
        "num_inference_steps": 2,
    }
    policy = build_policy("diffusion", shape_meta, normalizer, args)
    record = policy_record(policy, policy.state_dict())
    save_checkpoint(path, {"policy": record, "ema_policy": record})
    return path


@pytest.mark.slow
def test_dagger_appends_learner_driven_episodes_labelled_by_the_expert(tmp_path):
    """dagger.checkpoint: the policy drives (its failures kept), the expert's actions recorded;
    append=true adds them to the existing dataset."""
    import gymnasium as gym

    import sim  # noqa: F401
    from robopolicy.data.reader import ReplayBuffer
    from sim.experts import make_expert

    out = tmp_path / "push.zarr"
    collect = load_collect_module().collect
    state = "task.env_kwargs.obs_mode=state"
    collect(compose_config("n_episodes=2", f"out={out}", state))
    checkpoint = _untrained_policy_checkpoint(out, tmp_path / "policy.safetensors")
    collect(
        compose_config(
            "n_episodes=2",
            f"out={out}",
            state,
            "append=true",
            "seed=50",
            f"dagger.checkpoint={checkpoint}",
            "task.max_episode_steps=30",
        )
    )
    buffer = ReplayBuffer.open(out)
    assert buffer.n_episodes == 4
    assert list(buffer.episode_meta["seed"][2:]) == [50, 51]
    provenance = buffer.attrs["provenance"]
    assert provenance["first_seed"] == 0 and "dagger_checkpoint" not in provenance
    (appended,) = provenance["appends"]
    assert appended["first_seed"] == 50 and appended["first_episode"] == 2
    assert appended["dagger_checkpoint"] == str(checkpoint)
    episode = buffer.episode_slice(2)
    start, end = episode.start, episode.stop
    assert end - start == 30, "an untrained driver fails: the episode runs to the time limit"
    env = gym.make("robopolicy/PushCube-v0", obs_mode="state")
    expert = make_expert(env)
    expert.reset(np.random.default_rng(50))
    own = []
    obs, _ = env.reset(seed=50)
    for _ in range(30):
        own.append(obs["eef_pos"])
        obs, *_ = env.step(expert.act(obs))
    visited = buffer.read_all("eef_pos")[start:end]
    assert not np.allclose(visited, np.stack(own), atol=1e-3), "the learner must drive"
    sim_state = buffer.read_all("sim_state")[start:end]
    actions = buffer.read_all("action")[start:end]
    for t in range(0, end - start, 6):
        env.unwrapped.set_sim_state(sim_state[t])
        label = expert.act(env.unwrapped.observation())
        np.testing.assert_allclose(label, actions[t], atol=1e-6)


@pytest.mark.slow
def test_dagger_with_an_unreadable_checkpoint_stops_in_one_line(tmp_path):
    """The learner is loaded in the main process before any worker starts: an unreadable
    checkpoint used to leave the pool respawning workers that failed on it, forever."""
    bad = tmp_path / "bad.safetensors"
    bad.write_text("not a checkpoint")
    out = tmp_path / "dagger.zarr"
    result = subprocess.run(
        [
            sys.executable,
            "datasets/collect.py",
            "task=push_cube",
            "task.env_kwargs.obs_mode=state",
            "n_episodes=2",
            "n_workers=2",
            f"dagger.checkpoint={bad}",
            f"out={out}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "MUJOCO_GL": "egl"},
    )
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert len(errors) == 1 and errors[0].startswith(f"collect.py: error: checkpoint {bad}: ")
    assert not out.exists()
