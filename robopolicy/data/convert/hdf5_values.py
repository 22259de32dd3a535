"""HDF5 attribute values (and small arrays) as JSON, so that they round-trip exactly.

robomimic keeps metadata in HDF5 attributes: strings (``model_file``, ``env_args``), numpy
scalars (``num_samples``, ``total``), now and then arrays. Our dataset keeps such things in zarr
attributes, which are JSON. A plain ``json.dumps`` would lose the dtype (``int64`` vs ``int32``),
the difference between a numpy scalar and a one-element array, and float bits (NaN, ``-0.0``,
the last digit). So every value is stored tagged:

- ``{"str": s}``: a Python ``str`` (h5py's variable-length UTF-8 string);
- ``{"bytes": b64}``: Python ``bytes``;
- ``{"dtype": "<i8", "shape": [...], "scalar": bool, "b64": ...}``: any fixed-size numpy value,
  numbers, booleans and fixed-length byte strings (``|S8``, as in robomimic's ``mask/`` arrays)
  alike, stored as its raw bytes;
- ``{"strs": [...], "shape": [...]}``: an array of variable-length strings.

``decode_value(encode_value(v))`` gives back a value that h5py writes as the same HDF5 type.
"""

from __future__ import annotations

import base64
from typing import Any

import h5py
import numpy as np


def encode_value(value: Any) -> dict:
    """Tag ``value`` (as h5py returns it from ``attrs`` or ``dataset[()]``) for JSON."""
    if isinstance(value, str):
        return {"str": value}
    if isinstance(value, bytes) and not isinstance(value, np.bytes_):  # np.bytes_: fixed-length
        return {"bytes": base64.b64encode(value).decode("ascii")}
    array = np.asarray(value)
    if array.dtype.kind == "O":
        items = [item.decode("utf-8") if isinstance(item, bytes) else item for item in array.flat]
        if not all(isinstance(item, str) for item in items):
            raise TypeError(f"unsupported HDF5 value of object dtype: {value!r:.80}")
        return {"strs": items, "shape": list(array.shape)}
    if array.dtype.kind not in "biufcS":
        raise TypeError(f"unsupported HDF5 value of dtype {array.dtype}: {value!r:.80}")
    return {
        "dtype": array.dtype.str,
        "shape": list(array.shape),
        "scalar": isinstance(value, np.generic),
        "b64": base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii"),
    }


def decode_value(tagged: dict) -> Any:
    """The value ``encode_value`` tagged, ready to assign to an h5py attribute or dataset."""
    if "str" in tagged:
        return tagged["str"]
    if "bytes" in tagged:
        return base64.b64decode(tagged["bytes"])
    if "strs" in tagged:
        strings = np.array(tagged["strs"], dtype=h5py.string_dtype("utf-8"))
        return strings.reshape(tagged["shape"])
    raw = base64.b64decode(tagged["b64"])
    array = np.frombuffer(raw, dtype=np.dtype(tagged["dtype"])).reshape(tagged["shape"]).copy()
    return array[()] if tagged["scalar"] else array


def encode_attrs(attrs: h5py.AttributeManager) -> dict[str, dict]:
    """Every attribute of an HDF5 object, tagged, in the order HDF5 lists them."""
    return {name: encode_value(attrs[name]) for name in attrs}


def write_attrs(attrs: h5py.AttributeManager, tagged: dict[str, dict]) -> None:
    """Set the attributes ``encode_attrs`` recorded."""
    for name, value in tagged.items():
        attrs[name] = decode_value(value)
