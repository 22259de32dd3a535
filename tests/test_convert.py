"""Dataset converters: robomimic HDF5 <-> zarr exactly, diffusion_policy zarr -> ours losslessly."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import h5py
import numcodecs
import numpy as np
import pytest
import zarr
from data_helpers import SHAPE_META, episode_lengths, make_episode, write_dataset
from robomimic_compat import import_robomimic_file_utils

from robopolicy.data import DatasetError, DatasetWriter, ReplayBuffer
from robopolicy.data.convert import (
    diffusion_policy_to_zarr,
    robomimic_to_zarr,
    zarr_to_robomimic,
)

REPO = Path(__file__).resolve().parents[1]
DEMO_INDICES = [0, 1, 2, 10]  # demo_10 sorts after demo_2 by index, before it by name
ENV_ARGS = {"env_name": "Lift", "type": 1, "env_kwargs": {"control_freq": 20, "has_renderer": 0}}


# ------------------------------------------------------------------------- robomimic fixtures
def write_robomimic_file(path: Path) -> None:
    """A small file in robomimic's exact layout, with the quirks its real datasets have."""
    rng = np.random.default_rng(0)
    total = 0
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for index in DEMO_INDICES:
            length = 3 + index % 5
            total += length
            demo = data.create_group(f"demo_{index}")
            demo.attrs["num_samples"] = np.int64(length)
            demo.attrs["model_file"] = f"<mujoco model='demo_{index}'><worldbody/></mujoco>"
            # obs and next_obs as robomimic writes them: next_obs[t] == obs[t + 1]
            images = rng.integers(0, 256, (length + 1, 8, 8, 3), dtype=np.uint8)
            eef = rng.normal(size=(length + 1, 3))  # float64 that float32 cannot represent
            demo.create_dataset("obs/agentview_image", data=images[:-1], compression="gzip")
            demo.create_dataset("next_obs/agentview_image", data=images[1:], compression="gzip")
            demo.create_dataset("obs/robot0_eef_pos", data=eef[:-1])
            demo.create_dataset("next_obs/robot0_eef_pos", data=eef[1:])
            gripper = rng.normal(size=(length, 2)).astype(np.float32).astype(np.float64)
            demo.create_dataset("obs/robot0_gripper_qpos", data=gripper)  # float32-exact
            demo.create_dataset("next_obs/robot0_gripper_qpos", data=rng.normal(size=(length, 2)))
            demo.create_dataset("actions", data=rng.uniform(-1, 1, (length, 7)))
            demo.create_dataset("rewards", data=(np.arange(length) == length - 1).astype(float))
            demo.create_dataset("dones", data=(np.arange(length) == length - 1).astype(np.int64))
            demo.create_dataset("states", data=rng.normal(size=(length, 9)))
            demo.create_dataset("action_dict/abs_pos", data=rng.normal(size=(length, 3)))
            demo["obs/robot0_eef_pos"].attrs["frame"] = "base"
            demo.attrs["success"] = np.bool_(index != 1)
            demo.attrs["ep_meta"] = json.dumps({"lang": "lift the cube"})
        data.attrs["total"] = np.int64(total)
        data.attrs["env_args"] = json.dumps(ENV_ARGS)
        data.attrs["tags"] = np.array(["ph", "v141"], dtype=h5py.string_dtype())
        f.attrs["creator"] = np.bytes_(b"robomimic")
        f.attrs["weights"] = np.array([0.1, -0.0, np.nan])
        f.create_dataset("mask/train", data=np.array(["demo_0", "demo_1", "demo_10"], dtype="S"))
        f.create_dataset("mask/valid", data=np.array(["demo_2"], dtype="S"))


