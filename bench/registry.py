"""Name → object registries, one per kind (models, methods, datasets, metrics).

A registry is the only way the harness finds a component by name, so an unknown name
always fails the same way: one error that lists what is known.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that no registry entry answers to."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message
        return str(self.args[0])


class Registry(Generic[T]):
    """A small ordered map from names to entries, with a short help line per entry."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, entry: T | None = None, *, help: str = "") -> Callable[[T], T] | T:
        """Register `entry` under `name`; without `entry`, return a decorator."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            self._help[name] = help or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
            return obj

        return add(entry) if entry is not None else add

    def unregister(self, name: str) -> T:
        """Remove and return entry `name` (plug-ins and tests that register temporary entries)."""
        entry = self.get(name)
        del self._entries[name], self._help[name]
        return entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self._entries) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def help(self, name: str) -> str:
        self.get(name)
        return self._help[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


# How many leading parameters of a registered callable the harness passes itself (weights; root;
# pred and gt) before the options a suite may set, by registry.
OPTIONS_AFTER = {"models": 1, "datasets": 1, "metrics": 2}


def accepted_options(fn: Callable[..., Any], leading: int) -> list[str] | None:
    """The keyword options a registered callable takes after its first `leading` parameters (those
    the harness passes itself: weights, root, pred and gt); None when it takes any (**kwargs) or its
    signature cannot be read. One check for suite validation and for direct construction alike."""
    params = _option_parameters(fn, leading)
    return None if params is None else [p.name for p in params]


def option_defaults(fn: Callable[..., Any], leading: int) -> str:
    """The options of `fn` with their defaults, as a suite would spell them: "seed=0, compile=False"."""
    params = _option_parameters(fn, leading)
    if params is None:
        return "any"
    return ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params) or "none"


def _option_parameters(fn: Callable[..., Any], leading: int) -> list[inspect.Parameter] | None:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p for p in params[leading:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
