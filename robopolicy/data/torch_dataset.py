"""The sampler as a torch ``Dataset``, and a resumable, deterministic ``DataLoader`` over it.

A batch is ``{"obs": {key: (B, n_obs_steps, ...)}, "action": (B, horizon, Da) float32,
"is_pad": (B, horizon) bool}``. Images stay uint8 HWC: the policy converts them to float on the
device, which moves a quarter of the bytes through the loader, the pinned buffer and the PCIe bus.

Determinism and exact resume. The order of an epoch is a permutation drawn from a
``torch.Generator`` seeded by (seed, epoch), so it is the same for any number of workers. The
loader counts the samples its caller has *consumed* (worker prefetching runs ahead, so the
sampler's own position would overcount), and ``state_dict()`` records (seed, epoch, position):
a loader restored from it yields exactly the batches the original would have yielded next. A
caller that stops iterating mid-epoch and iterates again continues the same epoch where it left
off; a new epoch starts when one is exhausted.

Workers. Each sample decodes a few image chunks (Blosc) and gathers small numpy arrays: pure CPU
work that parallelises across processes. ``worker_init_fn`` makes each worker single-threaded
(torch intra-op threads, Blosc's internal threads), so ``num_workers`` processes use
``num_workers`` cores and do not fight over them; the default uses one worker per core available
to this process (none for low-dim-only data, where a worker costs more than it saves).
Workers persist across epochs (no process start-up per epoch) and each keeps
``prefetch_factor`` batches ready. Memory is pinned only when CUDA is available.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numcodecs.blosc
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from robopolicy.data.reader import ReplayBuffer
from robopolicy.data.sampler import SequenceSampler


class SequenceDataset(Dataset):
    """Torch tensors for each window of a ``SequenceSampler`` (arrays shared, not copied)."""

    def __init__(self, sampler: SequenceSampler):
        self.sampler = sampler

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike,
        horizon: int,
        n_obs_steps: int,
        n_action_steps: int,
        in_memory: bool = False,
        **sampler_kwargs,
    ) -> SequenceDataset:
        """Open the dataset at ``path`` and sample it (``sampler_kwargs`` go to the sampler)."""
        replay_buffer = ReplayBuffer.open(path, in_memory=in_memory)
        return cls(
            SequenceSampler(replay_buffer, horizon, n_obs_steps, n_action_steps, **sampler_kwargs)
        )

    @property
    def image_keys(self) -> list[str]:
        """Observation keys decoded per sample (read by ``make_dataloader``'s worker default;
        none when the sampler holds its images decoded in RAM)."""
        return self.sampler.keys_decoded_per_sample

    def get_validation_dataset(self) -> SequenceDataset:
        return SequenceDataset(self.sampler.get_validation_sampler())

    def __len__(self) -> int:
        return len(self.sampler)

    def __getitem__(self, index: int) -> dict:
        return _as_tensors(self.sampler[index])

    def __getitems__(self, indices: list[int]) -> dict:
        """A whole batch in one gather (the DataLoader calls this instead of ``__getitem__``
        per index; ``batched_collate`` then passes it through)."""
        return _as_tensors(self.sampler.get_batch(indices))


def _as_tensors(sample: dict) -> dict:
    return {
        "obs": {key: torch.from_numpy(value) for key, value in sample["obs"].items()},
        "action": torch.from_numpy(sample["action"]),
        "is_pad": torch.from_numpy(sample["is_pad"]),
    }


def batched_collate(batch):
    """The DataLoader's collate for ``SequenceDataset``: its batches come stacked already
    (``__getitems__``); anything else (a list of samples) is stacked by torch's default."""
    if isinstance(batch, dict):
        return batch
    return default_collate(batch)