def snapshot(path: Path) -> dict:
    """Everything in an HDF5 file that must survive a round trip: values, dtypes, attrs, filters."""
    items: dict = {}

    def attrs_of(item) -> dict:
        out = {}
        for name, value in item.attrs.items():
            if isinstance(value, str) or np.asarray(value).dtype.kind == "O":
                raw = np.asarray(value).tolist()
            else:
                raw = (np.asarray(value).dtype.str, value.tobytes())
            stored_as = h5py.check_string_dtype(item.attrs.get_id(name).dtype)  # vlen/fixed str
            out[name] = (type(value).__name__, raw, repr(stored_as))
        return out

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            value = item[()]
            items[name] = (item.dtype.str, value.shape, value.tobytes(), item.compression)
        items[name + "@attrs"] = attrs_of(item)

    with h5py.File(path, "r") as f:
        items["/@attrs"] = attrs_of(f)
        f.visititems(visit)
    return items


# ------------------------------------------------------------------------- robomimic tests
@pytest.mark.parametrize("name", ["lift.zarr", "lift.zarr.zip"])
def test_robomimic_round_trip_is_identical(tmp_path, name):
    original = tmp_path / "lift.hdf5"
    write_robomimic_file(original)
    robomimic_to_zarr(original, tmp_path / name)
    zarr_to_robomimic(tmp_path / name, tmp_path / "back.hdf5")
    before, after = snapshot(original), snapshot(tmp_path / "back.hdf5")
    assert sorted(before) == sorted(after)
    for key in before:
        assert before[key] == after[key], key


def test_robomimic_import_maps_keys_order_and_metadata(tmp_path, caplog):
    original = tmp_path / "lift.hdf5"
    write_robomimic_file(original)
    with caplog.at_level(logging.WARNING):
        robomimic_to_zarr(original, tmp_path / "lift.zarr")
    buffer = ReplayBuffer.open(tmp_path / "lift.zarr")
    assert buffer.is_native and buffer.n_episodes == len(DEMO_INDICES)
    assert buffer.shape_meta == {
        "obs": {
            "agentview_image": {"shape": [8, 8, 3], "type": "rgb"},
            "robot0_eef_pos": {"shape": [3], "type": "low_dim"},
            "robot0_gripper_qpos": {"shape": [2], "type": "low_dim"},
        },
        "action": {"shape": [7]},
    }
    assert list(buffer.episode_lengths) == [3 + i % 5 for i in DEMO_INDICES]
    assert buffer.fps == 20.0
    assert buffer.env_spec["robomimic_env_args"] == ENV_ARGS
    assert buffer.data["sim_state"].dtype == np.float64 and buffer.data["done"].dtype == np.bool_
    np.testing.assert_array_equal(buffer.episode_meta["mask_valid"], [False, False, True, False])
    np.testing.assert_array_equal(buffer.episode_meta["success"], [True, False, True, True])
    with h5py.File(original) as f:
        np.testing.assert_array_equal(
            buffer.get_episode(3)["agentview_image"], f["data/demo_10/obs/agentview_image"][()]
        )
    # the float64 obs and actions are rounded for training, and the rounding is reported
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "obs/robot0_eef_pos" in warned and "actions" in warned
    assert "obs/robot0_gripper_qpos" not in warned


def test_appended_dataset_exports_as_a_new_robomimic_file(tmp_path, caplog):
    original = tmp_path / "lift.hdf5"
    write_robomimic_file(original)
    robomimic_to_zarr(original, tmp_path / "lift.zarr")
    buffer = ReplayBuffer.open(tmp_path / "lift.zarr")
    extra = buffer.get_episode(0)
    with DatasetWriter.open_for_append(tmp_path / "lift.zarr") as writer:
        meta = {"mask_train": False, "mask_valid": True, "success": True}
        writer.append_episode(extra, episode_meta=meta)
    with caplog.at_level(logging.WARNING):
        zarr_to_robomimic(tmp_path / "lift.zarr", tmp_path / "back.hdf5")
    assert "appended to after import" in caplog.text
    with h5py.File(tmp_path / "back.hdf5") as f:
        assert len(f["data"]) == len(DEMO_INDICES) + 1
        assert json.loads(f["data"].attrs["env_args"])["env_name"] == "Lift"
        assert sorted(f["mask/valid"][()]) == [b"demo_2", b"demo_4"]


