"""Converters between our zarr dataset and other demonstration formats.

- ``robomimic_hdf5`` (import) and ``robomimic_export``: robomimic HDF5 <-> ours, exact round trip;
- ``diffusion_policy``: diffusion_policy zarr replay buffers -> ours, lossless or refused;
- ``lerobot_import`` and ``lerobot_export``: LeRobot datasets (v2.0, v2.1, v3.0 in; v2.1 out)
  <-> ours, low-dim values exact, images through the video codec (``lerobot_layout``: where a
  LeRobot dataset keeps what; ``lerobot_features``: the key mapping; ``lerobot_video``: mp4 in
  and out; ``lerobot_sidecar``: what only our format has).

The command-line front end is ``robopolicy-convert`` (``datasets/convert.py``).
"""

from robopolicy.data.convert.diffusion_policy import diffusion_policy_to_zarr
from robopolicy.data.convert.lerobot_export import LeRobotExport, zarr_to_lerobot
from robopolicy.data.convert.lerobot_import import lerobot_to_zarr
from robopolicy.data.convert.robomimic_export import zarr_to_robomimic
from robopolicy.data.convert.robomimic_hdf5 import robomimic_to_zarr

__all__ = [
    "LeRobotExport",
    "diffusion_policy_to_zarr",
    "lerobot_to_zarr",
    "robomimic_to_zarr",
    "zarr_to_lerobot",
    "zarr_to_robomimic",
]