class ResumableRandomSampler(Sampler[int]):
    """Indices ``0..n-1`` in a per-epoch order fixed by (seed, epoch), from a saved position.

    ``epoch`` and ``position`` (samples of this epoch already consumed) are advanced by
    ``ResumableDataLoader``; iterating yields the rest of the current epoch's order.

    Multi-process training (``world_size`` > 1): every rank draws the same epoch order and takes
    every ``world_size``-th index starting at its ``rank``, after trimming the order to a multiple
    of ``world_size`` so that all ranks see the same number of samples and stay in step.
    """

    def __init__(
        self, n: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1
    ):
        if n < 0:
            raise ValueError(f"the number of indices must be >= 0, got n={n}")
        if not 0 <= rank < world_size:
            raise ValueError(
                f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        if 0 < n < world_size:
            raise ValueError(f"{n} samples cannot be shared among world_size={world_size} ranks")
        self.n = int(n)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.position = 0

    def order(self, epoch: int) -> torch.Tensor:
        """This rank's order of one epoch (the whole order when ``world_size`` is 1)."""
        if not self.shuffle:
            full = torch.arange(self.n)
        else:
            # SeedSequence mixes (seed, epoch) so no two pairs share a stream (seed + epoch would).
            mixed = np.random.SeedSequence([self.seed, epoch]).generate_state(2, dtype=np.uint32)
            generator = torch.Generator().manual_seed(int(mixed[0]) << 32 | int(mixed[1]))
            full = torch.randperm(self.n, generator=generator)
        usable = (self.n // self.world_size) * self.world_size
        return full[:usable][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order(self.epoch)[self.position :].tolist())

    def __len__(self) -> int:
        """A full epoch of this rank, also when resumed mid-epoch (schedules plan full epochs)."""
        return self.n // self.world_size

    def state_dict(self) -> dict:
        keys = ("n", "seed", "shuffle", "world_size", "epoch", "position")
        return {key: getattr(self, key) for key in keys}

    def load_state_dict(self, state: dict) -> None:
        if int(state.get("world_size", 1)) != self.world_size:
            raise ValueError(
                f"sampler state is from a run with world_size={state.get('world_size', 1)}; this "
                f"run has world_size={self.world_size} (resume with the same number of processes)"
            )
        if int(state["n"]) != self.n or bool(state["shuffle"]) != self.shuffle:
            raise ValueError(
                f"sampler state is for n={state['n']}, shuffle={state['shuffle']}; this sampler "
                f"has n={self.n}, shuffle={self.shuffle} (a different dataset or split?)"
            )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])


class ResumableDataLoader:
    """A ``DataLoader`` whose consumed position can be saved and restored exactly.

    Iterate it like a ``DataLoader``; ``loader`` is the underlying one, ``sampler`` its index
    sampler. ``len()`` is the number of batches in a full epoch.
    """

    def __init__(self, loader: DataLoader, sampler: ResumableRandomSampler):
        self.loader = loader
        self.sampler = sampler

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def __iter__(self) -> Iterator[dict]:
        batch_size = self.loader.batch_size
        start = self.sampler.position
        for count, batch in enumerate(self.loader, start=1):
            self.sampler.position = min(start + count * batch_size, len(self.sampler))
            yield batch
        self.sampler.epoch += 1
        self.sampler.position = 0

    def __len__(self) -> int:
        return len(self.loader)

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


def worker_init_fn(worker_id: int) -> None:
    """One core per worker: no torch intra-op threads, no Blosc decompression threads."""
    torch.set_num_threads(1)
    numcodecs.blosc.use_threads = False


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def make_dataloader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int | None = None,
    drop_last: bool = False,
    prefetch_factor: int = 2,
    pin_memory: bool | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> ResumableDataLoader:
    """A resumable loader over ``dataset``, the same batches for any ``num_workers``.

    ``num_workers=None`` chooses: none for a dataset that decodes no images per sample
    (``dataset.image_keys`` empty: no images, or images held decoded in RAM), whose samples are
    a cheap numpy gather that costs less than a worker's per-batch shared-memory hand-off (see
    docs/benchmarks.md), else one worker per available core.
    ``num_workers=0`` loads in the calling process. ``pin_memory=None`` pins only with CUDA.
    ``rank`` / ``world_size`` give each process of a multi-process run its share of every epoch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers is None:
        num_workers = available_cores() if getattr(dataset, "image_keys", True) else 0
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    sampler = ResumableRandomSampler(len(dataset), seed, shuffle, rank, world_size)
    parallel = num_workers > 0
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        worker_init_fn=worker_init_fn if parallel else None,
        persistent_workers=parallel,
        prefetch_factor=prefetch_factor if parallel else None,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=batched_collate,
    )
    return ResumableDataLoader(loader, sampler)