def test_exported_file_reads_with_robomimic_utils(tmp_path):
    lengths = episode_lengths(3)
    with DatasetWriter.create(tmp_path / "ours.zarr", SHAPE_META, 10, {"id": "test/Env-v0"}) as w:
        for index, length in enumerate(lengths):
            meta = {"mode": index % 2, "mask_valid": index == 2}
            w.append_episode(make_episode(index, length), episode_meta=meta)
    out = tmp_path / "ours.hdf5"
    zarr_to_robomimic(tmp_path / "ours.zarr", out, next_obs=True)

    file_utils = import_robomimic_file_utils()
    import robomimic.utils.obs_utils as obs_utils
    from robomimic.utils.dataset import SequenceDataset

    obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": ["pos"], "rgb": ["cam"]}})
    env_meta = file_utils.get_env_metadata_from_dataset(str(out))
    assert env_meta["env_name"] == "test/Env-v0" and env_meta["type"] == 2
    shapes = file_utils.get_shape_metadata_from_dataset(str(out), all_obs_keys=["cam", "pos"])
    assert shapes["ac_dim"] == 3 and shapes["use_images"]
    assert list(shapes["all_shapes"]["pos"]) == [2]
    assert list(shapes["all_shapes"]["cam"]) == [3, 8, 8]  # robomimic's own CHW processing

    dataset = SequenceDataset(
        hdf5_path=str(out),
        obs_keys=("cam", "pos"),
        dataset_keys=("actions", "rewards", "dones"),
        seq_length=2,
        hdf5_cache_mode="all",
        hdf5_use_swmr=False,
    )
    buffer = ReplayBuffer.open(tmp_path / "ours.zarr")
    assert len(dataset) == buffer.n_steps
    item = dataset[0]
    np.testing.assert_allclose(item["actions"], buffer.data["action"][:2])
    np.testing.assert_allclose(item["obs"]["pos"][0], buffer.data["pos"][0])
    valid = SequenceDataset(
        hdf5_path=str(out),
        obs_keys=("pos",),
        dataset_keys=("actions",),
        hdf5_use_swmr=False,
        filter_by_attribute="valid",
    )
    assert valid.demos == ["demo_2"] and len(valid) == lengths[2]

    # and it comes back with the same arrays, env spec and fps
    robomimic_to_zarr(out, tmp_path / "again.zarr")
    again = ReplayBuffer.open(tmp_path / "again.zarr")
    assert again.env_spec == buffer.env_spec and again.fps == buffer.fps
    assert set(again.episode_meta) == {"mode", "mask_valid"}
    for name, values in buffer.episode_meta.items():
        np.testing.assert_array_equal(again.episode_meta[name], values)
    for key in buffer.data:
        np.testing.assert_array_equal(again.read_all(key), buffer.read_all(key), err_msg=key)


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    original = tmp_path / "lift.hdf5"
    write_robomimic_file(original)
    robomimic_to_zarr(original, tmp_path / "out.zarr")
    with pytest.raises(DatasetError, match="already exists"):
        robomimic_to_zarr(original, tmp_path / "out.zarr")
    robomimic_to_zarr(original, tmp_path / "out.zarr", overwrite=True)
    assert ReplayBuffer.open(tmp_path / "out.zarr").n_episodes == len(DEMO_INDICES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lift.hdf5", "out.zarr"]


def test_bad_robomimic_layout_names_the_key(tmp_path):
    path = tmp_path / "states_only.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data/demo_0/actions", data=np.zeros((3, 2)))
        f.create_dataset("data/demo_0/states", data=np.zeros((3, 4)))
    with pytest.raises(DatasetError, match="data/demo_0: has no obs/"):
        robomimic_to_zarr(path, tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()


# ------------------------------------------------------------------------- diffusion_policy
def write_diffusion_policy_store(path: Path, lengths=(5, 7, 4)) -> dict[str, np.ndarray]:
    """A store in diffusion_policy's layout, written with zarr directly (no robopolicy attrs)."""
    rng = np.random.default_rng(1)
    n = sum(lengths)
    arrays = {
        "img": rng.integers(0, 256, (n, 16, 16, 3)).astype(np.float32),
        "state": rng.normal(size=(n, 5)).astype(np.float32),
        "keypoint": rng.normal(size=(n, 9, 2)).astype(np.float32),
        "n_contacts": rng.integers(0, 3, (n, 1)).astype(np.float32),
        "action": rng.normal(size=(n, 2)).astype(np.float32),
    }
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    compressor = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE)
    for key, values in arrays.items():
        chunks = (8, *values.shape[1:])  # image chunks hold many frames, across episodes
        array = root.create_array(
            f"data/{key}",
            shape=values.shape,
            chunks=chunks,
            dtype=values.dtype,
            compressors=compressor,
        )
        array[...] = values
    ends = root.create_array("meta/episode_ends", shape=(len(lengths),), dtype=np.int64)
    ends[...] = np.cumsum(lengths)
    return arrays


