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
   ``checkpoint_every`` a checkpoint (``latest`` always, everything resume needs; the ``top_k``
   best by success kept, with the weights only: ``BEST_K_PARTS``).

Checkpoints are self-describing: the policy kind, its constructor arguments, the normalizer and
its statistics, the dataset's env spec and shape_meta, and the resolved config.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from robopolicy.config.collect_plan import missing_dataset_hint
from robopolicy.data.errors import DatasetError
from robopolicy.data.normalizer import Normalizer
from robopolicy.data.sampler import SequenceSampler
from robopolicy.data.torch_dataset import SequenceDataset, make_dataloader
from robopolicy.data.verify import check_dataset
from robopolicy.eval.evaluate import evaluate_policy, success_metrics
from robopolicy.policies.base import BasePolicy
from robopolicy.policies.registry import build_policy, policy_state
from robopolicy.training.checkpoint import load_checkpoint
from robopolicy.training.distributed import (
    SINGLE_PROCESS,
    Distributed,
    LossFunction,
    RankStates,
    check_world_size,
    data_parallel,
    weights_digest,
)
from robopolicy.training.ema import EMA
from robopolicy.training.lr_schedule import warmup_cosine
from robopolicy.training.rng import isolated_torch_rng, seed_everything
from robopolicy.training.run_logger import RunLogger
from robopolicy.training.run_state import RunState, StateOf, run_facts
from robopolicy.training.top_k import TopKCheckpoints
from robopolicy.utils.console import progress_bar

log = logging.getLogger("train")  # train.py's messages: the terminal and <run_dir>/train.log

BEST_K_PARTS = ("policy", "ema_policy")  # what a best-k checkpoint holds besides the facts: what
#   eval, deploy and RL fine-tuning load (the optimizer, ~half of latest's size, is in latest only)

# algo.optimizer_impl -> torch.optim.AdamW's switches (robopolicy/config/algos.py says which is
# fastest where)
OPTIMIZER_IMPLS = {
    "fused": {"fused": True},
    "foreach": {"foreach": True},
    "for_loop": {"foreach": False},
}


@dataclass
class BCRun:
    """Everything the loop steps: the policy and its EMA copy, the optimizer and schedule, the
    data, and where results go."""

    policy: BasePolicy
    loss: LossFunction  # batch -> losses: policy.compute_loss, or through DDP under torchrun
    parameters: list[torch.nn.Parameter]  # the policy's, listed once (not per step)
    ema: EMA
    optimizer: torch.optim.Optimizer
    grad_clip: float  # max global gradient norm
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: Any  # robopolicy/data/torch_dataset.py's resumable loader
    val_dataset: SequenceDataset | None
    topk: TopKCheckpoints
    logger: RunLogger
    state: RunState
    rank_states: RankStates | None  # under torchrun: every rank's RNG states in checkpoints


def train_bc(
    cfg: DictConfig,
    run_dir: Path,
    device: torch.device | str,
    ranks: Distributed = SINGLE_PROCESS,
) -> dict[str, Any]:
    """Run behaviour cloning as configured; returns the last metrics and the step reached.

    Under torchrun (``ranks.world_size`` > 1) each rank trains on its share of the data, DDP
    averages the gradients during each backward pass (robopolicy/training/distributed.py), and
    rank 0 alone logs, evaluates and writes checkpoints (with every rank's RNG states).
    """
    device = torch.device(device)
    seed_everything(cfg.seed)
    algo = cfg.algo
    run = _build_run(cfg, run_dir, device, ranks)
    step = 0
    if cfg.resume:
        step = _resume(run, cfg.resume, ranks)
        run.logger.rewind(step)
        log.info(f"resumed from {cfg.resume} at step {step}")
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if cfg.amp and device.type == "cuda"
        else nullcontext()
    )
    batches = _endless(run.loader)
    seconds = {"wait": 0.0, "compute": 0.0}  # data wait and compute since the last log
    metrics: dict[str, Any] = {}
    progress = progress_bar(algo.num_steps, "train", cfg.progress and ranks.is_main, initial=step)
    stop_at = algo.num_steps if algo.stop_after is None else min(algo.num_steps, algo.stop_after)
    checkpoint = run_dir / "checkpoints" / "latest.safetensors"
    run.policy.train()  # evaluation and validation use the EMA copy: the policy stays in train mode
    while step < stop_at:
        log_now = (step + 1) % algo.log_every == 0 or step + 1 == algo.num_steps
        losses, grad_norm = _train_step(run, batches, autocast, seconds, sync=log_now)
        step += 1
        progress.update(1)
        if log_now:
            metrics = _train_metrics(run, cfg, losses, grad_norm, seconds, ranks.world_size)
            progress.set_postfix(loss=f"{metrics['train/loss']:.4f}")
            validate = step % algo.val_every == 0 or step == algo.num_steps
            if ranks.is_main and run.val_dataset is not None and validate:
                averaged = run.ema.averaged
                metrics["val/loss"] = _validation_loss(averaged, run.val_dataset, cfg, autocast)
            run.logger.log(metrics, step)
        evaluate_now = algo.eval_every and (step % algo.eval_every == 0 or step == algo.num_steps)
        if ranks.is_main and evaluate_now:
            metrics = _periodic_evaluation(run, cfg, step)
            weights = run.state.snapshot(step, metrics, parts=BEST_K_PARTS)
            run.topk.offer(step, metrics["eval/success_rate"], weights)
        checkpoint_now = step % algo.checkpoint_every == 0 or step in (algo.num_steps, stop_at)
        if checkpoint_now and run.rank_states is not None:
            run.rank_states.gather()  # collective: every rank, then rank 0 saves
        if ranks.is_main and checkpoint_now:
            run.state.save(checkpoint, step, metrics)
    progress.close()
    run.logger.plot({"loss": ["train/loss", "val/loss"], "success": ["eval/success_rate"]})
    run.logger.finish()
    return {
        "step": step,
        "finished": step >= algo.num_steps,
        "checkpoint": checkpoint,
        "weights_digest": weights_digest(run.policy),
        **metrics,
    }


