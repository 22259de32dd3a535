"""SequenceDataset and make_dataloader: batch layout, worker determinism, exact resume."""

from __future__ import annotations

import numcodecs.blosc
import pytest
import torch
from test_sampler import write_dataset
from torch.utils.data import Dataset

from robopolicy.data.sampler import SequenceSampler
from robopolicy.data.torch_dataset import SequenceDataset, available_cores, make_dataloader


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = write_dataset(tmp_path_factory.mktemp("data") / "demo.zarr", lengths=(5, 3, 7, 6, 4))
    return SequenceDataset.from_path(path, horizon=4, n_obs_steps=2, n_action_steps=3)


def batch_ids(batch: dict) -> list[tuple[int, ...]]:
    """One identifier per sample: its actions' values (distinct per window)."""
    return [tuple(row.tolist()) for row in batch["action"][:, :, 0]]


def run(loader, n_batches: int | None = None) -> list[dict]:
    out = []
    for batch in loader:
        out.append(batch)
        if n_batches is not None and len(out) == n_batches:
            break
    return out


def assert_same_batches(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["action"], y["action"]) and torch.equal(x["is_pad"], y["is_pad"])
        for key in x["obs"]:
            assert torch.equal(x["obs"][key], y["obs"][key])


def test_batch_layout_and_dtypes(dataset):
    batch = next(iter(make_dataloader(dataset, batch_size=4, num_workers=0)))
    assert batch["obs"]["cam"].shape == (4, 2, 4, 4, 3) and batch["obs"]["cam"].dtype == torch.uint8
    assert batch["obs"]["pos"].shape == (4, 2, 2) and batch["obs"]["pos"].dtype == torch.float32
    assert batch["action"].shape == (4, 4, 2) and batch["action"].dtype == torch.float32
    assert batch["is_pad"].shape == (4, 4) and batch["is_pad"].dtype == torch.bool


def test_two_workers_give_the_same_batches_as_none(dataset):
    serial = make_dataloader(dataset, batch_size=3, seed=7, num_workers=0)
    parallel = make_dataloader(dataset, batch_size=3, seed=7, num_workers=2)
    for _ in range(2):  # two epochs: persistent workers, a new order each epoch
        assert_same_batches(run(serial), run(parallel))
    other_seed = run(make_dataloader(dataset, batch_size=3, seed=8, num_workers=0))
    assert [batch_ids(b) for b in other_seed] != [batch_ids(b) for b in run(serial)]
    epoch_ids = sorted(i for b in run(serial) for i in batch_ids(b))
    assert len(epoch_ids) == len(dataset)  # every window once per epoch


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_from_state_gives_the_identical_remaining_order(dataset, num_workers):
    def loader():
        return make_dataloader(
            dataset, batch_size=4, seed=3, num_workers=num_workers, drop_last=True
        )

    per_epoch = len(dataset) // 4  # the last partial batch is dropped
    reference = loader()
    expected = run(reference) + run(reference)  # two full epochs
    assert len(expected) == 2 * per_epoch
    original = loader()
    consumed = run(original, n_batches=2)
    state = original.state_dict()
    assert state["epoch"] == 0 and state["position"] == 8
    resumed = loader()
    resumed.load_state_dict(state)
    assert len(resumed) == per_epoch
    rest = run(resumed) + run(resumed)
    assert_same_batches(consumed + rest, expected)
    # The interrupted loader itself also carries on where its caller stopped.
    assert_same_batches(run(original), expected[2:per_epoch])
    assert original.state_dict()["epoch"] == 1


def test_an_empty_validation_set_gives_an_empty_loader(dataset):
    empty = dataset.get_validation_dataset()  # val_ratio = 0: no validation episodes
    assert len(empty) == 0 and run(make_dataloader(empty, batch_size=2, num_workers=0)) == []


def test_resume_state_from_another_dataset_is_refused(dataset):
    state = make_dataloader(dataset, batch_size=2, num_workers=0).state_dict()
    with pytest.raises(ValueError, match="n="):
        make_dataloader(ListDataset(5), batch_size=2, num_workers=0).load_state_dict(state)


class ListDataset(Dataset):
    """Reports the per-worker thread settings that worker_init_fn is meant to apply."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return {
            "threads": torch.tensor(torch.get_num_threads()),
            "blosc_threads": torch.tensor(bool(numcodecs.blosc.use_threads)),
        }


def test_default_workers_only_for_datasets_that_decode_images(dataset):
    assert make_dataloader(dataset, batch_size=2).loader.num_workers == available_cores()
    low_dim = SequenceDataset(SequenceSampler(dataset.sampler.replay_buffer, 4, 2, 3, ["pos"]))
    assert low_dim.image_keys == [] and dataset.image_keys == ["cam"]
    assert make_dataloader(low_dim, batch_size=2).loader.num_workers == 0
    buffer = dataset.sampler.replay_buffer
    decoded = SequenceDataset(SequenceSampler(buffer, 4, 2, 3, decoded_cache_bytes=2**20))
    assert decoded.image_keys == [] and make_dataloader(decoded, 2).loader.num_workers == 0


def test_workers_are_single_threaded():
    batches = run(make_dataloader(ListDataset(4), batch_size=2, num_workers=2))
    assert all(b["threads"].eq(1).all() and not b["blosc_threads"].any() for b in batches)


def test_ranks_share_each_epoch_disjointly_and_equally():
    from robopolicy.data.torch_dataset import ResumableRandomSampler

    full = ResumableRandomSampler(11, seed=3)
    shards = [ResumableRandomSampler(11, seed=3, rank=r, world_size=2) for r in range(2)]
    assert [len(s) for s in shards] == [5, 5]
    orders = [s.order(4).tolist() for s in shards]
    assert not set(orders[0]) & set(orders[1])
    assert sorted(orders[0] + orders[1]) == sorted(full.order(4).tolist()[:10])
    with pytest.raises(ValueError, match="world_size=2"):
        shards[0].load_state_dict(full.state_dict())
