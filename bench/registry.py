"""Name → object registries, one per kind (models, methods, datasets, metrics).

A registry is the only way the harness finds a component by name, so an unknown name
always fails the same way: one error that lists what is known.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, Literal, TypeVar, Union

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


class OptionError(ValueError):
    """An option a registered callable does not take, or a value of the wrong type for it."""

    def __init__(self, key: str, what: str, allowed: str | None = None) -> None:
        super().__init__(f"option {key}: {what}" + (f"; allowed: {allowed}" if allowed else ""))
        self.key, self.what, self.allowed = key, what, allowed


def check_options(fn: Callable[..., Any], options: dict[str, Any], leading: int) -> None:
    """Raise OptionError for the first option `fn` does not take, or whose value does not fit the
    parameter's annotation (as a suite or `-o key=value` would spell it: YAML values). One check
    for suite validation, check-data and direct construction alike."""
    params = _option_parameters(fn, leading)
    if params is None:
        return
    by_name = {p.name: p for p in params}
    for key, value in options.items():
        if key not in by_name:
            raise OptionError(key, "unknown option", ", ".join(by_name) or "(no options)")
        hint = by_name[key].annotation
        if not _fits(value, hint):
            raise OptionError(key, f"expected {type_name(hint)}, got {value!r}")


def _fits(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits an annotation (unannotated or unrecognised types accept anything)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is inspect.Parameter.empty or hint is Any or isinstance(hint, str):
        return True
    if origin in (Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is Path:
        return isinstance(value, (str, Path))
    if origin in (list, tuple, collections.abc.Sequence):  # YAML has lists only
        return isinstance(value, (list, tuple)) and all(_fits(item, args[0] if args else Any) for item in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, hint) if isinstance(hint, type) else True


def type_name(hint: Any) -> str:
    """An annotation as a suite writer reads it: "int", "a float or null", "one of 'a', 'b'"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if hint is type(None):
        return "null"
    if origin in (list, tuple, collections.abc.Sequence):
        return f"a list of {_PLURALS.get(args[0], type_name(args[0]))}" if args else "a list"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path", dict: "a mapping"}
_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def option_defaults(fn: Callable[..., Any], leading: int) -> str:
    """The options of `fn` with their defaults, as a suite would spell them: "seed=0, compile=False"."""
    params = _option_parameters(fn, leading)
    if params is None:
        return "any"
    return ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params) or "none"


def with_defaults(fn: Callable[..., Any], options: dict[str, Any], leading: int) -> dict[str, Any]:
    """`options` with every option `fn` takes and they leave out at its default (as written where
    `fn` takes any keyword): the configuration a result row records."""
    params = _option_parameters(fn, leading) or []
    return {p.name: p.default for p in params if p.default is not p.empty} | options


def _option_parameters(fn: Callable[..., Any], leading: int) -> list[inspect.Parameter] | None:
    try:
        params = list(inspect.signature(fn, eval_str=True).parameters.values())
    except (TypeError, ValueError, NameError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p for p in params[leading:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
