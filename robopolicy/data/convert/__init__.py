"""Converters between our zarr dataset and other demonstration formats.

- ``robomimic_hdf5`` (import) and ``robomimic_export``: robomimic HDF5 <-> ours, exact round trip;
- ``diffusion_policy``: diffusion_policy zarr replay buffers -> ours, lossless or refused.

The command-line front end is ``robopolicy-convert`` (``datasets/convert.py``).
"""

from robopolicy.data.convert.diffusion_policy import diffusion_policy_to_zarr
from robopolicy.data.convert.robomimic_export import zarr_to_robomimic
from robopolicy.data.convert.robomimic_hdf5 import robomimic_to_zarr

__all__ = ["diffusion_policy_to_zarr", "robomimic_to_zarr", "zarr_to_robomimic"]
