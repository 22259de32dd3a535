"""The dataset writer and reader: round trips, appends, validation errors on corrupted stores."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr
from data_helpers import SHAPE_META, make_episode, write_dataset

from robopolicy.data import DatasetError, DatasetWriter, ReplayBuffer


@pytest.mark.parametrize("name", ["demo.zarr", "demo.zarr.zip"])
@pytest.mark.parametrize("in_memory", [False, True])
def test_round_trip_gives_identical_arrays(tmp_path, name, in_memory):
    path = tmp_path / name
    episodes = write_dataset(path, n_episodes=4)
    buffer = ReplayBuffer.open(path, in_memory=in_memory)
    assert buffer.n_episodes == 4
    assert buffer.n_steps == sum(len(e["action"]) for e in episodes)
    for index, episode in enumerate(episodes):
        read = buffer.get_episode(index)
        assert set(read) == set(episode)
        for key, values in episode.items():
            assert read[key].dtype == (np.float32 if key == "pos" else values.dtype)
            np.testing.assert_array_equal(read[key], values, err_msg=key)
    np.testing.assert_array_equal(buffer.episode_meta["mode"], [0, 1, 0, 1])
    assert buffer.fps == 10.0
    assert buffer.env_spec == {"id": "test/Env-v0"}
    assert buffer.shape_meta == SHAPE_META
    assert buffer.attrs["provenance"]["source"] == "DatasetWriter"


def test_storage_layout_matches_the_spec(tmp_path):
    path = tmp_path / "demo.zarr"
    write_dataset(path, n_episodes=2)
    root = zarr.open_group(str(path), mode="r")
    assert root["data/cam"].chunks == (1, 8, 8, 3), "one image frame per chunk"
    assert root["data/cam"].dtype == np.uint8
    assert root["data/pos"].dtype == np.float32
    assert root["data/sim_state"].dtype == np.float64
    assert root["meta/episode_ends"].dtype == np.int64
    assert root["data/cam"].metadata.zarr_format == 2, "diffusion_policy-compatible zarr v2"
    assert (path / ".zgroup").is_file()


@pytest.mark.parametrize("name", ["demo.zarr", "demo.zarr.zip"])
def test_append_to_existing_dataset(tmp_path, name):
    path = tmp_path / name
    episodes = write_dataset(path, n_episodes=2)
    extra = make_episode(99, 6)
    with DatasetWriter.open_for_append(path) as writer:
        assert writer.append_episode(extra, episode_meta={"mode": 1, "seed": 99}) == 2
    buffer = ReplayBuffer.open(path)
    assert buffer.n_episodes == 3
    np.testing.assert_array_equal(buffer.get_episode(2)["cam"], extra["cam"])
    np.testing.assert_array_equal(buffer.get_episode(0)["action"], episodes[0]["action"])
    assert not (tmp_path / f"{name}.staging").exists()


def test_create_refuses_to_overwrite(tmp_path):
    path = tmp_path / "demo.zarr"
    write_dataset(path, n_episodes=1)
    with pytest.raises(DatasetError, match="already exists"):
        DatasetWriter.create(path, SHAPE_META, fps=10)
    assert ReplayBuffer.open(path).n_episodes == 1, "the refused create must not touch the data"


@pytest.mark.parametrize(
    ("arguments", "key"),
    [
        ({"fps": 0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"fps": "10"}, "fps"),
        ({"fps": 10, "env_spec": "robopolicy/PushCube-v0"}, "env_spec"),
        ({"fps": 10, "env_spec": {"id": 3}}, "env_spec.id"),
        ({"fps": 10, "env_spec": {"id": "x", "kwargs": []}}, "env_spec.kwargs"),
    ],
)
def test_create_checks_its_arguments_before_overwriting_anything(tmp_path, arguments, key):
    path = tmp_path / "demo.zarr"
    write_dataset(path, n_episodes=1)
    with pytest.raises(DatasetError, match=f"demo.zarr: {key}: "):
        DatasetWriter.create(path, SHAPE_META, overwrite=True, **arguments)
    assert ReplayBuffer.open(path).n_episodes == 1, "a refused create must not touch the data"
    with DatasetWriter.create(path, SHAPE_META, fps=np.int64(10), overwrite=True) as writer:
        assert writer.n_episodes == 0  # numpy numbers are numbers


def test_bad_episodes_are_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "demo.zarr"
    write_dataset(path, n_episodes=1)
    with DatasetWriter.open_for_append(path) as writer:
        good = make_episode(5, 4)
        cases = {
            "lacks keys": {k: v for k, v in good.items() if k != "pos"},
            "same length": {**good, "action": good["action"][:2]},
            "NaN": {**good, "pos": np.full((4, 2), np.nan, np.float32)},
            "uint8": {**good, "cam": good["cam"].astype(np.float32)},
            "expected shape": {**good, "action": good["action"][:, :2]},
            "unknown keys": {**good, "extra": good["pos"]},
        }
        for message, steps in cases.items():
            with pytest.raises(DatasetError, match=message):
                writer.append_episode(steps, episode_meta={"mode": 0, "seed": 5})
        with pytest.raises(DatasetError, match="lacks"):
            writer.append_episode(good)  # episode_meta fields must stay the same
    buffer = ReplayBuffer.open(path)
    assert buffer.n_episodes == 1 and buffer.data["pos"].shape[0] == buffer.n_steps


# ------------------------------------------------------------------------------ corruption
def _corrupt(path, edit):
    root = zarr.open_group(str(path), mode="r+")
    edit(root)


def test_truncated_episode_ends(tmp_path):
    path = tmp_path / "demo.zarr"
    write_dataset(path, n_episodes=3)
    _corrupt(path, lambda root: root["meta/episode_ends"].resize((2,)))
    with pytest.raises(DatasetError) as error:
        ReplayBuffer.open(path)
    message = str(error.value)
    assert str(path) in message and "data/" in message and "truncated episode_ends" in message


def test_length_mismatch_names_the_array(tmp_path):
    path = tmp_path / "demo.zarr"
    write_dataset(path, n_episodes=3)
    _corrupt(path, lambda root: root["data/action"].resize((5, 3)))
    with pytest.raises(
        DatasetError, match=r"data/action: has 5 rows but meta/episode_ends ends at"
    ):
        ReplayBuffer.open(path)


def test_non_monotone_episode_ends(tmp_path):
    path = tmp_path / "demo.zarr"
    write_dataset(path, n_episodes=3)

    def swap(root):
        ends = root["meta/episode_ends"][:]
        root["meta/episode_ends"][:] = ends[[1, 0, 2]]

    _corrupt(path, swap)
    with pytest.raises(DatasetError, match=r"meta/episode_ends: must be strictly increasing"):
        ReplayBuffer.open(path)


def test_missing_key(tmp_path):
    path = tmp_path / "demo.zarr"
    write_dataset(path, n_episodes=2)
    shutil.rmtree(path / "data" / "pos")
    with pytest.raises(DatasetError, match=r"data/pos: declared in shape_meta but missing"):
        ReplayBuffer.open(path)


def test_wrong_dtype(tmp_path):
    path = tmp_path / "demo.zarr"
    write_dataset(path, n_episodes=2)

    def to_float64(root):
        values = root["data/pos"][:].astype(np.float64)
        del root["data/pos"]
        root["data"].create_array("pos", shape=values.shape, dtype=np.float64)[:] = values

    _corrupt(path, to_float64)
    with pytest.raises(DatasetError, match=r"data/pos: dtype float64, expected float32"):
        ReplayBuffer.open(path)


def test_shape_meta_disagreeing_with_arrays(tmp_path):
    path = tmp_path / "demo.zarr"
    write_dataset(path, n_episodes=2)

    def widen(root):
        meta = dict(root.attrs["shape_meta"])
        meta["obs"]["pos"] = {"shape": [4], "type": "low_dim"}
        root.attrs["shape_meta"] = meta

    _corrupt(path, widen)
    with pytest.raises(DatasetError, match=r"data/pos: per-step shape \[2\] disagrees"):
        ReplayBuffer.open(path)


def test_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "demo.zarr"
    write_dataset(path, n_episodes=1)
    _corrupt(path, lambda root: root.attrs.update({"format_version": 99}))
    with pytest.raises(DatasetError, match="format_version 99 is not supported"):
        ReplayBuffer.open(path)


def test_not_a_zarr_at_all(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        ReplayBuffer.open(tmp_path / "absent.zarr")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match=r"plain: not a zarr group"):
        ReplayBuffer.open(plain)
    text = tmp_path / "file.zarr.zip"
    text.write_text("not a zip")
    with pytest.raises(DatasetError, match="not a zarr group"):
        ReplayBuffer.open(text, in_memory=True)


def test_missing_episode_ends(tmp_path):
    path = tmp_path / "demo.zarr"
    write_dataset(path, n_episodes=1)
    shutil.rmtree(path / "meta" / "episode_ends")
    with pytest.raises(DatasetError, match="meta/episode_ends: missing array"):
        ReplayBuffer.open(path)


def test_appending_to_a_corrupted_store_is_refused(tmp_path):
    path = tmp_path / "demo.zarr"
    write_dataset(path, n_episodes=2)
    _corrupt(path, lambda root: root["data/action"].resize((3, 3)))
    with pytest.raises(DatasetError, match="data/action"):
        DatasetWriter.open_for_append(path)


def test_unknown_codec_is_named(tmp_path):
    import json

    path = tmp_path / "demo.zarr"
    write_dataset(path, n_episodes=1)
    meta_file = path / "data" / "cam" / ".zarray"
    meta = json.loads(meta_file.read_text())
    meta["compressor"] = {"id": "imagecodecs_jpegxl", "level": 90}
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="codec that is not installed"):
        ReplayBuffer.open(path)


def test_a_group_of_episodes_is_written_as_one_append_equal_to_one_at_a_time(tmp_path):
    meta = {"obs": {"pos": {"shape": [2], "type": "low_dim"}}, "action": {"shape": [1]}}
    episodes = [
        (
            {"pos": np.full((n, 2), n, np.float32), "action": np.full((n, 1), -n, np.float32)},
            {"seed": n},
        )
        for n in (1, 4, 2)
    ]
    with DatasetWriter.create(tmp_path / "one.zarr", meta, fps=10) as writer:
        for steps, episode_meta in episodes:
            writer.append_episode(steps, episode_meta)
    with DatasetWriter.create(tmp_path / "group.zarr", meta, fps=10) as writer:
        assert writer.append_episodes(episodes[:2]) == range(0, 2)
        assert writer.append_episodes([]) == range(2, 2)
        assert writer.append_episodes(episodes[2:]) == range(2, 3)
    one, group = (
        ReplayBuffer.open(tmp_path / "one.zarr"),
        ReplayBuffer.open(tmp_path / "group.zarr"),
    )
    np.testing.assert_array_equal(group.episode_ends, [1, 5, 7])
    np.testing.assert_array_equal(group.episode_ends, one.episode_ends)
    for key in ("pos", "action"):
        np.testing.assert_array_equal(group.read_all(key), one.read_all(key))
    np.testing.assert_array_equal(group.episode_meta["seed"], [1, 4, 2])
