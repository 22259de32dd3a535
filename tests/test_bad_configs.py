"""Bad configs stop train.py, eval.py and datasets/collect.py at start-up with one line.

Every override in BAD is wrong in one way: a type, a range, a choice, a group option or key that
does not exist, a cross-field rule, a missing file, an env kwarg the env rejects. Through the
real entry point each must exit non-zero within seconds, before any training, evaluation or
collection, printing exactly one stderr line ``<program>: error: ...`` that names the key, and no
traceback. The full list (slow) runs through the entry points, each case a fork of a warm
interpreter that has the script's imports loaded (tests/warm_entry.py: the same run, without
~5 s of interpreter start per case); the fast suite checks the config-stage ones in-process
through the same composition and ``validate`` the entry points use, plus a sample through the
entry points as cold subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from robopolicy.config import ConfigError, validate
from robopolicy.config.errors import config_error

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")
SCRIPTS = {"train.py": "config", "eval.py": "eval", "datasets/collect.py": "collect"}
DPPO, REINFLOW = "algo=dppo checkpoint={ckpt}", "algo=reinflow checkpoint={ckpt}"
DSRL = "algo=dsrl checkpoint={ckpt}"
FPO = "algo=fpo checkpoint={ckpt}"
FLOW, MLP, TRANSFORMER = "policy=flow", "backbone=mlp", "backbone=transformer"
STATE_KEYS = {"eef_pos": 3, "object_state": 9}  # the tiny checkpoint's observations (7-D actions)

# (script, overrides, the key the error line names); "{ckpt}" is an existing checkpoint file
TRAIN = [
    # group options and keys that do not exist, values of the wrong type, unparsable overrides
    "policy=difusion|policy=difusion",
    "algo=dpo|algo=dpo",
    "backbone=unet|backbone=unet",
    "task=push_cub|task=push_cub",
    "logger=wandb|logger=wandb",
    "+experiment=push_cube_darts|experiment=push_cube_darts",
    "algo.lrr=1|algo.lrr",
    "+algo.lrr=1|algo.lrr",
    "data.batchsize=8|data.batchsize",
    "+seeds=1|seeds",
    "policy.args.horizn=8|policy.args.horizn",
    "algo.lr=abc|algo.lr",
    "amp=maybe|amp",
    "seed=1.5|seed",
    "data.in_memory=maybe|data.in_memory",
    "algo.num_steps=ten|algo.num_steps",
    "algo.betas=[0.9,x]|algo.betas",
    "obs_keys=eef_pos|obs_keys",
    "algo.lr=[|algo.lr",
    # behaviour cloning
    "algo.lr=-1|algo.lr",
    "algo.num_steps=0|algo.num_steps",
    "algo.log_every=0|algo.log_every",
    "algo.val_every=0|algo.val_every",
    "algo.val_every=150|algo.val_every",
    "algo.checkpoint_every=0|algo.checkpoint_every",
    "algo.eval_every=-1|algo.eval_every",
    "algo.grad_clip=-1|algo.grad_clip",
    "algo.ema.power=-1|algo.ema.power",
    "algo.ema.max_decay=1.5|algo.ema.max_decay",
    "algo.warmup_steps=-5|algo.warmup_steps",
    "algo.top_k=-1|algo.top_k",
    "algo.betas=[0.9]|algo.betas",
    "algo.stop_after=0|algo.stop_after",
    "algo.optimizer_impl=sgd|algo.optimizer_impl",
    "algo.name=dppo|algo.name",
    # the run, the data, the evaluations, the logger, the task
    "torch_threads=-1|torch_threads",
    "device=tpu|device",
    "obs=depth|obs",
    "obs_keys=[]|obs_keys",
    "data.batch_size=0|data.batch_size",
    "data.val_ratio=1.0|data.val_ratio",
    "data.num_workers=-1|data.num_workers",
    "data.decoded_cache_mb=-1|data.decoded_cache_mb",
    "data.end_padding=none|data.end_padding",
    "data.pad_action=zero|data.pad_action",
    "eval.n_episodes=0|eval.n_episodes",
    "eval.n_episodes_during_training=0|eval.n_episodes_during_training",
    "eval.video_episodes=-1|eval.video_episodes",
    "eval.sampler.num_steps=0|eval.sampler.num_steps",
    "eval.sampler.sampler=euler|eval.sampler.sampler",
    "eval.sampler.eta=2|eval.sampler.eta",
    "eval.sampler.solver=rk4|eval.sampler.solver",
    "eval.sampler.timestep_spacing=uniform|eval.sampler.timestep_spacing",
    "eval.sampler.autocast_dtype=fp16|eval.sampler.autocast_dtype",
    "eval.sampler.runtime=tensorrt|eval.sampler.runtime",
    "eval.sampler.runtime=onnx eval.sampler.autocast_dtype=bf16|eval.sampler.autocast_dtype",
    "logger.wandb_mode=cloud|logger.wandb_mode",
    "task.fps=0|task.fps",
    "resume=no_such_run.safetensors|resume",
    # policies and backbones
    "policy.args.horizon=4|policy.args.horizon",
    "policy.args.n_obs_steps=0|policy.args.n_obs_steps",
    "policy.args.num_inference_steps=200|policy.args.num_inference_steps",
    "policy.args.prediction_type=velocity|policy.args.prediction_type",
    "policy.args.beta_schedule=cosine|policy.args.beta_schedule",
    "policy.args.eta=1.5|policy.args.eta",
    "policy.args.timestep_spacing=uniform|policy.args.timestep_spacing",
    "policy.normalizer.action_mode=minmax|policy.normalizer.action_mode",
    "policy.kind=flow|policy.kind",
    f"{FLOW} policy.args.solver=rk4|policy.args.solver",
    f"{FLOW} policy.args.time_sampling=logit|policy.args.time_sampling",
    f"{FLOW} policy.args.time_cutoff=0|policy.args.time_cutoff",
    f"{FLOW} policy.args.prediction_type=velocity|policy.args.clip_sample",
    "policy=regression policy.args.horizon=2|policy.args.horizon",
    "policy=regression policy.args.num_inference_steps=4|policy.args.num_inference_steps",
    f"{MLP} backbone.kwargs.hidden_dims=[]|backbone.kwargs.hidden_dims",
    f"{MLP} backbone.kwargs.activation=swish|backbone.kwargs.activation",
    f"{TRANSFORMER} backbone.kwargs.n_heads=3|backbone.kwargs.n_heads",
    f"{TRANSFORMER} backbone.kwargs.dropout=1.5|backbone.kwargs.dropout",
    "backbone.kwargs.kernel_size=4|backbone.kwargs.kernel_size",
    "backbone.kwargs.n_groups=7|backbone.kwargs.n_groups",
    "backbone.kwargs.layout=unet|backbone.kwargs.layout",
    # DPPO
    "algo=dppo|checkpoint",
    "algo=dppo checkpoint=no_such_base.safetensors|checkpoint",
    f"{DPPO} algo.ft_denoising_steps=11|algo.ft_denoising_steps",
    f"{DPPO} algo.denoising_steps=0|algo.denoising_steps",
    f"{DPPO} algo.sampler=euler|algo.sampler",
    f"{DPPO} algo.n_envs=0|algo.n_envs",
    f"{DPPO} algo.act_steps=0|algo.act_steps",
    f"{DPPO} algo.target_success=1.5|algo.target_success",
    f"{DPPO} algo.ppo.clip_base=-1|algo.ppo.clip_base",
    f"{DPPO} algo.ppo.gamma=1.5|algo.ppo.gamma",
    f"{DPPO} algo.ppo.minibatch_size=0|algo.ppo.minibatch_size",
    f"{DPPO} algo.ppo.logprob_min=3|algo.ppo.logprob_min",
    f"{DPPO} algo.ppo.clipbase=1|algo.ppo.clipbase",
    f"{DPPO} algo.critic.hidden_dims=[]|algo.critic.hidden_dims",
    f"{DPPO} algo.actor_lr_final=-1|algo.actor_lr_final",
    f"{DPPO} algo.noise_net.min_std=0.1|algo.noise_net",
    # ReinFlow
    f"{REINFLOW} algo.noise_net.min_std=0|algo.noise_net.min_std",
    f"{REINFLOW} algo.noise_net.init_std=0.5|algo.noise_net.init_std",
    f"{REINFLOW} algo.ft_denoising_steps=3|algo.ft_denoising_steps",
    f"{REINFLOW} algo.ppo.gae_lambda=-0.5|algo.ppo.gae_lambda",
    f"{REINFLOW} algo.n_iterations=0|algo.n_iterations",
    # FPO
    "algo=fpo|checkpoint",
    f"{FPO} algo.ppo.n_mc=0|algo.ppo.n_mc",
    f"{FPO} algo.ppo.clip=0|algo.ppo.clip",
    f"{FPO} algo.ppo.clip_base=0.1|algo.ppo.clip_base",
    f"{FPO} algo.ppo.min_sampling_std=-0.1|algo.ppo.min_sampling_std",
    # DSRL
    "algo=dsrl|checkpoint",
    f"{DSRL} algo.variant=sac|algo.variant",
    f"{DSRL} algo.noise_bound=0|algo.noise_bound",
    f"{DSRL} algo.latent_steps=0|algo.latent_steps",
    f"{DSRL} eval.sampler.runtime=onnx|eval.sampler.runtime",
    f"{DSRL} algo.utd_ratio=-1|algo.utd_ratio",
    f"{DSRL} algo.tau=0|algo.tau",
    f"{DSRL} algo.hidden_dims=[]|algo.hidden_dims",
    f"{DSRL} algo.log_std_min=3|algo.log_std_min",
    f"{DSRL} algo.log_every_env_steps=0|algo.log_every_env_steps",
    f"{DSRL} algo.eval_episodes=0|algo.eval_episodes",
]
TRAIN_ENV = [  # rejected by the env, built once at start-up
    "task.env_kwargs.robot=kuka|task.env_kwargs.robot",
    "+task.env_kwargs.foo=1|task.env_kwargs.foo",
    "task.env_id=robopolicy/Nope-v0|task.env_id",
    f"{DPPO} algo.reward_type=foo|algo.reward_type",
    f"{DSRL} +algo.env_kwargs.foo=1|algo.env_kwargs.foo",
]
EVAL = [
    "|checkpoint",
    "checkpoint=no_such.safetensors|checkpoint",
    "hardware=simm|hardware=simm",
    "hardware=sim +hardware.seedd=1|hardware.seedd",
    "n_episode=5|n_episode",
    "+deploy.foo=1|deploy.foo",
    "n_episodes=0|n_episodes",
    "n_episodes=many|n_episodes",
    "n_envs=0|n_envs",
    "video_episodes=-1|video_episodes",
    "use_ema=maybe|use_ema",
    "device=tpu|device",
    "torch_threads=-1|torch_threads",
    "max_episode_steps=0|max_episode_steps",
    "sampler.num_steps=0|sampler.num_steps",
    "sampler.sampler=rk4|sampler.sampler",
    "sampler.noise_std=-1|sampler.noise_std",
    "sampler.runtime=onnx sampler.eta=0.5|sampler.runtime",
    "deploy.port=0|deploy.port",
    "deploy.connect_timeout=0|deploy.connect_timeout",
    "deploy.act_delay=-0.1|deploy.act_delay",
    "deploy.replan_every=0|deploy.replan_every",
    "deploy.temporal_ensembling=maybe|deploy.temporal_ensembling",
    "record=deployed.zarr|record",
    "hardware=sim hardware.camera_fps=0|hardware.camera_fps",
    "hardware=ur5e ~hardware.safety.arm|hardware.safety.arm",
]
EVAL_ENV = [
    "+env_kwargs.robot=kuka|env_kwargs.robot",
    "env_id=robopolicy/Nope-v0|env_id",
]
COLLECT = [
    "task=no_such_task|task=no_such_task",
    "+foo=1|foo",
    "teleop.pause=1|teleop.pause",
    "n_episodes=0|n_episodes",
    "n_episodes=abc|n_episodes",
    "n_workers=0|n_workers",
    "write_every=0|write_every",
    "max_failures=-1|max_failures",
    "injected_noise_std=-0.1|injected_noise_std",
    "teleop.pause_prob=2|teleop.pause_prob",
    "teleop.action_noise_std=-1|teleop.action_noise_std",
    "teleop.pause_steps=[6,2]|teleop.pause_steps",
    "dagger.checkpoint=no_such.safetensors|dagger.checkpoint",
    "dagger.use_ema=maybe|dagger.use_ema",
    "overwrite=true append=true|append",
    "store_sim_state=sometimes|store_sim_state",
    "task.fps=0|task.fps",
]
COLLECT_ENV = [
    "task.env_kwargs.robot=kuka|task.env_kwargs.robot",
    "task.env_kwargs.action_space=velocity|task.env_kwargs.action_space",
    "+task.env_kwargs.foo=1|task.env_kwargs.foo",
]


def _cases(script: str, lines: list[str], stage: str) -> list[tuple[str, str, str, str]]:
    return [(script, *line.rsplit("|", 1), stage) for line in lines]


BAD = (
    _cases("train.py", TRAIN, "config")
    + _cases("train.py", TRAIN_ENV, "env")
    + _cases("eval.py", EVAL, "config")
    + _cases("eval.py", EVAL_ENV, "env")
    + _cases("datasets/collect.py", COLLECT, "config")
    + _cases("datasets/collect.py", COLLECT_ENV, "env")
)
SAMPLE = [  # through the entry points in the fast suite too: each stage and program once
    ("train.py", "policy=difusion"),
    ("train.py", "task.env_kwargs.robot=kuka"),
    ("eval.py", ""),
    ("datasets/collect.py", "teleop.pause_prob=2"),
]


def test_the_harness_is_at_least_a_hundred_distinct_bad_overrides():
    keys = [(script, overrides) for script, overrides, _, _ in BAD]
    assert len(keys) == len(set(keys)) >= 100
    assert {script for script, _ in SAMPLE} == set(SCRIPTS)
    assert set(SAMPLE) <= set(keys)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """An untrained small diffusion policy for PushCube's state keys, saved as train.py does."""
    import torch

    from robopolicy.data.normalizer import Normalizer
    from robopolicy.policies.registry import build_policy, policy_record
    from robopolicy.training.checkpoint import save_checkpoint

    obs = {key: {"shape": [n], "type": "low_dim"} for key, n in STATE_KEYS.items()}
    meta = {"obs": obs, "action": {"shape": [7]}}
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    normalizer = Normalizer.from_shape_meta(meta)
    sizes = {**STATE_KEYS, "action": 7}
    normalizer.fit({key: rng.uniform(-1, 1, (32, n)) for key, n in sizes.items()})
    args = {"horizon": 8, "n_obs_steps": 2, "n_action_steps": 4, "backbone": "mlp"}
    args |= {"backbone_kwargs": {"hidden_dims": [16]}, "num_inference_steps": 2}
    policy = build_policy("diffusion", meta, normalizer, args)
    env_kwargs = {"robot": "panda", "action_space": "ee_delta", "obs_mode": "state"}
    path = tmp_path_factory.mktemp("checkpoint") / "tiny.safetensors"
    state = {"policy": policy_record(policy, policy.state_dict()), "config": {"task": {"fps": 10}}}
    save_checkpoint(
        path, {**state, "env_spec": {"id": "robopolicy/PushCube-v0", "kwargs": env_kwargs}}
    )
    return path