def _build_run(cfg: DictConfig, run_dir: Path, device: torch.device, ranks: Distributed) -> BCRun:
    """Open the data, fit the normalizer on the training episodes, build the policy, its EMA,
    the optimizer, the schedule and the loader (in this order: the RNG draws depend on it)."""
    algo = cfg.algo
    _verify_dataset(cfg)
    dataset = _open_dataset(cfg)
    _report_image_path(dataset.sampler, cfg.data.decoded_cache_mb)
    _report_coverage(dataset.sampler)
    buffer = dataset.sampler.replay_buffer
    shape_meta = _policy_shape_meta(buffer.shape_meta, list(cfg.obs_keys))
    normalizer = Normalizer.from_shape_meta(shape_meta, **cfg.policy.normalizer)
    normalizer.fit_replay_buffer(buffer, dataset.sampler.split.train)
    policy = build_policy(cfg.policy.kind, shape_meta, normalizer, _policy_args(cfg))
    policy.to(device)
    loss = data_parallel(policy, ranks, algo.ddp_bucket_mb)  # under torchrun: rank 0's weights
    if ranks.enabled:
        torch.manual_seed(cfg.seed + ranks.rank)  # each rank draws its own diffusion noise
    ema = EMA(policy, **algo.ema)
    optimizer = torch.optim.AdamW(
        policy.parameters(),
        lr=algo.lr,
        betas=tuple(algo.betas),
        weight_decay=algo.weight_decay,
        **OPTIMIZER_IMPLS[algo.optimizer_impl],
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
    topk = TopKCheckpoints(run_dir / "checkpoints", algo.top_k)
    rank_states = RankStates(ranks) if ranks.enabled else None
    parts = {
        "policy": policy_state(policy),
        "ema_policy": policy_state(policy, ema.averaged),
        "ema": StateOf(lambda: {"step": ema.step}, lambda saved: _set_ema_step(ema, saved)),
        "optimizer": optimizer,
        "scheduler": scheduler,
        "loader": loader,
        "topk": topk,
    }
    if rank_states is not None:
        parts["ranks"] = rank_states
    state = RunState(parts, facts={**run_facts(cfg), "dataset": str(buffer.path)})
    return BCRun(
        policy=policy,
        loss=loss,
        parameters=list(policy.parameters()),
        ema=ema,
        optimizer=optimizer,
        grad_clip=algo.grad_clip,
        scheduler=scheduler,
        loader=loader,
        val_dataset=dataset.get_validation_dataset() if cfg.data.val_ratio > 0 else None,
        topk=topk,
        logger=RunLogger.for_run(cfg, run_dir, enabled=ranks.is_main),
        state=state,
        rank_states=rank_states,
    )


def _resume(run: BCRun, path: str, ranks: Distributed) -> int:
    """Restore the run from the checkpoint at ``path`` (one of the same world size); returns
    its step. Under torchrun each rank takes back its own RNG states."""
    checkpoint = load_checkpoint(path)
    check_world_size(checkpoint, path, ranks)
    run.state.restore_from(checkpoint, path)
    if run.rank_states is not None:
        run.rank_states.apply()
    return int(checkpoint["step"])


def _verify_dataset(cfg: DictConfig) -> None:
    """Every low-dim chunk decoded and checked, image chunks too up to a size (else for presence
    and header): one line."""
    if not Path(cfg.task.dataset_path).exists():
        raise DatasetError(cfg.task.dataset_path, f"no dataset here; {missing_dataset_hint(cfg)}")
    verified = check_dataset(
        cfg.task.dataset_path,
        images="presence",
        decode_images_up_to=cfg.data.preflight_decode_images_mb * 2**20,
        progress=cfg.progress,
    )
    log.info(f"dataset verified in {verified.seconds:.1f} s: {verified.summary()}")


def _set_ema_step(ema: EMA, saved: dict) -> None:
    ema.step = int(saved["step"])


def _train_step(run: BCRun, batches, autocast, seconds: dict, sync: bool):
    """One optimizer step on the next batch; adds its data-wait and compute time to ``seconds``.

    Nothing here waits for the device: ``sync`` (the steps that log) waits for CUDA to finish,
    so that the compute time summed over a logging interval is the time its steps took.
    """
    start = time.perf_counter()
    batch = next(batches)
    fetched = time.perf_counter()
    with autocast:
        losses = run.loss(batch)
    run.optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()  # under torchrun DDP all-reduces the gradients during it
    grad_norm = torch.nn.utils.clip_grad_norm_(run.parameters, run.grad_clip, foreach=True)
    run.optimizer.step()
    run.scheduler.step()
    run.ema.update(run.policy)
    if sync and run.parameters[0].device.type == "cuda":
        torch.cuda.synchronize()
    seconds["wait"] += fetched - start
    seconds["compute"] += time.perf_counter() - fetched
    return losses, grad_norm


def _train_metrics(run: BCRun, cfg, losses, grad_norm, seconds: dict, world_size: int) -> dict:
    """The ``train/*`` metrics of a log step; resets the time counters."""
    total = seconds["wait"] + seconds["compute"]
    metrics = {
        "train/loss": losses["loss"].item(),
        "train/grad_norm": grad_norm.item(),
        "train/lr": run.scheduler.get_last_lr()[0],
        "train/data_wait_share": seconds["wait"] / total,
        "train/samples_per_s": cfg.algo.log_every * cfg.data.batch_size * world_size / total,
        "train/epoch": run.loader.epoch,
    }
    seconds["wait"] = seconds["compute"] = 0.0
    return metrics


def _periodic_evaluation(run: BCRun, cfg: DictConfig, step: int) -> dict:
    """Closed-loop rollouts of the EMA policy; logs their metrics and videos."""
    result = evaluate_policy(run.ema.averaged, cfg, cfg.eval.n_episodes_during_training)
    metrics = success_metrics(result)
    run.logger.log(metrics, step)
    for i, frames in enumerate(result.videos):
        run.logger.video(f"step{step:07d}_episode{i}", frames, fps=cfg.task.fps, step=step)
    return metrics


def _report_image_path(sampler: SequenceSampler, cache_mb: int) -> None:
    """Print how the image frames reach the batches: decoded once into RAM, or per sample."""
    if not sampler.image_keys:
        return
    size = f"{sampler.image_bytes / 2**20:.0f} MiB decoded"
    if sampler.images_decoded:
        path = f"decoded into RAM at start ({size} <= data.decoded_cache_mb={cache_mb})"
    else:
        path = (
            f"decoded per sample from compressed chunks ({size} > data.decoded_cache_mb={cache_mb})"
        )
    log.info(f"images {', '.join(sampler.image_keys)}: {path}")


COVERAGE_WARNING = 0.95  # warn when fewer training steps than this serve as conditioning steps


def _report_coverage(sampler: SequenceSampler, last_k: int = 5) -> None:
    """Print which share of the training steps the policy is trained to act from."""
    coverage = sampler.coverage(last_k)
    log.info(
        f"coverage: {coverage['steps']:.0%} of training steps serve as a conditioning "
        f"step ({coverage['last_k']:.0%} of each episode's last {last_k}; "
        f"data.end_padding={sampler.end_padding})"
    )
    if coverage["steps"] < COVERAGE_WARNING:
        log.warning(
            f"WARNING: only {coverage['steps']:.0%} of training steps serve as a "
            "conditioning step: the policy never learns to act from the rest (often the end of "
            "each episode); set data.end_padding=full"
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
        decoded_cache_bytes=cfg.data.decoded_cache_mb * 2**20,
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
    with isolated_torch_rng(0):  # the same noise at every validation; training noise unmoved
        for batch_index, batch in enumerate(loader):
            if batch_index >= cfg.data.val_batches:
                break
            with autocast:
                total += policy.compute_loss(batch)["loss"].item() * len(batch["action"])
            count += len(batch["action"])
    return total / max(count, 1)