def test_diffusion_policy_store_opens_directly(tmp_path):
    arrays = write_diffusion_policy_store(tmp_path / "pusht.zarr")
    buffer = ReplayBuffer.open(tmp_path / "pusht.zarr")
    assert not buffer.is_native and buffer.n_episodes == 3
    assert buffer.shape_meta["obs"]["img"] == {"shape": [16, 16, 3], "type": "rgb"}
    assert buffer.shape_meta["obs"]["keypoint"] == {"shape": [9, 2], "type": "low_dim"}
    np.testing.assert_array_equal(buffer.get_episode(1)["img"], arrays["img"][5:12])


@pytest.mark.parametrize("name", ["pusht_ours.zarr", "pusht_ours.zarr.zip"])
def test_diffusion_policy_conversion_is_lossless(tmp_path, name):
    arrays = write_diffusion_policy_store(tmp_path / "pusht.zarr")
    env_spec = {"id": "pusht/PushT-v0"}
    diffusion_policy_to_zarr(tmp_path / "pusht.zarr", tmp_path / name, fps=10, env_spec=env_spec)
    buffer = ReplayBuffer.open(tmp_path / name)
    assert buffer.is_native and buffer.fps == 10.0 and buffer.env_spec == env_spec
    assert buffer.attrs["provenance"]["source"] == "diffusion_policy"
    assert buffer.data["img"].dtype == np.uint8 and buffer.data["img"].chunks[0] == 1
    assert list(buffer.episode_ends) == [5, 12, 16]
    for key, values in arrays.items():
        np.testing.assert_array_equal(buffer.read_all(key), values, err_msg=key)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("img", 0.5, "rgb images must hold integers 0..255"),
        ("img", 300.0, "300.0"),
        ("state", 0.1, "float64 as float32"),
    ],
)
def test_lossy_diffusion_policy_conversion_is_refused(tmp_path, key, value, problem):
    store = tmp_path / "pusht.zarr"
    arrays = write_diffusion_policy_store(store)
    root = zarr.open_group(str(store), mode="r+", zarr_format=2)
    if key == "state":  # a float64 array that float32 cannot hold exactly
        del root["data/state"]
        root.create_array("data/state", shape=arrays["state"].shape, dtype=np.float64)[...] = (
            arrays["state"].astype(np.float64) + value
        )
    else:
        root[f"data/{key}"][3, 0, 0, 0] = value
    with pytest.raises(DatasetError, match=f"data/{key}: .*{problem}"):
        diffusion_policy_to_zarr(store, tmp_path / "out.zarr", fps=10)
    assert not (tmp_path / "out.zarr").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["pusht.zarr"]


def test_diffusion_policy_shape_meta_must_cover_every_key(tmp_path):
    write_diffusion_policy_store(tmp_path / "pusht.zarr")
    shape_meta = {"obs": {"img": {"shape": [16, 16, 3], "type": "rgb"}}, "action": {"shape": [2]}}
    with pytest.raises(DatasetError, match=r"\['keypoint', 'n_contacts', 'state'\] are not in"):
        diffusion_policy_to_zarr(tmp_path / "pusht.zarr", tmp_path / "o.zarr", 10, None, shape_meta)
    shape_meta["obs"]["img"]["shape"] = [16, 16, 4]
    with pytest.raises(DatasetError, match="data/img: per-step shape"):
        diffusion_policy_to_zarr(tmp_path / "pusht.zarr", tmp_path / "o.zarr", 10, None, shape_meta)