def _overrides(script: str, text: str, ckpt: Path, tmp_path: Path) -> list[str]:
    """The case's overrides, with eval.py's checkpoint and collect.py's output in tmp_path."""
    overrides = [item.replace("{ckpt}", str(ckpt)) for item in text.split()]
    if script == "eval.py" and text and "checkpoint=" not in text:
        overrides.insert(0, f"checkpoint={ckpt}")
    if script == "datasets/collect.py":
        overrides.append(f"out={tmp_path / 'x.zarr'}")
    return overrides


def _error_in_process(script: str, overrides: list[str]) -> str:
    """The one line that composing and validating gives, as the entry point would."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        try:
            cfg = compose(config_name=SCRIPTS[script], overrides=overrides)
        except (HydraException, OmegaConfBaseException) as error:
            return str(config_error(error))
    with pytest.raises(ConfigError) as caught:
        validate(cfg)
    return str(caught.value)


def _entry_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("HYDRA_FULL_ERROR", "ROBOPOLICY_TRACEBACK")
    }
    return env | {"OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl"}


def _run(
    script: str, overrides: list[str], tmp_path: Path
) -> tuple[subprocess.CompletedProcess, float]:
    """A cold start: ``python SCRIPT overrides...`` in its own interpreter."""
    command = [sys.executable, script, *overrides, f"hydra.run.dir={tmp_path / 'run'}"]
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPO, env=_entry_env(), capture_output=True, text=True, timeout=180
    )
    return done, time.perf_counter() - start


class WarmEntryPoints:
    """One tests/warm_entry.py server per script: each run is a fork of a warm interpreter."""

    def __init__(self) -> None:
        self.servers: dict[str, subprocess.Popen] = {}

    def run(
        self, script: str, overrides: list[str], tmp_path: Path
    ) -> tuple[subprocess.CompletedProcess, float]:
        if script not in self.servers:
            command = [sys.executable, str(REPO / "tests" / "warm_entry.py"), script]
            self.servers[script] = subprocess.Popen(
                command,
                cwd=REPO,
                env=_entry_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        server = self.servers[script]
        out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        argv = [*overrides, f"hydra.run.dir={tmp_path / 'run'}"]
        server.stdin.write(json.dumps({"argv": argv, "stdout": str(out), "stderr": str(err)}))
        server.stdin.write("\n")
        server.stdin.flush()
        answer = json.loads(server.stdout.readline())
        done = subprocess.CompletedProcess(
            [script, *argv], answer["returncode"], out.read_text(), err.read_text()
        )
        return done, answer["seconds"]

    def close(self) -> None:
        for server in self.servers.values():
            server.stdin.close()
            server.wait(timeout=60)


@pytest.fixture(scope="module")
def warm_entry_points():
    entry_points = WarmEntryPoints()
    yield entry_points
    entry_points.close()


def _check_stopped_at_start_up(script: str, key: str, done, seconds: float, tmp_path: Path):
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith(f"{Path(script).name}: error: ") and key in lines[0], lines[0]
    assert seconds < 60, f"took {seconds:.0f} s"  # a few seconds; generous for a loaded CPU
    run = tmp_path / "run"
    assert not run.exists(), sorted(path.name for path in run.iterdir())  # no empty run dir left
    assert not (tmp_path / "x.zarr").exists()
    for started in ("[train] rank", "[eval]", "[deploy]", "wrote "):
        assert started not in done.stdout


@pytest.mark.parametrize(
    ("script", "overrides", "key"),
    [case[:3] for case in BAD if case[3] == "config"],
    ids=[f"{case[0]}:{case[1]}" for case in BAD if case[3] == "config"],
)
def test_a_bad_config_is_one_line_naming_its_key(script, overrides, key, ckpt, tmp_path):
    line = _error_in_process(script, _overrides(script, overrides, ckpt, tmp_path))
    assert "\n" not in line and key in line, line


@pytest.mark.parametrize(("script", "overrides"), SAMPLE, ids=[" ".join(c) for c in SAMPLE])
def test_a_sample_stops_the_entry_point_at_start_up(script, overrides, ckpt, tmp_path):
    key = {case[:2]: case[2] for case in BAD}[(script, overrides)]
    done, seconds = _run(script, _overrides(script, overrides, ckpt, tmp_path), tmp_path)
    _check_stopped_at_start_up(script, key, done, seconds, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "overrides", "key"), [case[:3] for case in BAD], ids=[f"{c[0]}:{c[1]}" for c in BAD]
)
def test_every_bad_config_stops_the_entry_point_at_start_up(
    script, overrides, key, ckpt, tmp_path, warm_entry_points
):
    overrides = _overrides(script, overrides, ckpt, tmp_path)
    done, seconds = warm_entry_points.run(script, overrides, tmp_path)
    _check_stopped_at_start_up(script, key, done, seconds, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("script", list(SCRIPTS))
def test_a_run_directory_that_is_a_file_is_one_line(script, ckpt, tmp_path):
    """Hydra makes the run directory before the program runs; a file in its place is refused."""
    occupied = tmp_path / "occupied"
    occupied.write_text("a file, kept as it is\n")
    overrides = [*_overrides(script, "", ckpt, tmp_path), f"hydra.run.dir={occupied}"]
    done = subprocess.run(
        [sys.executable, script, *overrides],
        cwd=REPO,
        env=_entry_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert (
        lines[0].startswith(f"{Path(script).name}: error: hydra.run.dir=")
        and "is a file" in lines[0]
    )
    assert occupied.read_text() == "a file, kept as it is\n"


def test_a_bad_launch_into_a_used_run_directory_keeps_what_was_there(tmp_path):
    """The run directory is removed only when this launch made it: a named ``hydra.run.dir``
    that an earlier run wrote its log into keeps the log (with the new line appended)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "collect.log").write_text("an earlier run's line\n")
    done, _ = _run(
        "datasets/collect.py", ["teleop.pause_prob=2", f"out={tmp_path / 'x.zarr'}"], tmp_path
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert (run / "collect.log").read_text().startswith("an earlier run's line\n")
