"""The error of a bad config and the range rules the schemas state their fields with.

A schema dataclass checks its own fields in a ``check()`` method, naming each field relative to
itself (``lr``); ``robopolicy.config.validate`` calls it on every node and puts the node's path
in front (``algo.lr``). Every rule raises one ``ConfigError`` whose message is one line,
``<key>=<value>: <what is expected>``. Unset optional fields (``None``) pass every rule: their
types say that null is allowed, and what null means is in the field's comment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any


class ConfigError(ValueError):
    """A bad config: one line naming the key, the value and what is expected.

    ``ConfigError("lr", -1, "expected a number > 0")`` reads ``lr=-1: expected a number > 0``;
    ``ConfigError.line(text)`` carries a message that is already whole (Hydra's errors).
    """

    def __init__(self, key: str, value: Any = None, expected: str = "") -> None:
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"{key}={show(value)}: {expected}" if expected else key)

    @classmethod
    def line(cls, message: str) -> ConfigError:
        """An error whose message is ``message`` (its newlines folded into one line)."""
        return cls(" ".join(part.strip() for part in message.splitlines() if part.strip()))

    def under(self, prefix: str) -> ConfigError:
        """The same error with its key read from the node at ``prefix`` (``algo`` + ``lr``)."""
        if not prefix or not self.expected:
            return self
        return ConfigError(f"{prefix}.{self.key}", self.value, self.expected)


def show(value: Any) -> str:
    """A value as a user writes it on the command line: ``abc``, ``-1``, ``[1, 2]``, ``{a: 1}``,
    ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {show(item)}" for key, item in value.items()) + "}"
    return str(value)


def require(condition: bool, key: str, value: Any, expected: str) -> None:
    """Raise ``ConfigError(key, value, expected)`` unless ``condition``."""
    if not condition:
        raise ConfigError(key, value, expected)


def default_of(node: Any, name: str) -> Any:
    """The default of the field ``name`` of the schema dataclass ``node`` (a fresh value for a
    field with a default factory)."""
    item = next(item for item in dataclasses.fields(node) if item.name == name)
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return item.default


def _values(node: Any, names: Iterable[str]) -> Iterable[tuple[str, Any]]:
    for name in names:
        value = getattr(node, name)
        if value is not None:
            yield name, value


def at_least(node: Any, minimum: int, *names: str) -> None:
    """Each of ``names`` (integers) is ``>= minimum``."""
    for name, value in _values(node, names):
        require(value >= minimum, name, value, f"expected an integer >= {minimum}")


def positive(node: Any, *names: str) -> None:
    """Each of ``names`` (numbers) is ``> 0``."""
    for name, value in _values(node, names):
        require(value > 0, name, value, "expected a number > 0")


def non_negative(node: Any, *names: str) -> None:
    """Each of ``names`` (numbers) is ``>= 0``."""
    for name, value in _values(node, names):
        require(value >= 0, name, value, "expected a number >= 0")


def in_range(node: Any, low: float, high: float, *names: str, open_low: bool = False) -> None:
    """Each of ``names`` lies in ``[low, high]`` (``(low, high]`` with ``open_low``)."""
    for name, value in _values(node, names):
        inside = (low < value if open_low else low <= value) and value <= high
        bracket = "(" if open_low else "["
        require(inside, name, value, f"expected a number in {bracket}{low:g}, {high:g}]")


def one_of(node: Any, name: str, choices: Iterable[str]) -> None:
    """``name`` is one of ``choices``."""
    choices = list(choices)
    for _, value in _values(node, [name]):
        require(value in choices, name, value, f"expected one of {', '.join(choices)}")


def widths(node: Any, *names: str) -> None:
    """Each of ``names`` is a non-empty list of positive integers (layer widths)."""
    for name, value in _values(node, names):
        ok = len(value) > 0 and all(width >= 1 for width in value)
        require(ok, name, list(value), "expected a non-empty list of integers >= 1")


def multiple_of(node: Any, name: str, of: str) -> None:
    """``name`` is a multiple of the field ``of`` (both integers >= 1, checked before)."""
    value, base = getattr(node, name), getattr(node, of)
    require(value % base == 0, name, value, f"expected a multiple of {of}={base}")
