"""The typed configs (robopolicy/config): valid configs pass validation, the YAML files hold only
what differs from their schema, and each default and set of choices has one source."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from robopolicy.config import validate
from robopolicy.config.run import LoggerConfig
from robopolicy.config.store import SCHEMAS

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(path.stem for path in (CONF / "experiment").glob("*.yaml"))
TASKS = sorted(path.stem for path in (CONF / "task").glob("*.yaml"))
CKPT = str(Path(__file__).resolve())  # an existing file: validation checks that paths exist

GOOD = [
    ("config", []),
    ("config", ["algo.lr=3e-4", "torch_threads=1", "device=cuda:1", "amp=false"]),
    ("config", ["eval.sampler.num_steps=4", "eval.sampler.sampler=ddpm", "eval.sampler.eta=0"]),
    ("config", ["policy=flow", "backbone=transformer", "eval.sampler.solver=heun"]),
    ("config", ["policy=regression", "backbone=mlp", "backbone.kwargs.hidden_dims=[8]"]),
    ("config", ["obs=image", "data.num_workers=null", "data.max_train_episodes=10"]),
    ("config", ["+experiment=pick_lift", "backbone=unet1d"]),  # a recipe's MLP replaced whole
    ("config", ["+experiment=push_t", "backbone=transformer"]),
    ("config", ["obs_keys=[eef_pos]", "algo.eval_every=0", "algo.stop_after=100"]),
    ("config", ["algo.log_every=10", "algo.val_every=30", "data.val_ratio=0"]),
    ("config", ["policy.args.clip_sample=null", "backbone.kwargs.kernel_size=3"]),
    (
        "config",
        ["policy=flow", "policy.args.prediction_type=velocity", "policy.args.clip_sample=null"],
    ),
    ("config", ["task=metaworld", "task.env_kwargs.task=door-open-v3", "logger=none"]),
    ("config", ["+task.env_kwargs.init_qpos_noise=0.01", "logger=wandb_online"]),
    ("config", ["algo=dppo", f"checkpoint={CKPT}", "algo.ppo.target_kl=null"]),
    (
        "config",
        ["algo=dppo", f"checkpoint={CKPT}", "algo.ft_denoising_steps=10", "algo.sampler=ddpm"],
    ),
    ("config", ["algo=reinflow", f"checkpoint={CKPT}", "policy=flow", "algo.actor_lr_final=1e-5"]),
    ("config", ["algo=fpo", f"checkpoint={CKPT}", "algo.ppo.n_mc=4", "algo.ppo.target_kl=null"]),
    ("config", ["algo=dsrl", f"checkpoint={CKPT}", "algo.latent_steps=null", "algo.variant=na"]),
    (
        "config",
        ["algo=dsrl", f"resume={CKPT}", "algo.utd_ratio=0.5", "algo.eval_every_env_steps=0"],
    ),
    *[("config", [f"task={task}"]) for task in ("around_obstacle", "mw_push", "robosuite_lift")],
    *[("config", [f"+experiment={name}", f"checkpoint={CKPT}"]) for name in EXPERIMENTS],
    ("config", ["+experiment=push_cube_dart", "policy=flow"]),
    ("eval", [f"checkpoint={CKPT}"]),
    ("eval", [f"checkpoint={CKPT}", "hardware=sim", f"record={CKPT}.zarr", "deploy.port=5555"]),
    ("eval", [f"checkpoint={CKPT}", "hardware=ur5e", "deploy.address=tcp://10.0.0.2:5555"]),
    ("eval", [f"checkpoint={CKPT}", "hardware=franka", "deploy.temporal_ensembling=true"]),
    ("eval", [f"checkpoint={CKPT}", "+env_kwargs.reward_type=sparse", "sampler.num_steps=4"]),
    ("eval", [f"checkpoint={CKPT}", "deploy.fps=10", "deploy.replan_every=1", "n_envs=1"]),
    ("collect", []),
    (
        "collect",
        ["teleop.pause_prob=0.05", "teleop.action_noise_std=0.1", "teleop.pause_steps=[3,3]"],
    ),
    ("collect", ["n_workers=2", "injected_noise_std=0.2", "append=true", "max_failures=0"]),
    ("collect", [f"dagger.checkpoint={CKPT}", "dagger.use_ema=false", "seed=10000"]),
    *[("collect", [f"task={task}"]) for task in TASKS],
]


@pytest.mark.parametrize(("name", "overrides"), GOOD, ids=[f"{n}:{' '.join(o)}" for n, o in GOOD])
def test_a_valid_config_is_accepted(name, overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides)
    validate(cfg)


def _schema_of(path: Path) -> type:
    """The schema a conf/<group>/<name>.yaml selects (the logger's is typed by the root)."""
    if path.parent.name == "logger":
        return LoggerConfig
    entry = OmegaConf.load(path).defaults[0]
    group, _, name = entry.split("@")[0].strip("/").rpartition("/")
    return SCHEMAS[group][name]


def _leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _default(tree, path):
    for key in path.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return KeyError
        tree = tree[key]
    return tree


GROUP_FILES = sorted(
    path
    for group in ("algo", "policy", "backbone", "logger", "hardware")
    for path in (CONF / group).glob("*.yaml")
)


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_a_group_file_holds_only_what_differs_from_its_schema(path):
    values = OmegaConf.to_container(OmegaConf.load(path))
    values.pop("defaults", None)
    defaults = OmegaConf.to_container(OmegaConf.structured(_schema_of(path)), resolve=False)
    restated = [key for key, value in _leaves(values) if _default(defaults, key) == value]
    assert not restated, f"{path.name} restates its schema's defaults: {restated}"


@pytest.mark.parametrize("name", ["config.yaml", "eval.yaml", "collect.yaml"])
def test_a_primary_config_only_selects_its_groups(name):
    assert set(OmegaConf.load(CONF / name)) <= {"defaults", "hydra"}


def test_the_chain_ppo_defaults_live_once_and_are_dppos():
    from robopolicy.config.chain_ppo import ChainPPOConfig, ReinFlowConfig
    from robopolicy.rl import chain_ppo

    assert chain_ppo.ChainPPOConfig is ChainPPOConfig
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        dppo = compose(config_name="config", overrides=["algo=dppo"]).algo
    assert OmegaConf.to_container(dppo.ppo) == OmegaConf.to_container(
        OmegaConf.structured(ChainPPOConfig)
    )
    assert ChainPPOConfig().clip_base == 3e-3 and ChainPPOConfig().minibatch_size == 4000
    shared = ReinFlowConfig().ppo
    assert (shared.update_epochs, shared.minibatch_size, shared.min_sampling_std) == (5, 1600, 0.0)


def test_the_schemas_choices_are_the_librarys():
    from robopolicy.config import algos, policy, run
    from robopolicy.data import sampler
    from robopolicy.models import mlp, unet1d
    from robopolicy.policies import base, diffusion, flow, noise_schedules

    pairs = [
        (policy.BACKBONES, base.BACKBONES),
        (policy.AUTOCAST_DTYPES, base.AUTOCAST_DTYPES),
        (policy.ACTIVATIONS, mlp.ACTIVATIONS),
        (policy.UNET_LAYOUTS, unet1d.LAYOUTS),
        (policy.DIFFUSION_SAMPLERS, diffusion.SAMPLERS),
        (policy.DIFFUSION_PREDICTIONS, diffusion.PREDICTION_TYPES),
        (policy.BETA_SCHEDULES, noise_schedules.SCHEDULES),
        (policy.TIMESTEP_SPACINGS, noise_schedules.TIMESTEP_SPACINGS),
        (policy.FLOW_SOLVERS, flow.SOLVERS),
        (policy.FLOW_PREDICTIONS, flow.PREDICTION_TYPES),
        (policy.TIME_SAMPLINGS, flow.TIME_SAMPLINGS),
        (run.END_PADDING, sampler.END_PADDING),
        (run.PAD_ACTION, sampler.PAD_ACTION),
    ]
    for ours, theirs in pairs:
        assert set(ours) == set(theirs)
    from robopolicy.algos import dsrl

    assert set(algos.DSRL_VARIANTS) == set(dsrl.VARIANTS)
