"""Train a policy: ``python train.py task=push_cube policy=diffusion algo=bc``, or fine-tune one
with RL: ``python train.py algo=dppo checkpoint=PATH`` (``algo=dsrl``, ``algo=reinflow``,
``algo=fpo``).

Hydra entry point (config: conf/config.yaml and its groups). The run directory (printed at the
start and the end) receives checkpoints/, metrics.jsonl, loss.png, success.png, videos/ and
eval.json. Errors in the config, the dataset or a checkpoint stop the run before training starts,
with one line naming the key, file or value at fault (set ROBOPOLICY_TRACEBACK=1 for the stack).
"""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from robopolicy.config import validate
from robopolicy.config.locate import conf_dir
from robopolicy.eval.env_check import EnvConfigError, check_env_config
from robopolicy.eval.evaluate import EVAL_RESULTS, evaluate_policy, summarize
from robopolicy.policies.registry import load_policy
from robopolicy.rl.base_task import adopt_base_task
from robopolicy.training.distributed import init_distributed, shutdown
from robopolicy.training.run_logger import RunLogger
from robopolicy.utils.run_dir import continue_in, resumed_run_dir
from robopolicy_cli.command import HYDRA_NOTE, Usage, run_hydra_program, run_in_run_dir

log = logging.getLogger("train")  # every message: the terminal and <run_dir>/train.log (Hydra)

# algo.name -> "module:function"; each function is ``(cfg, run_dir, device, ranks) -> outcome``
# with ``outcome["finished"]`` (False when stopped early by algo.stop_after) and
# ``outcome["checkpoint"]`` (the checkpoint to evaluate; it loads in eval.py like any other).
ALGORITHMS = {
    "bc": "robopolicy.algos.bc:train_bc",
    "dppo": "robopolicy.algos.dppo:train_dppo",
    "reinflow": "robopolicy.algos.reinflow:train_reinflow",
    "fpo": "robopolicy.algos.fpo:train_fpo",
    "dsrl": "robopolicy.algos.dsrl:train_dsrl",
}


USAGE = Usage(
    summary="Train a policy by behaviour cloning (algo=bc) on a task's demonstrations, or "
    "fine-tune a trained one with RL (algo=dppo | reinflow | fpo | dsrl, with checkpoint=PATH); "
    "the run directory gets checkpoints, metrics, plots, videos and a final evaluation.",
    config="config",
    schema="robopolicy/config/run.py TrainConfig (algo.*: robopolicy/config/algos.py and "
    "chain_ppo.py, fpo.py; policy.*: policy.py)",
    examples=(
        "task=push_cube policy=diffusion algo.num_steps=5000",
        "+experiment=push_cube_dart policy=flow",
        "algo=dppo checkpoint=outputs/train/<run>/checkpoints/latest.safetensors",
        "resume=outputs/train/<run>/checkpoints/latest.safetensors",
    ),
    groups=("policy", "backbone", "algo", "logger", "+experiment"),
    notes=(HYDRA_NOTE,),
)


def algorithm(name: str):
    """The training function of ``algo.name`` (the config schema admits only these names)."""
    module, function = ALGORITHMS[name].split(":")
    return getattr(importlib.import_module(module), function)


def check_envs(cfg: DictConfig) -> None:
    """Build the task's env once, and once more with the RL training envs' kwargs where they
    differ (``algo.reward_type``, ``algo.env_kwargs``): a bad env kwarg stops the run in seconds."""
    task, algo = cfg.task, cfg.algo
    env_kwargs = OmegaConf.to_container(task.env_kwargs, resolve=True)
    steps = task.get("max_episode_steps")
    check_env_config(task.env_id, env_kwargs, cfg.env_modules, steps)
    training = dict(env_kwargs)
    if algo.get("reward_type") is not None:
        training["reward_type"] = algo.reward_type
    if "env_kwargs" in algo:
        training.update(OmegaConf.to_container(algo.env_kwargs, resolve=True))
    if training == env_kwargs:
        return
    try:
        check_env_config(task.env_id, training, cfg.env_modules, steps, key="algo")
    except EnvConfigError as error:  # chain-PPO's training reward is algo.reward_type
        named = "algo.env_kwargs" if "env_kwargs" in algo else "algo"
        raise EnvConfigError(str(error).replace("algo.env_kwargs", named, 1)) from None


def run(cfg: DictConfig) -> Path:
    adopt_base_task(cfg, list(HydraConfig.get().overrides.task))  # RL: the checkpoint's task
    validate(cfg)  # types, ranges, cross-field rules: one line naming the key, before any work
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    check_envs(cfg)
    resumed = resumed_run_dir(cfg.resume) if cfg.resume and not cfg.resume_new_dir else None
    if resumed is not None:
        run_dir = continue_in(resumed)
    ranks, device = init_distributed(cfg.device)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    train = algorithm(cfg.algo.name)
    log.info(f"rank {ranks.rank}/{ranks.world_size}: run directory {run_dir}, device {device}")
    outcome = train(cfg, run_dir, device, ranks)
    if ranks.enabled:
        log.info(f"rank {ranks.rank} final weights digest {outcome['weights_digest']}")
        shutdown(ranks)
        if not ranks.is_main:
            return run_dir
    checkpoint = Path(outcome["checkpoint"])
    if not outcome["finished"]:
        log.info(f"stopped at step {outcome['step']}; continue with resume={checkpoint}")
        return run_dir
    policy, _ = load_policy(checkpoint, device=device)
    result = evaluate_policy(policy, cfg, cfg.eval.n_episodes)
    summary = summarize(result)
    summary["checkpoint"] = str(checkpoint)
    logger = RunLogger.for_run(cfg, run_dir)  # the training run's wandb run, continued
    videos = [
        logger.video(f"final_episode{i}", f, cfg.task.fps) for i, f in enumerate(result.videos)
    ]
    summary["videos"] = [str(path) for path in videos]
    (run_dir / EVAL_RESULTS).write_text(json.dumps(summary, indent=2))
    low, high = summary["success_ci95"]
    logger.summarize(
        {
            "final/success_rate": summary["success_rate"],
            "final/success_low": low,
            "final/success_high": high,
            "final/n_episodes": summary["n_episodes"],
        }
    )
    logger.finish()
    log.info(
        f"final evaluation: {summary['successes']}/{summary['n_episodes']} successes = "
        f"{summary['success_rate']:.1%} (95% CI {low:.1%}-{high:.1%}); results in {run_dir}"
    )
    return run_dir


@hydra.main(
    config_path=str(conf_dir()),
    config_name="config",
    version_base="1.3",
)
def hydra_main(cfg: DictConfig) -> None:
    run_in_run_dir(cfg, lambda: run(cfg))


def main() -> None:
    run_hydra_program(USAGE, hydra_main)
