"""SequenceSampler: exact edge padding, episode boundaries, splits, and the fast image path."""

from __future__ import annotations

import numcodecs
import numpy as np
import pytest
import zarr

from robopolicy.data import DatasetError, DatasetWriter, ReplayBuffer
from robopolicy.data.frame_reader import FrameReader
from robopolicy.data.sampler import SequenceSampler, split_episodes

SHAPE_META = {
    "obs": {"cam": {"shape": [4, 4, 3], "type": "rgb"}, "pos": {"shape": [2], "type": "low_dim"}},
    "action": {"shape": [2]},
}


def value(episode: int, step: int) -> int:
    """Distinct per (episode, step); also the camera's pixel value (steps stay below 10)."""
    return 10 * episode + step


def write_dataset(path, lengths=(5, 3, 7)):
    """Episode e, step t: pos = [v, v + 0.5], action = [v, -v], cam filled with v (v = 10e + t).

    Episode 0 step 0 has v = 0: an all-zero frame, which zarr does not write as a chunk.
    """
    with DatasetWriter.create(path, SHAPE_META, fps=10) as writer:
        for episode, length in enumerate(lengths):
            v = np.array([value(episode, t) for t in range(length)], dtype=np.float32)
            writer.append_episode(
                {
                    "pos": np.stack([v, v + 0.5], axis=1),
                    "action": np.stack([v, -v], axis=1),
                    "cam": np.broadcast_to(
                        v.astype(np.uint8)[:, None, None, None], (length, 4, 4, 3)
                    ),
                }
            )
    return path


@pytest.fixture
def dataset(tmp_path):
    return write_dataset(tmp_path / "demo.zarr")


def make(path, in_memory=False, **kwargs):
    params = {"horizon": 4, "n_obs_steps": 2, "n_action_steps": 3, **kwargs}
    return SequenceSampler(ReplayBuffer.open(path, in_memory=in_memory), **params)


def test_padding_values_and_mask_exact_at_both_edges(dataset):
    sampler = make(dataset)  # pad_before = 1, pad_after = 2
    # Episode 0 (5 steps): window starts -1..3, so 5 windows.
    first, last = sampler[0], sampler[4]
    assert sampler.window(0) == (0, -1) and sampler.window(4) == (0, 3)
    np.testing.assert_array_equal(first["action"][:, 0], [0, 0, 1, 2])
    np.testing.assert_array_equal(first["action"][:, 1], [0, 0, -1, -2])
    np.testing.assert_array_equal(first["is_pad"], [True, False, False, False])
    np.testing.assert_array_equal(first["obs"]["pos"], [[0, 0.5], [0, 0.5]])
    np.testing.assert_array_equal(first["obs"]["cam"][:, 0, 0, 0], [0, 0])
    np.testing.assert_array_equal(last["action"][:, 0], [3, 4, 4, 4])
    np.testing.assert_array_equal(last["is_pad"], [False, False, True, True])
    np.testing.assert_array_equal(last["obs"]["pos"][:, 0], [3, 4])
    # Episode 1 (3 steps, shorter than the horizon): windows start -1, 0, 1.
    expected = [
        ([10, 10, 11, 12], [True, False, False, False]),
        ([10, 11, 12, 12], [False, False, False, True]),
        ([11, 12, 12, 12], [False, False, True, True]),
    ]
    for index, (actions, is_pad) in zip(range(5, 8), expected, strict=True):
        sample = sampler[index]
        np.testing.assert_array_equal(sample["action"][:, 0], actions)
        np.testing.assert_array_equal(sample["is_pad"], is_pad)
        np.testing.assert_array_equal(sample["obs"]["cam"][:, 2, 1, 0], actions[:2])
    assert sampler.window(5) == (1, -1)


