"""Multi-process data-parallel training launched by torchrun (gloo on CPU, nccl on GPU).

``torchrun --nproc_per_node=N train.py ...`` starts N copies of the same entry point; each reads
its rank from the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``). Every rank builds the
same model from the same seed (and rank 0's weights are broadcast to be sure), trains on its own
share of each epoch (``make_dataloader(rank=..., world_size=...)``), and after each backward pass
the gradients are averaged across ranks with one all-reduce, so every replica takes the same
optimizer step and the weights stay identical. Only rank 0 logs, evaluates and writes checkpoints.

The policies expose ``compute_loss`` rather than ``forward``, so instead of wrapping them in
``DistributedDataParallel`` (whose hooks fire on ``forward``) the gradients are averaged
explicitly: one flattened all-reduce per step, easy to read and to check.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

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


def broadcast_parameters(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)


def average_gradients(parameters: list[nn.Parameter], world_size: int) -> None:
    """Replace each gradient by its mean over the ranks (one all-reduce of a flat buffer)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


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
