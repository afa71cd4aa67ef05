"""Method parameters: parsing `-p key=value` strings and suite (YAML) values into typed values.

Every parameter of every preset is declared once as a `Param`; its parser accepts either the
string form (command line: "sigma=4", "mean=false", "frame_layers=0-8", "grid=2x3") or the
already-typed YAML value, and raises ValueError saying what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable


SIGMA_WINDOWS: dict[int, tuple[int, int]] = {1: (1, 1), 2: (1, 2), 4: (2, 2), 6: (2, 3), 9: (3, 3)}  # σ → kept-patch window (rows, cols)
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """["sigma=4", "mean=false"] → {"sigma": "4", "mean": "false"}; each key at most once."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"method parameter {pair!r} is not of the form key=value (e.g. -p sigma=4)")
        if key in overrides:
            raise ValueError(f"method parameter {key!r} is given twice")
        overrides[key] = value.strip()
    return overrides


@dataclass(frozen=True)
class LayerSet:
    """Global-layer indices as written: "0-8", "0-8,20-23", "9", "all" or "none"."""

    ranges: tuple[tuple[int, int], ...] | None  # inclusive (first, last) pairs; None = all layers

    def indices(self, num_layers: int, name: str) -> tuple[int, ...]:
        """The layers of a model with `num_layers` global layers; out-of-range layers are an error."""
        if self.ranges is None:
            return tuple(range(num_layers))
        for _, last in self.ranges:
            if last >= num_layers:
                raise ValueError(f"{name}={self}: this model has global layers 0-{num_layers - 1}")
        return tuple(sorted({i for first, last in self.ranges for i in range(first, last + 1)}))

    def __str__(self) -> str:
        if self.ranges is None:
            return "all"
        return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self.ranges) or "none"


def layer_set(value: Any) -> LayerSet:
    """Layer ranges from "0-8,20-23" / "all" / "none", an int, or a list of ints."""
    if isinstance(value, LayerSet):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected layer ranges like 0-8 or 0-8,20-23, 'all' or 'none', got {value!r}")
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, (list, tuple)):
        value = ",".join(str(integer(item)) for item in value)
    text = str(value).strip().lower()
    if text == "all":
        return LayerSet(None)
    if text in ("none", ""):
        return LayerSet(())
    ranges = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            a, b = int(first), int(last or first)
        except ValueError:
            raise ValueError(f"expected layer ranges like 0-8 or 0-8,20-23, 'all' or 'none', got {value!r}") from None
        if a < 0 or b < a:
            raise ValueError(f"layer range {part.strip()!r} must be first-last with 0 <= first <= last")
        ranges.append((a, b))
    return LayerSet(_canonical(ranges))


def _canonical(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted, merged ranges, so equal layer sets compare and print alike ("0,1,2" → "0-2")."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return tuple(merged)


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {value!r}") from None


def fraction(low: float, high: float, *, include_high: bool = True) -> Callable[[Any], float]:
    """A number in [low, high] (or [low, high))."""

    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
        if not (low <= number <= high) or (number == high and not include_high):
            raise ValueError(f"expected a number in [{low}, {high}{']' if include_high else ')'}, got {value!r}")
        return number

    return parse


def choice(options: Iterable[str]) -> Callable[[Any], str]:
    options = tuple(options)

    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return text

    return parse


def grid(value: Any) -> tuple[int, int] | None:
    """A (rows, cols) window from "2x3", [2, 3], or None/"none" for no explicit grid."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "")):
        return None
    if isinstance(value, str):
        parts = value.lower().replace("×", "x").split("x")
    else:
        parts = list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        rows, cols = (integer(p) for p in parts)
    except ValueError:
        raise ValueError(f"expected a window rows x cols like 2x3, got {value!r}") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"window {value!r} must be at least 1x1")
    return rows, cols


def sigma(value: Any) -> int | str:
    """σ: "auto" or one of 1, 2, 4, 6, 9 (windows 1×1, 1×2, 2×2, 2×3, 3×3)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    number = integer(value)
    if number not in SIGMA_WINDOWS:
        raise ValueError(f"expected auto or one of {', '.join(map(str, SIGMA_WINDOWS))} (or set grid=RxC), got {value!r}")
    return number


def thresholds(value: Any) -> tuple[int, int]:
    """Two increasing frame counts, "30,150" or [30, 150]."""
    parts = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
    if len(parts) != 2:
        raise ValueError(f"expected two frame counts like 30,150, got {value!r}")
    low, high = (integer(p) for p in parts)
    if not 0 < low <= high:
        raise ValueError(f"expected 0 < first <= second, got {value!r}")
    return low, high


@dataclass(frozen=True)
class Param:
    """One parameter of a preset: its parser, its default (or a default per model), its help."""

    parse: Callable[[Any], Any]
    default: Any  # a value, or a callable (the model's traits) -> value
    help: str

    def default_for(self, traits: Any) -> Any:
        return self.default(traits) if callable(self.default) else self.default


def json_value(value: Any) -> Any:
    """A parsed parameter as it is recorded in result rows."""
    if isinstance(value, LayerSet):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value