@pytest.mark.parametrize("end_padding, pad_after", [("full", 3), ("action_steps", 1)])
def test_every_window_stays_in_one_episode_and_matches_a_brute_force_gather(
    dataset, end_padding, pad_after
):
    lengths = [5, 3, 7]
    sampler = make(dataset, horizon=6, n_obs_steps=3, n_action_steps=2, end_padding=end_padding)
    # L - horizon + pad_before + pad_after + 1 windows per episode, when positive.
    assert len(sampler) == sum(max(0, n - 6 + 2 + pad_after + 1) for n in lengths)
    seen = set()
    for index in range(len(sampler)):
        episode, offset = sampler.window(index)
        rows = np.clip(offset + np.arange(6), 0, lengths[episode] - 1)
        sample = sampler[index]
        np.testing.assert_array_equal(sample["action"][:, 0], [value(episode, t) for t in rows])
        np.testing.assert_array_equal(sample["is_pad"], rows != offset + np.arange(6))
        assert set((sample["action"][:, 0] // 10).astype(int)) == {episode}
        assert set(sample["obs"]["cam"].reshape(3, -1)[:, 0] // 10) == {episode}
        assert -2 <= offset <= lengths[episode] - 6 + pad_after
        seen.add((episode, offset))
    assert len(seen) == len(sampler)


def test_a_batch_is_its_samples_stacked(dataset):
    """get_batch (one gather per array; what the training loader calls) equals the samples one
    by one, padded windows at both ends included, in any order and with repeats."""
    sampler = make(dataset, horizon=6, n_obs_steps=3, n_action_steps=2)
    indices = np.random.default_rng(0).permutation(np.arange(len(sampler)).repeat(2))
    batch = sampler.get_batch(indices)
    singles = [sampler[int(index)] for index in indices]
    np.testing.assert_array_equal(batch["action"], np.stack([s["action"] for s in singles]))
    np.testing.assert_array_equal(batch["is_pad"], np.stack([s["is_pad"] for s in singles]))
    for key in ("pos", "cam"):
        np.testing.assert_array_equal(
            batch["obs"][key], np.stack([s["obs"][key] for s in singles]), err_msg=key
        )
    assert batch["action"].dtype == np.float32 and batch["obs"]["cam"].dtype == np.uint8
    with pytest.raises(IndexError, match="out of range"):
        sampler.get_batch([0, len(sampler)])


def test_observations_limited_to_n_obs_steps(dataset):
    sampler = make(dataset, horizon=7, n_obs_steps=3, n_action_steps=4, obs_keys=["cam"])
    sample = sampler[0]
    assert list(sample["obs"]) == ["cam"]
    assert sample["obs"]["cam"].shape == (3, 4, 4, 3) and sample["obs"]["cam"].dtype == np.uint8
    assert sample["action"].shape == (7, 2) and sample["action"].dtype == np.float32
    assert sample["is_pad"].shape == (7,) and sample["is_pad"].dtype == bool


def test_split_deterministic_per_seed_and_capped():
    a = split_episodes(50, val_ratio=0.2, seed=3)
    b = split_episodes(50, val_ratio=0.2, seed=3)
    c = split_episodes(50, val_ratio=0.2, seed=4)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.val, b.val)
    assert not np.array_equal(a.val, c.val)
    assert len(a.val) == 10 and len(a.train) == 40
    assert set(a.train).isdisjoint(a.val) and set(a.train) | set(a.val) == set(range(50))
    capped = split_episodes(50, val_ratio=0.2, seed=3, max_train_episodes=7)
    smaller = split_episodes(50, val_ratio=0.2, seed=3, max_train_episodes=3)
    assert len(capped.train) == 7 and set(capped.train) <= set(a.train)
    assert set(smaller.train) <= set(capped.train)  # nested caps: scaling runs add data
    np.testing.assert_array_equal(capped.val, a.val)  # the cap never changes validation
    tiny = split_episodes(2, val_ratio=0.9, seed=0)
    assert len(tiny.train) == 1 and len(tiny.val) == 1
    assert len(split_episodes(1, val_ratio=0.5).train) == 1


def test_validation_sampler_covers_only_held_out_episodes(tmp_path):
    path = write_dataset(tmp_path / "d.zarr", lengths=(4, 5, 6, 7, 4, 5))
    train = make(path, val_ratio=0.34, seed=1)
    val = train.get_validation_sampler()
    assert len(val.episodes) == 2 and set(train.episodes).isdisjoint(val.episodes)
    assert {val.window(i)[0] for i in range(len(val))} == set(val.episodes)
    assert {train.window(i)[0] for i in range(len(train))} == set(train.episodes)
    assert len(make(path).get_validation_sampler()) == 0
    capped = make(path, val_ratio=0.34, seed=1, max_train_episodes=2)
    assert len(capped.episodes) == 2 and set(capped.episodes) <= set(train.episodes)


def test_in_memory_and_on_disk_and_plain_zarr_give_identical_samples(dataset):
    samplers = [
        make(dataset),
        make(dataset, in_memory=True),
        make(dataset, fast_images=False),
        make(dataset, in_memory=True, fast_images=False),
    ]
    assert [s._images["cam"].is_fast for s in samplers] == [True, True, False, False]
    for index in range(len(samplers[0])):
        reference = samplers[0][index]
        for other in samplers[1:]:
            sample = other[index]
            np.testing.assert_array_equal(sample["action"], reference["action"])
            np.testing.assert_array_equal(sample["is_pad"], reference["is_pad"])
            for key in reference["obs"]:
                np.testing.assert_array_equal(sample["obs"][key], reference["obs"][key])


def test_decoded_cache_gives_identical_batches_below_its_bound(dataset):
    frames = 15 * 4 * 4 * 3  # 15 steps of one 4x4x3 camera, in bytes
    decoded, above = make(dataset, decoded_cache_bytes=frames), make(dataset, decoded_cache_bytes=1)
    assert decoded.image_bytes == frames and decoded.images_decoded
    assert decoded.keys_decoded_per_sample == [] and above.keys_decoded_per_sample == ["cam"]
    assert not above.images_decoded and not make(dataset).images_decoded  # 0: never
    indices = np.arange(len(decoded))[::-1]
    reference, batch = above.get_batch(indices), decoded.get_batch(indices)
    np.testing.assert_array_equal(batch["obs"]["cam"], reference["obs"]["cam"])
    np.testing.assert_array_equal(batch["obs"]["pos"], reference["obs"]["pos"])
    np.testing.assert_array_equal(batch["action"], reference["action"])
    assert list(batch["obs"]) == list(reference["obs"])
    val = make(dataset, val_ratio=0.34, decoded_cache_bytes=frames).get_validation_sampler()
    assert val.images_decoded and val[0]["obs"]["cam"].shape == (2, 4, 4, 3)


@pytest.mark.parametrize("in_memory", [False, True])
def test_fast_frame_path_equals_zarr_read(tmp_path, in_memory):
    meta = {"obs": {"rgb": {"shape": [12, 10, 3], "type": "rgb"}}, "action": {"shape": [1]}}
    frames = np.random.default_rng(0).integers(0, 256, (9, 12, 10, 3), dtype=np.uint8)
    frames[4] = 0  # an all-zero frame, its chunk file removed below: read as the fill value
    frames[5, :6] = 0  # a mostly zero, well compressible frame
    with DatasetWriter.create(tmp_path / "img.zarr", meta, fps=10) as writer:
        writer.append_episode({"rgb": frames, "action": np.zeros((9, 1), np.float32)})
    (tmp_path / "img.zarr/data/rgb/4.0.0.0").unlink()  # the writer stores every chunk; zarr
    #   skips one equal to the fill value, so other writers' stores may lack it
    array = ReplayBuffer.open(tmp_path / "img.zarr", in_memory=in_memory).data["rgb"]
    assert (tmp_path / "img.zarr/data/rgb/3.0.0.0").exists()
    reader = FrameReader(array)
    assert reader.is_fast
    for start, stop in [(0, 9), (3, 6), (4, 5), (8, 9)]:
        np.testing.assert_array_equal(reader.read(start, stop), array[start:stop])
        np.testing.assert_array_equal(reader.read(start, stop), frames[start:stop])
    if not in_memory:  # a chunk file larger than the read size hint is read to its end
        reader._raw_chunk.size_hint = 100
        np.testing.assert_array_equal(reader.read(0, 9), frames)


@pytest.mark.parametrize("compressor", [numcodecs.Zstd(level=1), None])
def test_fast_frame_path_with_other_codecs(tmp_path, compressor):
    frames = np.random.default_rng(3).normal(size=(5, 6, 7, 1)).astype(np.float32)
    group = zarr.open_group(tmp_path / "other.zarr", mode="w", zarr_format=2)
    array = group.create_array(
        "depth", shape=frames.shape, chunks=(1, 6, 7, 1), dtype=np.float32, compressors=compressor
    )
    array[:] = frames
    reader = FrameReader(array)
    assert reader.is_fast
    np.testing.assert_array_equal(reader.read(1, 5), frames[1:5])


def test_a_flipped_bit_in_a_frame_fails_its_checksum_naming_the_frame(tmp_path):
    meta = {"obs": {"rgb": {"shape": [12, 10, 3], "type": "rgb"}}, "action": {"shape": [1]}}
    frames = np.random.default_rng(2).integers(0, 256, (6, 12, 10, 3), dtype=np.uint8)
    with DatasetWriter.create(tmp_path / "img.zarr", meta, fps=10) as writer:
        writer.append_episode({"rgb": frames, "action": np.zeros((6, 1), np.float32)})
    chunk = tmp_path / "img.zarr/data/rgb/3.0.0.0"
    damaged = bytearray(chunk.read_bytes())
    damaged[len(damaged) // 2] ^= 0x10  # inside the compressed payload, past blosc's header
    chunk.write_bytes(bytes(damaged))
    reader = FrameReader(ReplayBuffer.open(tmp_path / "img.zarr").data["rgb"])
    assert reader.is_fast
    np.testing.assert_array_equal(reader.read(0, 3), frames[:3])  # the others read as written
    with pytest.raises(DatasetError, match=r"data/rgb: frame 3 is damaged .*crc32"):
        reader.read(2, 5)


def test_multi_frame_chunks_fall_back_to_zarr(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (10, 6, 6, 3), dtype=np.uint8)
    group = zarr.open_group(tmp_path / "dp.zarr", mode="w", zarr_format=2)
    array = group.create_array("img", shape=frames.shape, chunks=(4, 6, 6, 3), dtype=np.uint8)
    array[:] = frames
    reader = FrameReader(array)
    assert not reader.is_fast
    np.testing.assert_array_equal(reader.read(3, 9), frames[3:9])


def test_bad_parameters_raise_one_clear_error(dataset):
    with pytest.raises(ValueError, match="horizon"):
        make(dataset, horizon=3, n_obs_steps=2, n_action_steps=3)
    with pytest.raises(ValueError, match="n_obs_steps"):
        make(dataset, n_obs_steps=0)
    with pytest.raises(ValueError, match="val_ratio"):
        make(dataset, val_ratio=1.0)
    with pytest.raises(ValueError, match="max_train_episodes"):
        make(dataset, max_train_episodes=0)
    with pytest.raises(DatasetError, match="nope"):
        make(dataset, obs_keys=["pos", "nope"])
    with pytest.raises(DatasetError, match="act"):
        make(dataset, action_key="act")
    with pytest.raises(DatasetError, match="horizon"):
        make(dataset, horizon=20, end_padding="action_steps")  # no episode long enough
    with pytest.raises(IndexError):
        make(dataset)[10_000]
