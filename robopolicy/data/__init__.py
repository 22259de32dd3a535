"""Demonstration data: the zarr format, its writer and reader, sampling and normalization."""

from robopolicy.data.errors import DatasetError
from robopolicy.data.reader import ReplayBuffer
from robopolicy.data.writer import DatasetWriter

__all__ = ["DatasetError", "DatasetWriter", "ReplayBuffer"]
