"""The one error the data layer raises for bad input: it names the store, key and problem."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset is missing, malformed or does not match what the caller expected.

    The message always reads ``dataset <store>: <key>: <problem>`` so that a user can go straight
    to the file and the array at fault.
    """

    def __init__(self, store: object, problem: str, key: str | None = None):
        self.store = str(store)
        self.key = key
        self.problem = problem
        where = f"dataset {self.store}" + (f": {key}" if key else "")
        super().__init__(f"{where}: {problem}")
