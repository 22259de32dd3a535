"""Behaviour cloning: train a diffusion or flow policy on a demonstration dataset.

The loop, step-based (``algo.num_steps`` optimizer steps, however many epochs that is):

1. open the dataset, split episodes into train/val, fit the normalizer on the training episodes
   only, build the policy, its EMA copy, AdamW and the warm-up + cosine schedule;
2. optionally restore all of that from a checkpoint (``resume=PATH``): weights, EMA, optimizer,
   scheduler, RNG states and the data loader's position, so the resumed run continues exactly as
   the uninterrupted one would have;
3. each step: next batch, loss, backward, gradient clipping, optimizer and scheduler step, EMA
   update; every ``log_every`` steps log the loss, learning rate and the share of time spent
   waiting for data; every ``val_every`` the validation loss; every ``eval_every`` closed-loop
   rollouts of the EMA policy in vector envs (the same ``run_episodes`` as ``eval.py``); every
   ``checkpoint_every`` a checkpoint (``latest`` always; the ``top_k`` best by success kept).

Checkpoints are self-describing: the policy kind, its constructor arguments, the normalizer and
its statistics, the dataset's env spec and shape_meta, and the resolved config.
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from robopolicy.data.errors import DatasetError
from robopolicy.data.normalizer import Normalizer
from robopolicy.data.sampler import SequenceSampler
from robopolicy.data.torch_dataset import SequenceDataset, make_dataloader
from robopolicy.eval.evaluate import evaluate
from robopolicy.eval.rollout import RolloutResult
from robopolicy.policies.base import BasePolicy
from robopolicy.policies.registry import build_policy, policy_record
from robopolicy.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from robopolicy.training.distributed import (
    SINGLE_PROCESS,
    Distributed,
    average_gradients,
    broadcast_parameters,
    weights_digest,
)
from robopolicy.training.ema import EMA
from robopolicy.training.lr_schedule import warmup_cosine
from robopolicy.training.rng import rng_state, seed_everything, set_rng_state
from robopolicy.training.run_logger import RunLogger
from robopolicy.training.top_k import TopKCheckpoints
from robopolicy.utils.stats import wilson_interval


def train_bc(
    cfg: DictConfig,
    run_dir: Path,
    device: torch.device | str,
    ranks: Distributed = SINGLE_PROCESS,
) -> dict[str, Any]:
    """Run behaviour cloning as configured; returns the last metrics and the step reached.

    Under torchrun (``ranks.world_size`` > 1) each rank trains on its share of the data, gradients
    are averaged every step (robopolicy/training/distributed.py), and rank 0 alone logs, evaluates
    and writes checkpoints.
    """
    device = torch.device(device)
    seed_everything(cfg.seed)
    algo = cfg.algo
    if not Path(cfg.task.dataset_path).exists():
        raise DatasetError(
            cfg.task.dataset_path,
            f"no dataset here; make one with: python datasets/collect.py task={cfg.task.name}",
        )
    dataset = _open_dataset(cfg)
    _report_coverage(dataset.sampler)
    buffer = dataset.sampler.replay_buffer
    shape_meta = _policy_shape_meta(buffer.shape_meta, list(cfg.obs_keys))
    normalizer = Normalizer.from_shape_meta(shape_meta, **cfg.policy.normalizer)
    normalizer.fit_replay_buffer(buffer, dataset.sampler.split.train)
    policy = build_policy(cfg.policy.kind, shape_meta, normalizer, _policy_args(cfg))
    policy.to(device)
    if ranks.enabled:
        broadcast_parameters(policy)
        torch.manual_seed(cfg.seed + ranks.rank)  # each rank draws its own diffusion noise
    ema = EMA(policy, **algo.ema)
    optimizer = torch.optim.AdamW(
        policy.parameters(), lr=algo.lr, betas=tuple(algo.betas), weight_decay=algo.weight_decay
    )
    scheduler = warmup_cosine(optimizer, algo.warmup_steps, algo.num_steps)
    loader = make_dataloader(
        dataset,
        cfg.data.batch_size,
        seed=cfg.seed,
        num_workers=cfg.data.num_workers,
        rank=ranks.rank,
        world_size=ranks.world_size,
    )
    val_dataset = dataset.get_validation_dataset() if cfg.data.val_ratio > 0 else None
    env_spec = {
        "id": cfg.task.env_id,
        "kwargs": OmegaConf.to_container(cfg.task.env_kwargs, resolve=True),
    }
    topk = TopKCheckpoints(run_dir / "checkpoints", algo.top_k)
    logger = RunLogger.for_run(cfg, run_dir, enabled=ranks.is_main)

    step = 0
    if cfg.resume:
        step = _restore(cfg.resume, policy, ema, optimizer, scheduler, loader, topk)
        print(f"[train] resumed from {cfg.resume} at step {step}")

    def checkpoint_state(metrics: dict) -> dict:
        return {
            "policy": policy_record(policy, policy.state_dict()),
            "ema_policy": policy_record(policy, ema.averaged.state_dict()),
            "ema": {"step": ema.step},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "loader": loader.state_dict(),
            "rng": rng_state(),
            "step": step,
            "topk": topk.state_dict(),
            "env_spec": env_spec,
            "dataset": str(buffer.path),
            "config": OmegaConf.to_container(cfg, resolve=True),
            "metrics": metrics,
        }

    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if cfg.amp and device.type == "cuda"
        else nullcontext()
    )
    batches = _endless(loader)
    wait_seconds = compute_seconds = 0.0
    metrics: dict[str, Any] = {}
    progress = tqdm(
        total=algo.num_steps,
        initial=step,
        desc="train",
        dynamic_ncols=True,
        disable=not ranks.is_main,
    )
    stop_at = algo.num_steps if algo.stop_after is None else min(algo.num_steps, algo.stop_after)
    while step < stop_at:
        start = time.perf_counter()
        batch = next(batches)
        fetched = time.perf_counter()
        policy.train()
        with autocast:
            losses = policy.compute_loss(batch)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if ranks.enabled:
            average_gradients(list(policy.parameters()), ranks.world_size)
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), algo.grad_clip)
        optimizer.step()
        scheduler.step()
        ema.update(policy)
        step += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        wait_seconds += fetched - start
        compute_seconds += time.perf_counter() - fetched
        progress.update(1)

        if step % algo.log_every == 0 or step == algo.num_steps:
            total = wait_seconds + compute_seconds
            metrics = {
                "train/loss": losses["loss"].item(),
                "train/grad_norm": grad_norm.item(),
                "train/lr": scheduler.get_last_lr()[0],
                "train/data_wait_share": wait_seconds / total,
                "train/samples_per_s": algo.log_every
                * cfg.data.batch_size
                * ranks.world_size
                / total,
                "train/epoch": loader.epoch,
            }
            wait_seconds = compute_seconds = 0.0
            progress.set_postfix(loss=f"{metrics['train/loss']:.4f}")
            validate = step % algo.val_every == 0 or step == algo.num_steps
            if ranks.is_main and val_dataset is not None and validate:
                metrics["val/loss"] = _validation_loss(ema.averaged, val_dataset, cfg, autocast)
            logger.log(metrics, step)
        evaluate_now = algo.eval_every and (step % algo.eval_every == 0 or step == algo.num_steps)
        if ranks.is_main and evaluate_now:
            result = evaluate_policy(ema.averaged, cfg, cfg.eval.n_episodes_during_training)
            low, high = wilson_interval(int(result.success.sum()), len(result.success))
            metrics = {
                "eval/success_rate": result.success_rate,
                "eval/success_low": low,
                "eval/success_high": high,
                "eval/mean_length": float(result.lengths.mean()),
            }
            logger.log(metrics, step)
            for i, frames in enumerate(result.videos):
                logger.video(f"step{step:07d}_episode{i}", frames, fps=cfg.task.fps, step=step)
            topk.offer(step, result.success_rate, checkpoint_state(metrics))
        checkpoint_now = step % algo.checkpoint_every == 0 or step in (algo.num_steps, stop_at)
        if ranks.is_main and checkpoint_now:
            save_checkpoint(
                run_dir / "checkpoints" / "latest.safetensors", checkpoint_state(metrics)
            )
    progress.close()
    logger.plot({"loss": ["train/loss", "val/loss"], "success": ["eval/success_rate"]})
    logger.finish()
    return {
        "step": step,
        "finished": step >= algo.num_steps,
        "checkpoint": run_dir / "checkpoints" / "latest.safetensors",
        "weights_digest": weights_digest(policy),
        **metrics,
    }


def evaluate_policy(policy: BasePolicy, cfg: DictConfig, n_episodes: int) -> RolloutResult:
    """Closed-loop success of ``policy`` on the task's env, with the eval sampler settings."""
    return evaluate(
        policy,
        cfg.task.env_id,
        OmegaConf.to_container(cfg.task.env_kwargs, resolve=True),
        n_episodes,
        n_envs=cfg.eval.n_envs,
        seed=cfg.eval.seed,
        env_modules=list(cfg.env_modules),
        video_episodes=cfg.eval.video_episodes,
        sampler_options=OmegaConf.to_container(cfg.eval.sampler, resolve=True),
        max_episode_steps=cfg.task.get("max_episode_steps"),
    )


