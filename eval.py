"""Evaluate a checkpoint closed-loop in simulation: ``python eval.py checkpoint=PATH``.

Loads the policy without executing pickle (safetensors), rebuilds the env recorded in the
checkpoint (or the one given), runs ``n_episodes`` seeded episodes in parallel envs and writes
``results.json`` (success rate with a 95% Wilson interval, return, episode length, per-mode counts,
inference latency) and mp4 videos to the run directory. Sampling steps and sampler are chosen
here, independently of training: ``sampler.num_steps=4 sampler.sampler=ddim``.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from robopolicy.eval.evaluate import evaluate, summarize
from robopolicy.policies.registry import load_policy
from robopolicy.training.run_logger import RunLogger
from robopolicy.utils.cli import run_reporting_errors
from robopolicy.utils.device import resolve_device


def run(cfg: DictConfig) -> dict:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    device = resolve_device(cfg.device)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    policy, checkpoint = load_policy(cfg.checkpoint, device=device, use_ema=cfg.use_ema)
    env_spec = checkpoint.get("env_spec") or {}
    env_id = cfg.env_id or env_spec.get("id")
    if not env_id:
        raise ValueError("the checkpoint records no env; pass env_id=<gymnasium id>")
    env_kwargs = {**env_spec.get("kwargs", {}), **OmegaConf.to_container(cfg.env_kwargs)}
    sampler = OmegaConf.to_container(cfg.sampler, resolve=True)
    print(f"[eval] {cfg.checkpoint} on {env_id}: {cfg.n_episodes} episodes, sampler {sampler}")
    result = evaluate(
        policy,
        env_id,
        env_kwargs,
        cfg.n_episodes,
        n_envs=cfg.n_envs,
        seed=cfg.seed,
        env_modules=list(cfg.env_modules),
        video_episodes=cfg.video_episodes,
        sampler_options=sampler,
        max_episode_steps=cfg.max_episode_steps,
    )
    summary = {
        "checkpoint": str(cfg.checkpoint),
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "sampler": sampler,
        **summarize(result),
    }
    logger = RunLogger(out_dir, wandb_mode="disabled")
    fps = env_spec.get("kwargs", {}).get("policy_hz", 10)
    videos = [
        logger.video(f"episode{i}", frames, fps=fps) for i, frames in enumerate(result.videos)
    ]
    summary["videos"] = [str(v) for v in videos]
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2))
    low, high = summary["success_ci95"]
    print(
        f"[eval] success {summary['successes']}/{summary['n_episodes']} = "
        f"{summary['success_rate']:.1%} (95% CI {low:.1%}-{high:.1%}), mean length "
        f"{summary['length_mean']:.1f}, modes {summary['mode_counts']}, inference "
        f"{summary['inference_ms_median']:.1f} ms median per chunk"
    )
    print(f"[eval] results: {out_dir / 'results.json'}")
    return summary


@hydra.main(config_path="conf", config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_reporting_errors("eval.py", lambda: run(cfg))


if __name__ == "__main__":
    main()
