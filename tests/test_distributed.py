"""robopolicy/training/distributed.py in-process: the loss function a run trains through (DDP
under torchrun, the policy's own compute_loss alone), and the world-size check of resume.
End-to-end torchrun runs: test_distributed_e2e.py."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from policy_helpers import make_batch, make_policy
from torch.nn.parallel import DistributedDataParallel

from robopolicy.policies import DiffusionPolicy
from robopolicy.training.checkpoint import CheckpointError
from robopolicy.training.distributed import (
    SINGLE_PROCESS,
    Distributed,
    check_world_size,
    data_parallel,
    weights_digest,
)

WORLD_SIZE = 2


def test_one_process_trains_through_the_policy_itself():
    policy = make_policy(DiffusionPolicy)
    assert data_parallel(policy, SINGLE_PROCESS, bucket_mb=25) == policy.compute_loss


def _batch_of(rank: int) -> dict:
    torch.manual_seed(100 + rank)
    return make_batch(batch=4)


def _loss_gradients(loss_function, parameters, rank: int) -> list[torch.Tensor]:
    """Gradients of the loss on rank ``rank``'s batch, with that rank's diffusion noise."""
    batch = _batch_of(rank)
    torch.manual_seed(200 + rank)
    for parameter in parameters:
        parameter.grad = None
    loss_function(batch)["loss"].backward()
    return [parameter.grad.clone() for parameter in parameters]


def _rank_main(rank: int, store_file: str, results: str) -> None:
    """One of two ranks: the mean of both ranks' gradients computed here without communication,
    against the gradients DDP leaves after one backward pass on this rank's batch alone."""
    torch.set_num_threads(1)
    store = dist.FileStore(store_file, WORLD_SIZE)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=WORLD_SIZE)
    policy = make_policy(DiffusionPolicy)  # seeded: the same weights on both ranks
    reference = copy.deepcopy(policy)
    if rank == 1:  # rank 1 starts from other weights: DDP must copy rank 0's
        with torch.no_grad():
            for parameter in policy.parameters():
                parameter.add_(1.0)
    parameters = list(reference.parameters())
    per_rank = [_loss_gradients(reference.compute_loss, parameters, r) for r in range(WORLD_SIZE)]
    expected = [sum(grads) / WORLD_SIZE for grads in zip(*per_rank, strict=True)]
    loss = data_parallel(policy, Distributed(rank, WORLD_SIZE), bucket_mb=0.01)  # many buckets
    got = _loss_gradients(loss, list(policy.parameters()), rank)
    torch.save(
        {
            "ddp": isinstance(loss, DistributedDataParallel),
            "weights": weights_digest(policy) == weights_digest(reference),
            "keys": sorted(policy.state_dict()) == sorted(reference.state_dict()),
            "max_error": max(
                (g - e).abs().max().item() for g, e in zip(got, expected, strict=True)
            ),
        },
        Path(results) / f"rank{rank}.pt",
    )
    dist.destroy_process_group()


def test_ddp_averages_the_ranks_gradients_and_starts_from_rank_0s_weights(tmp_path):
    mp.spawn(
        _rank_main, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD_SIZE, join=True
    )
    for rank in range(WORLD_SIZE):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["ddp"] and result["weights"] and result["keys"], (rank, result)
        assert result["max_error"] < 1e-6, (rank, result)


def test_resume_refuses_a_checkpoint_of_another_world_size():
    two_ranks = {"loader": {"world_size": 2, "epoch": 0}}
    with pytest.raises(CheckpointError) as refused:
        check_world_size(two_ranks, "run/latest.safetensors", SINGLE_PROCESS)
    assert str(refused.value) == (
        "checkpoint run/latest.safetensors: written by a run with world_size=2, this run has "
        "world_size=1: resume it with 2 processes"
    )
    with pytest.raises(CheckpointError, match="world_size=1, this run has world_size=2"):
        check_world_size({"loader": {"epoch": 0}}, "old.safetensors", Distributed(0, 2))
    check_world_size(two_ranks, "run/latest.safetensors", Distributed(1, 2))  # the same: resumes