COVERAGE_WARNING = 0.95  # warn when fewer training steps than this serve as conditioning steps


def _report_coverage(sampler: SequenceSampler, last_k: int = 5) -> None:
    """Print which share of the training steps the policy is trained to act from."""
    coverage = sampler.coverage(last_k)
    print(
        f"[train] coverage: {coverage['steps']:.0%} of training steps serve as a conditioning "
        f"step ({coverage['last_k']:.0%} of each episode's last {last_k}; "
        f"data.end_padding={sampler.end_padding})"
    )
    if coverage["steps"] < COVERAGE_WARNING:
        print(
            f"[train] WARNING: only {coverage['steps']:.0%} of training steps serve as a "
            "conditioning step: the policy never learns to act from the rest (often the end of "
            "each episode); set data.end_padding=full",
            file=sys.stderr,
        )


def _open_dataset(cfg: DictConfig) -> SequenceDataset:
    args = cfg.policy.args
    return SequenceDataset.from_path(
        cfg.task.dataset_path,
        horizon=args.horizon,
        n_obs_steps=args.n_obs_steps,
        n_action_steps=args.n_action_steps,
        in_memory=cfg.data.in_memory,
        obs_keys=list(cfg.obs_keys),
        val_ratio=cfg.data.val_ratio,
        seed=cfg.seed,
        max_train_episodes=cfg.data.max_train_episodes,
        end_padding=cfg.data.end_padding,
        pad_action=cfg.data.pad_action,
    )


