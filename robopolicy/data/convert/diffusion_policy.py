"""diffusion_policy zarr stores -> our dataset format, losslessly.

A diffusion_policy replay buffer has our layout already (``data/<key>`` time-major,
``meta/episode_ends``), so ``ReplayBuffer.open`` reads one as it is, inferring ``shape_meta``.
What it lacks is what our format pins down: root attributes (fps, ``shape_meta``, env spec,
provenance), stored dtypes (their PushT ``data/img`` is float32 holding the integers 0..255),
and chunking (their image chunks hold many frames; ours one frame each, for random access).
Their keys (``img``, ``state``, ``keypoint``, ``n_contacts``, ``action``) become observations and
the action; keys named ``sim_state``, ``reward`` or ``done`` become our optional step arrays.

Conversion reads episode by episode and casts each array to our stored dtype (rgb uint8, low-dim
and action float32, see ``shape_meta.STORED_DTYPES``) only where every value survives: float
images holding integers 0..255 become uint8 exactly, float64 low-dim values that float32
represents become float32. Any cast that would change a value is refused with a ``DatasetError``
naming the key and an example value, and nothing is left at the destination. Per-episode arrays
``meta/episode_<name>`` carry over; a key that a given ``shape_meta`` does not mention is refused
rather than silently dropped.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from robopolicy.data.convert.common import check_destination, exact_cast, staged_output
from robopolicy.data.errors import DatasetError
from robopolicy.data.format import EXTRA_STEP_KEYS
from robopolicy.data.reader import ReplayBuffer
from robopolicy.data.shape_meta import STORED_DTYPES, infer_shape_meta, validate_shape_meta
from robopolicy.data.writer import DatasetWriter, default_provenance

SOURCE_FORMAT = "diffusion_policy"


def diffusion_policy_to_zarr(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    fps: float,
    env_spec: dict | None = None,
    shape_meta: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert the diffusion_policy store ``src`` into our dataset at ``dst`` (``*.zip`` allowed).

    ``shape_meta`` defaults to the one inferred from the arrays (4-D with 1/3/4 channels: rgb,
    the rest low_dim); ``env_spec`` to ``{}``, as their stores record no environment.
    """
    src, dst = Path(src), Path(dst)
    check_destination(dst, overwrite)
    buffer = ReplayBuffer.open(src)
    if "action" not in buffer.data:
        raise DatasetError(src, f"missing (has {sorted(buffer.data)})", "data/action")
    shape_meta = _shape_meta(buffer, shape_meta)
    targets = _stored_dtypes(buffer, shape_meta)
    provenance = {**default_provenance(SOURCE_FORMAT), "source_path": str(src.resolve())}
    foreign_attrs = {k: v for k, v in buffer.attrs.items() if k != "shape_meta"}
    if foreign_attrs:
        provenance["source_attrs"] = foreign_attrs
    with staged_output(dst, overwrite) as staging:
        writer = DatasetWriter.create(staging, shape_meta, fps, env_spec or {}, provenance)
        for index in range(buffer.n_episodes):
            episode = buffer.get_episode(index, list(targets))
            steps = {
                key: _cast(values, key, targets, shape_meta, src, index)
                for key, values in episode.items()
            }
            meta = {name: values[index] for name, values in buffer.episode_meta.items()}
            writer.append_episode(steps, episode_meta=meta)
        writer.close()
    return dst


def _shape_meta(buffer: ReplayBuffer, given: dict | None) -> dict:
    """The given ``shape_meta`` checked against the arrays, or one inferred from them."""
    if given is None:
        observed = {k: v for k, v in buffer.data.items() if k not in EXTRA_STEP_KEYS}
        given = infer_shape_meta(observed)
    shape_meta = validate_shape_meta(given, where=buffer.path)
    for key, spec in [*shape_meta["obs"].items(), ("action", shape_meta["action"])]:
        if key not in buffer.data:
            raise DatasetError(
                buffer.path, "named in shape_meta but not in the store", f"data/{key}"
            )
        shape = list(buffer.data[key].shape[1:])
        if shape != spec["shape"]:
            raise DatasetError(
                buffer.path,
                f"per-step shape {shape}, shape_meta says {spec['shape']}",
                f"data/{key}",
            )
    dropped = set(buffer.data) - set(shape_meta["obs"]) - {"action"} - set(EXTRA_STEP_KEYS)
    if dropped:
        raise DatasetError(
            buffer.path,
            f"keys {sorted(dropped)} are not in shape_meta and would be lost; add them to it",
            "data",
        )
    return shape_meta


def _stored_dtypes(buffer: ReplayBuffer, shape_meta: dict) -> dict[str, np.dtype]:
    """For each data key, the dtype our format stores it as (the source's where allowed)."""
    targets = {}
    for key, array in buffer.data.items():
        if key in shape_meta["obs"]:
            allowed = STORED_DTYPES[shape_meta["obs"][key]["type"]]
        elif key == "action":
            allowed = STORED_DTYPES["action"]
        else:
            allowed = (EXTRA_STEP_KEYS[key],)
        targets[key] = array.dtype if array.dtype in allowed else allowed[0]
    return targets


def _cast(
    values: np.ndarray,
    key: str,
    targets: dict[str, np.dtype],
    shape_meta: dict,
    src: Path,
    episode: int,
) -> np.ndarray:
    cast, example = exact_cast(values, targets[key])
    if example is None:
        return cast
    is_image = shape_meta["obs"].get(key, {}).get("type") == "rgb"
    hint = "; rgb images must hold integers 0..255" if is_image else ""
    raise DatasetError(
        src,
        f"storing {values.dtype} as {targets[key]} would change values (e.g. {example} in "
        f"episode {episode}){hint}; refusing a lossy conversion",
        f"data/{key}",
    )