# ------------------------------------------------------------------------- command line
def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "datasets/convert.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_converts_every_direction(tmp_path):
    write_robomimic_file(tmp_path / "lift.hdf5")
    write_diffusion_policy_store(tmp_path / "pusht.zarr")
    steps = [
        ("robomimic-to-zarr", tmp_path / "lift.hdf5", tmp_path / "lift.zarr.zip"),
        ("zarr-to-robomimic", tmp_path / "lift.zarr.zip", tmp_path / "back.hdf5"),
        (
            "diffusion-policy-to-zarr",
            tmp_path / "pusht.zarr",
            tmp_path / "ours.zarr",
            "fps=10",
            "env_spec={id: pusht, kwargs: {}}",
        ),
    ]
    for command, src, dst, *more in steps:
        result = run_cli(command, f"src={src}", f"dst={dst}", *more)
        assert result.returncode == 0, result.stderr
        assert dst.exists()
    assert snapshot(tmp_path / "lift.hdf5") == snapshot(tmp_path / "back.hdf5")
    assert ReplayBuffer.open(tmp_path / "ours.zarr").env_spec == {"id": "pusht", "kwargs": {}}


@pytest.mark.parametrize("case", ["missing", "not_zarr", "not_hdf5", "exists"])
def test_cli_errors_are_one_line_with_status_2(tmp_path, case):
    (tmp_path / "plain_dir").mkdir()
    (tmp_path / "text.hdf5").write_text("not hdf5")
    write_dataset(tmp_path / "ours.zarr", n_episodes=1)
    args = {
        "missing": ("robomimic-to-zarr", tmp_path / "nope.hdf5", tmp_path / "o.zarr"),
        "not_zarr": ("zarr-to-robomimic", tmp_path / "plain_dir", tmp_path / "o.hdf5"),
        "not_hdf5": ("robomimic-to-zarr", tmp_path / "text.hdf5", tmp_path / "o.zarr"),
        "exists": ("zarr-to-robomimic", tmp_path / "ours.zarr", tmp_path / "text.hdf5"),
    }[case]
    command, src, dst = args
    result = run_cli(command, f"src={src}", f"dst={dst}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convert.py: error: dataset "), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["robomimic-to-zarr", "src=a", "dst=b", "next_obs=true"], "next_obs=true: robomimic-"),
        (["diffusion-policy-to-zarr", "src=a", "dst=b"], "fps=null: expected the demos' control"),
        (["zarr-to-hdf5", "src=a", "dst=b"], "command=zarr-to-hdf5: expected one of robomimic-"),
        (["robomimic-to-zarr", "src=a"], "dst=???: expected a value (set dst=...)"),
        (["robomimic-to-zarr", "a", "b"], "a: expected KEY=VALUE arguments"),
    ],
)
def test_cli_bad_arguments_name_the_key(args, line):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"convert.py: error: {line}"), result.stderr


def test_json_arguments_are_mappings_json_text_or_files(tmp_path):
    from robopolicy.config import ConfigError
    from robopolicy_cli.convert import json_object

    (tmp_path / "spec.json").write_text('{"id": "pusht"}')
    assert json_object("env_spec", {"id": "a"}) == {"id": "a"}
    assert json_object("env_spec", '{"id": "b"}') == {"id": "b"}
    assert json_object("env_spec", str(tmp_path / "spec.json")) == {"id": "pusht"}
    assert json_object("env_spec", None) is None
    with pytest.raises(ConfigError, match="env_spec=\\[1\\]: expected a JSON object"):
        json_object("env_spec", "[1]")
    with pytest.raises(ConfigError, match="shape_meta=nope: not a JSON object or .json file"):
        json_object("shape_meta", "nope")