def _policy_shape_meta(dataset_meta: dict, obs_keys: list[str]) -> dict:
    """The dataset's shape_meta restricted to the observation keys the policy uses (the sampler
    has already checked that they exist)."""
    obs = {key: dataset_meta["obs"][key] for key in obs_keys}
    return {"obs": obs, "action": dataset_meta["action"]}


def _policy_args(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg.policy.args, resolve=True)


def _endless(loader):
    while True:
        yield from loader


@torch.no_grad()
def _validation_loss(
    policy: BasePolicy, dataset: SequenceDataset, cfg: DictConfig, autocast
) -> float:
    loader = make_dataloader(dataset, cfg.data.batch_size, shuffle=False, num_workers=0)
    total, count = 0.0, 0
    policy.eval()
    generator_state = torch.get_rng_state()  # validation noise must not shift the training RNG
    torch.manual_seed(0)
    for batch_index, batch in enumerate(loader):
        if batch_index >= cfg.data.val_batches:
            break
        with autocast:
            total += policy.compute_loss(batch)["loss"].item() * len(batch["action"])
        count += len(batch["action"])
    torch.set_rng_state(generator_state)
    return total / max(count, 1)


def _restore(path, policy, ema, optimizer, scheduler, loader, topk) -> int:
    checkpoint = load_checkpoint(path)
    if "optimizer" not in checkpoint:
        raise CheckpointError(path, "is not a training checkpoint (no optimizer state to resume)")
    try:
        policy.load_state_dict(checkpoint["policy"]["weights"])
        ema.averaged.load_state_dict(checkpoint["ema_policy"]["weights"])
    except (RuntimeError, ValueError) as error:
        raise CheckpointError(path, f"does not fit the configured policy: {error}") from None
    ema.step = int(checkpoint["ema"]["step"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    loader.load_state_dict(checkpoint["loader"])
    topk.load_state_dict(checkpoint["topk"])
    set_rng_state(checkpoint["rng"])
    return int(checkpoint["step"])
