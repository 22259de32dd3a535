"""Multi-process data-parallel training launched by torchrun (gloo on CPU, nccl on GPU).

``torchrun --nproc_per_node=N train.py ...`` (or one torchrun per node, docs/distributed.md)
starts N copies of the same entry point; each reads its rank from the environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``). Every rank builds the same model from the same seed, trains on
its own share of each epoch (``make_dataloader(rank=..., world_size=...)``), and the gradients
are averaged by torch's ``DistributedDataParallel``: its constructor copies rank 0's weights to
every rank, and its autograd hooks all-reduce the gradients in buckets while the backward pass is
still running, so every replica takes the same optimizer step and the weights stay identical.
Only rank 0 logs, evaluates and writes checkpoints.

DDP's hooks are armed by the wrapped module's ``forward``; the policies train through
``compute_loss``, so ``data_parallel`` wraps a policy in ``LossModule``, whose ``forward`` is that
call. The policy itself stays the object that the EMA, the optimizer and the checkpoints see:
checkpoint keys carry no ``module.`` prefix and load in one process as before. One process
(``world_size`` 1) trains through ``policy.compute_loss`` directly, with no wrapper.

``RankStates`` is the checkpoint part that makes a multi-process run resume exactly: each rank
draws its own diffusion noise, so every rank's RNG states are gathered into rank 0's checkpoint
and each rank gets its own back on resume, with the same world size (else refused).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from robopolicy.training.checkpoint import CheckpointError
from robopolicy.training.rng import rng_state, set_rng_state
from robopolicy.utils.device import resolve_device


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


SINGLE_PROCESS = Distributed()


def init_distributed(device_name: str) -> tuple[Distributed, torch.device]:
    """Join the process group if launched by torchrun; pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return SINGLE_PROCESS, resolve_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank, world_size, local_rank), device


class LossModule(nn.Module):
    """A policy whose ``forward(batch)`` is ``policy.compute_loss(batch)``: what DDP wraps."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.policy.compute_loss(batch)


LossFunction = Callable[[dict[str, Any]], dict[str, torch.Tensor]]


def data_parallel(policy: nn.Module, ranks: Distributed, bucket_mb: float) -> LossFunction:
    """The loss function to train ``policy`` through: ``policy.compute_loss`` in one process,
    else the policy in ``LossModule`` wrapped by DDP (on the policy's device), whose gradient
    all-reduce runs in ``bucket_mb`` buckets during the backward pass. Building it copies rank 0's
    weights and buffers to every rank (every rank must call it)."""
    if not ranks.enabled:
        return policy.compute_loss
    device = next(policy.parameters()).device
    return DistributedDataParallel(
        LossModule(policy),
        device_ids=[device] if device.type == "cuda" else None,
        bucket_cap_mb=bucket_mb,
        forward_sync_buffers=False,  # buffers (normalizer statistics) never change: synced at
        #   construction only
    )


class RankStates:
    """Checkpoint part: the world size a run was written with and every rank's RNG states.

    ``gather`` is collective (every rank calls it, before rank 0 saves); ``state_dict`` then holds
    them all. ``load_state_dict`` keeps this rank's states, which ``apply`` sets (after
    ``RunState.restore`` has set rank 0's, the checkpoint's global ones). A checkpoint of another
    world size is refused before, by ``check_world_size``.
    """

    def __init__(self, ranks: Distributed):
        self.ranks = ranks
        self.gathered: list[dict] | None = None
        self.restored: dict | None = None

    def gather(self) -> None:
        states = [None] * self.ranks.world_size if self.ranks.is_main else None
        dist.gather_object(rng_state(), states, dst=0)
        self.gathered = states

    def state_dict(self) -> dict:
        if self.gathered is None:
            raise RuntimeError("RankStates.gather must run on every rank before a save")
        return {"world_size": self.ranks.world_size, "rng": self.gathered}

    def load_state_dict(self, state: dict) -> None:
        self.restored = state["rng"][self.ranks.rank]

    def apply(self) -> None:
        set_rng_state(self.restored)


def check_world_size(checkpoint: dict, path: object, ranks: Distributed) -> None:
    """Refuse to resume a checkpoint written with another number of processes: each rank's share
    of the data and its random state belong to that run's split, so no exact resume exists."""
    saved = int(checkpoint.get("loader", {}).get("world_size", 1))
    if saved != ranks.world_size:
        raise CheckpointError(
            path,
            f"written by a run with world_size={saved}, this run has world_size="
            f"{ranks.world_size}: resume it with {saved} processes",
        )


def weights_digest(module: nn.Module) -> str:
    """A short SHA-256 of every parameter and buffer: equal digests mean identical replicas."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def shutdown(info: Distributed) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
