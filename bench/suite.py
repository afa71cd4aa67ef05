"""Suite files: the YAML schema, its validation, and the expansion of a suite into cells.

A suite is checked whole before anything runs, and every mistake is one `SuiteError` that names
the file, the field path and what is allowed there. Expansion turns a suite into cells
(model × method × dataset × scene × frame count), each with a stable identity used to resume runs
and to match results across runs.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import os
import re
import sys
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, NoReturn

import torch
import yaml
from tqdm import tqdm

import metrics as metrics_pkg
from bench.methods import METHODS, MethodNotApplicable, resolve_plan
from bench.models import MODELS, ModelTraits, meta_model
from bench.methods.params import sigma as param_sigma
from bench.models.weights import WeightsError, check_weights
from bench.preprocess import PREPROCESS
from bench.protocols import PROTOCOLS, Protocol, Setting
from bench.registry import OPTIONS_AFTER, OptionError, check_options, with_defaults
from datasets_adapters import DATASETS, DatasetAdapter, Sampling
from datasets_adapters.sampling import SAMPLING_KINDS, STREAM_ORDERS

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")
ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
WEIGHTS_ALLOWED = "an existing .pt/.pth/.safetensors file, a Hugging Face id already in the local cache, or random (timing only)"


class SuiteError(ValueError):
    """A suite file that cannot be run as written; the message says where and how to fix it."""


def check_device(text: str) -> str:
    """`text` if it names a device the harness runs on (cpu, cuda, cuda:N), else ValueError."""
    if not isinstance(text, str) or not DEVICE.match(text):
        raise ValueError(f"unknown device {text!r}; allowed: cpu, cuda, cuda:N")
    return text


@dataclass(frozen=True)
class _Field:
    """A value read from the suite file with its path there, so any check can say where it failed."""

    source: str
    path: str
    value: Any

    def fail(self, what: str, allowed: str | None = None) -> NoReturn:
        fail_at(self.source, self.path, what, allowed)

    def child(self, key: str | int) -> "_Field":
        path = f"{self.path}[{key}]" if isinstance(key, int) else f"{self.path}.{key}" if self.path else str(key)
        value = self.value[key] if isinstance(key, int) else self.value.get(key)
        return _Field(self.source, path, value)

    def at(self, subpath: str) -> "_Field":
        """A field below this one known only by its path (for checks made after parsing)."""
        return _Field(self.source, f"{self.path}.{subpath}", None)

    def mapping(self, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, "_Field"]:
        """The present keys of a mapping, each as a field; unknown or missing keys fail."""
        if not isinstance(self.value, dict):
            self.fail(f"expected a mapping, got {_kind(self.value)}", ", ".join(allowed))
        for key in self.value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.child(str(key)).fail(f"unknown key{hint}", ", ".join(allowed))
        for key in required:
            if key not in self.value:
                self.child(key).fail("missing", f"a value for {key!r}")
        return {key: self.child(key) for key in allowed if key in self.value}

    def items(self) -> list["_Field"]:
        """The entries of a non-empty list."""
        if not isinstance(self.value, list):
            self.fail(f"expected a list, got {_kind(self.value)}")
        if not self.value:
            self.fail("the list is empty", "at least one entry")
        return [self.child(i) for i in range(len(self.value))]

    def text(self) -> str:
        if not isinstance(self.value, str) or not self.value.strip():
            self.fail(f"expected a non-empty string, got {_kind(self.value)}")
        return self.value

    def integer(self, minimum: int) -> int:
        if not isinstance(self.value, int) or isinstance(self.value, bool) or self.value < minimum:
            self.fail(f"expected an integer >= {minimum}, got {self.value!r}")
        return self.value

    def options(self) -> dict[str, Any]:
        """A mapping of keyword arguments (absent or null = none)."""
        if self.value is None:
            return {}
        if not isinstance(self.value, dict) or not all(isinstance(k, str) for k in self.value):
            self.fail(f"expected a mapping of names to values, got {_kind(self.value)}")
        return dict(self.value)

    def name_in(self, registry: Any) -> str:
        name = self.text()
        if name not in registry:
            self.fail(f"unknown {registry.kind} {name!r}", ", ".join(registry.names()) or "(none registered)")
        return name

    def label(self, default: str) -> str:
        label = default if self.value is None else self.text()
        if not LABEL.match(label):
            self.fail(f"{label!r} cannot name a cell or a results folder", "letters, digits and . _ + - (no spaces or slashes), starting with a letter or digit")
        return label

    def path_with_env(self) -> str:
        """The string with ${VAR} replaced from the environment and ~ expanded."""

        def lookup(match: re.Match) -> str:
            var = match.group(1)
            if var not in os.environ:
                self.fail(f"environment variable {var} is not set", f"set it first, e.g. export {var}=/path/to/data")
            return os.environ[var]

        return os.path.expanduser(ENV_VAR.sub(lookup, self.text()))


def fail_at(source: str, path: str, what: str, allowed: str | None = None) -> NoReturn:
    """Raise the SuiteError of a field: for checks made after parsing, where only the path is known."""
    raise SuiteError(f"{source}: {path or '(top level)'}: {what}" + (f"; allowed: {allowed}" if allowed else ""))


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__


@dataclass(frozen=True)
class ModelSpec:
    name: str
    label: str
    weights: str  # as written in the suite (part of the identity, machine independent)
    weights_path: str  # with ${VAR} expanded: what is loaded
    options: dict[str, Any] = field(default_factory=dict)  # as written (part of the identity)

    @property
    def resolved_options(self) -> dict[str, Any]:
        """Every option of the model, defaults filled in: what a row records, so it says e.g. its
        heads' precision where the suite left it out (identities keep `options` as written)."""
        return with_defaults(MODELS.get(self.name), self.options, OPTIONS_AFTER["models"])


@dataclass(frozen=True)
class MethodSpec:
    name: str
    label: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProtocolUse:
    """A dataset entry's published protocol, and what the entry sets differently from it."""

    protocol: Protocol
    setting: Setting
    overrides: dict[str, Any]  # field → the entry's value, for every field that differs from the protocol

    def as_row(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol.name,
            "protocol_version": self.protocol.version,
            "protocol_variant": self.setting.variant,
            "protocol_overrides": self.overrides or None,
        }


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    label: str
    root: str | None  # as written in the suite (part of the identity)
    root_path: str | None  # with ${VAR} expanded: what is read
    options: dict[str, Any]  # as written (part of the identity)
    scenes: str | int | tuple[str, ...]  # "all", the first N, or names
    frames: tuple[int | None, ...]  # None = every frame the sampling rule gives
    sampling: Sampling
    preprocess: str | None  # None = the model's own preprocess_mode
    adapter_options: dict[str, Any] = field(default_factory=dict)  # `options` with ${VAR} expanded: what the adapter gets
    metrics: tuple[str, ...] | None = None  # None: the suite's metrics
    metric_options: dict[str, dict[str, Any]] | None = None
    protocol: ProtocolUse | None = None


def _by_frames(default: int, table: tuple[tuple[int, int], ...], frames: int) -> int:
    """The count for `frames` frames: the highest threshold of `table` reached decides, else `default`."""
    count = default
    for threshold, value in table:
        if frames >= threshold:
            count = value
    return count


@dataclass(frozen=True)
class TimingSpec:
    warmup: int = 1
    repeats: int = 3
    repeats_above: tuple[tuple[int, int], ...] = ()  # (from this many frames, repeats), ascending
    warmup_above: tuple[tuple[int, int], ...] = ()  # (from this many frames, warm-up runs), ascending

    def repeats_for(self, frames: int) -> int:
        """Timed repeats for a cell of `frames` frames."""
        return _by_frames(self.repeats, self.repeats_above, frames)

    def warmup_for(self, frames: int) -> int:
        """Untimed warm-up runs for a cell of `frames` frames (long cells can skip them: the kernels
        are already warm from the shorter cells before them)."""
        return _by_frames(self.warmup, self.warmup_above, frames)


ANALYSIS_COSTS = ("time", "flops")


@dataclass(frozen=True)
class AnalysisSpec:
    """The `analysis:` settings of a suite (bench.analysis): how attention is sampled and scored,
    and what the recommendation minimises under which accuracy tolerance."""

    queries: int = 256  # query patches sampled per scene (with ground-truth depth)
    radius: int = 1  # a correspondence hit lies within this many patches (Chebyshev) of the true patch
    seed: int = 0  # of the query sampling
    accuracy: str = "pose.auc30"  # the metric value that decides the recommendation
    tolerance: float = 1.0  # how far (in that value's units) a plan may fall behind dense
    cost: str = "time"  # what the recommendation minimises: measured median time, or global-attention FLOPs
    sigmas: tuple[int, ...] = (2, 4, 9)  # swept with the first t_early global layers as frame attention
    t_early: int | None = None  # the t_early of the σ sweep; None: the one the t sweep recommends

    def as_row(self) -> dict[str, Any]:
        return {"queries": self.queries, "radius": self.radius, "seed": self.seed}


@dataclass(frozen=True)
class Suite:
    source: str
    name: str
    description: str
    device: str
    models: tuple[ModelSpec, ...]
    methods: tuple[MethodSpec, ...]
    datasets: tuple[DatasetSpec, ...]
    timing: TimingSpec
    metrics: tuple[str, ...]
    metric_options: dict[str, dict[str, Any]]
    plugins: tuple[str, ...] = ()
    analysis: AnalysisSpec | None = None  # an analysis suite: one model, methods generated (the ablations)


TOP_KEYS = ("name", "description", "device", "plugins", "models", "methods", "datasets", "timing", "metrics", "metric_options", "analysis")
ANALYSIS_KEYS = ("queries", "radius", "seed", "accuracy", "tolerance", "cost", "sigmas", "t_early")
MODEL_KEYS = ("name", "label", "weights", "options")
METHOD_KEYS = ("name", "label", "params")
DATASET_KEYS = ("name", "label", "root", "protocol", "variant", "options", "scenes", "frames", "sampling", "preprocess", "metrics", "metric_options")
NEUTRAL_OPTIONS = ("workers", "annotations")  # adapter options that change where data is read from, not the numbers
TIMING_KEYS = ("warmup", "repeats", "repeats_above", "warmup_above")
SAMPLING_KEYS = ("kind", "stride", "start", "seed", "order")


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; any mistake raises `SuiteError` naming the file and field."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise SuiteError(f"{source}: cannot read the suite file: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise SuiteError(f"{source}: {where}YAML syntax error: {problem}") from None
    return parse_suite(data, source)


def parse_suite(data: Any, source: str = "<suite>") -> Suite:
    """Validate the parsed YAML of a suite (see suites/smoke.yaml for every field)."""
    top = _Field(source, "", data).mapping(TOP_KEYS, required=("name", "models", "datasets"))
    plugins = _import_plugins(top["plugins"]) if "plugins" in top else ()
    if "analysis" in top and "methods" in top:
        top["methods"].fail("an analysis suite generates its methods (the ablations of its model's global layers)", "no `methods:` beside `analysis:`")
    if "analysis" not in top and "methods" not in top:
        _Field(source, "methods", None).fail("missing", "a value for 'methods' (or `analysis:` settings, for `avggt-bench analyze`)")
    name = top["name"].label(default="")
    description = top["description"].text() if "description" in top else ""
    device = "cpu"
    if "device" in top:
        try:
            device = check_device(top["device"].value)
        except ValueError:
            top["device"].fail(f"unknown device {top['device'].value!r}", "cpu, cuda, cuda:N")
    models = _unique_labels([_parse_model(f) for f in top["models"].items()], top["models"])
    methods = _unique_labels([_parse_method(f) for f in top["methods"].items()], top["methods"]) if "methods" in top else ()
    metric_names = _parse_metrics(top["metrics"]) if "metrics" in top else ()
    datasets = _unique_labels([_parse_dataset(f, metric_names) for f in top["datasets"].items()], top["datasets"])
    timing = _parse_timing(top["timing"]) if "timing" in top else TimingSpec()
    metric_options = _parse_metric_options(top["metric_options"], metric_names) if "metric_options" in top else {}
    analysis = None
    if "analysis" in top:
        if len(models) != 1:
            top["models"].fail(f"an analysis suite measures one model, got {len(models)}", "one entry (write one suite per model)")
        analysis = _parse_analysis(top["analysis"], [spec.metrics if spec.metrics is not None else metric_names for spec in datasets])
    return Suite(source, name, description, device, models, methods, datasets, timing, metric_names, metric_options, plugins, analysis)


def _parse_analysis(f: _Field, dataset_metrics: list[tuple[str, ...]]) -> AnalysisSpec:
    """`analysis:` settings; the accuracy value must be one every dataset entry is scored with."""
    keys = f.mapping(ANALYSIS_KEYS) if f.value is not None else {}
    values: dict[str, Any] = {name: keys[name].integer(low) for name, low in (("queries", 1), ("radius", 0), ("seed", 0)) if name in keys}
    if "accuracy" in keys:
        values["accuracy"] = keys["accuracy"].text()
    column = values.get("accuracy", AnalysisSpec.accuracy)
    metric = column.partition(".")[0]
    where = keys.get("accuracy", f.at("accuracy"))
    if metrics_pkg.direction(column) is None:
        where.fail(f"{column!r} is not a metric value", "<metric>.<value key> of a registered metric, e.g. pose.auc30 or depth.abs_rel")
    if any(metric not in names for names in dataset_metrics):
        where.fail(f"{column!r}: not every dataset entry is scored with metric {metric!r}", "a value of a metric in the suite's (or every dataset entry's) `metrics:`")
    if "tolerance" in keys:
        tolerance = keys["tolerance"].value
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
            keys["tolerance"].fail(f"expected a number >= 0, got {tolerance!r}", "how far, in the accuracy value's units, a plan may fall behind dense")
        values["tolerance"] = float(tolerance)
    if "cost" in keys:
        if keys["cost"].value not in ANALYSIS_COSTS:
            keys["cost"].fail(f"unknown cost {keys['cost'].value!r}", ", ".join(ANALYSIS_COSTS))
        values["cost"] = keys["cost"].value
    if "sigmas" in keys:
        sigmas = []
        for item in keys["sigmas"].items():
            try:
                sigma = param_sigma(item.value)
            except ValueError as err:
                item.fail(str(err))
            if sigma == "auto" or sigma == 1:
                item.fail(f"σ {item.value!r} is not swept", "2, 4, 6, 9 (σ = 1 is the t sweep itself)")
            sigmas.append(sigma)
        if len(set(sigmas)) != len(sigmas):
            keys["sigmas"].fail("a σ is listed twice", "distinct values of 2, 4, 6, 9")
        values["sigmas"] = tuple(sigmas)
    if "t_early" in keys and keys["t_early"].value != "recommended":
        if not isinstance(keys["t_early"].value, int) or isinstance(keys["t_early"].value, bool):
            keys["t_early"].fail(f"expected recommended or an integer >= 0, got {keys['t_early'].value!r}", "recommended (the t sweep's choice) or a number of global layers")
        values["t_early"] = keys["t_early"].integer(0)
    return AnalysisSpec(**values)


def _import_plugins(f: _Field) -> tuple[str, ...]:
    """Import each named module first (it registers its models, methods, datasets or metrics), so
    the names below can use them; every process that reads the suite (a distributed run's workers
    too) imports the same."""
    names = tuple(item.text() for item in f.items())
    for k, module in enumerate(names):
        try:
            importlib.import_module(module)
        except Exception as err:
            f.child(k).fail(f"cannot import plugin {module!r}: {type(err).__name__}: {err}", "an importable module name, e.g. mylab.avggt_plugins")
    return names


def _parse_model(f: _Field) -> ModelSpec:
    if isinstance(f.value, str):
        f = _Field(f.source, f.path, {"name": f.value})
    keys = f.mapping(MODEL_KEYS, required=("name",))
    name = keys["name"].name_in(MODELS)
    weights = keys["weights"].text() if "weights" in keys else "random"
    weights_path = keys["weights"].path_with_env() if "weights" in keys else weights
    options = keys["options"].options() if "options" in keys else {}
    _check_kwargs(MODELS.get(name), options, f.child("options"), leading=OPTIONS_AFTER["models"])
    return ModelSpec(name, f.child("label").label(name), weights, weights_path, options)


def _parse_method(f: _Field) -> MethodSpec:
    if isinstance(f.value, str):
        f = _Field(f.source, f.path, {"name": f.value})
    keys = f.mapping(METHOD_KEYS, required=("name",))
    name = keys["name"].name_in(METHODS)
    params = keys["params"].options() if "params" in keys else {}
    return MethodSpec(name, f.child("label").label(name), params)


def _parse_dataset(f: _Field, suite_metrics: tuple[str, ...]) -> DatasetSpec:
    keys = f.mapping(DATASET_KEYS, required=("name",))
    name = keys["name"].name_in(DATASETS) if "protocol" not in keys else keys["name"].text()
    root = keys["root"].text() if "root" in keys else None
    root_path = keys["root"].path_with_env() if "root" in keys else None
    if root_path is not None and not Path(root_path).exists():
        keys["root"].fail(f"{root_path} does not exist", f"the folder that holds the {name} data")
    written = keys["options"].options() if "options" in keys else {}
    given = {
        "scenes": _parse_scenes(keys["scenes"]) if "scenes" in keys else None,
        "frames": _parse_frames(keys["frames"]) if "frames" in keys else None,
        "sampling": _parse_sampling(keys["sampling"]) if "sampling" in keys else None,
        "preprocess": keys["preprocess"].name_in(PREPROCESS) if "preprocess" in keys else None,
        "metrics": _parse_metrics(keys["metrics"]) if "metrics" in keys else None,
    }
    if "variant" in keys and "protocol" not in keys:
        keys["variant"].fail("a variant belongs to a protocol", "add `protocol:` or remove `variant:`")
    use = _protocol_setting(keys, name) if "protocol" in keys else None
    if use is not None:
        given = {field_name: _published(use.setting, field_name) if value is None else value for field_name, value in given.items()}
    elif given["frames"] is None:
        f.child("frames").fail("missing", "a value for 'frames' (or a `protocol:` that sets it)")
    options = {**use.setting.options, **written} if use is not None else written
    _check_kwargs(DATASETS.get(name), options, f.child("options"), leading=OPTIONS_AFTER["datasets"])
    metric_names = given["metrics"]
    entry_metric_options = _parse_metric_options(keys["metric_options"], metric_names if metric_names is not None else suite_metrics) if "metric_options" in keys else None
    if use is None:
        metric_options = entry_metric_options
    else:
        metric_options = {m: {**use.setting.metrics.get(m, {}), **(entry_metric_options or {}).get(m, {})} for m in metric_names}
        use = replace(use, overrides=_overrides(use.setting, written, keys, given, entry_metric_options or {}))
    sampling = given["sampling"] or Sampling()
    if sampling.kind == "stream" and None in given["frames"]:
        (keys.get("frames") or f).fail("stream sampling draws a fixed number of frames per scene", "frame counts, not all")
    return DatasetSpec(
        name, f.child("label").label(name), root, root_path, written, given["scenes"] or "all", given["frames"], sampling, given["preprocess"],
        adapter_options={key: _expand_env(value, f.at(f"options.{key}")) for key, value in options.items()},
        metrics=metric_names, metric_options=metric_options, protocol=use,
    )  # fmt: skip


def _protocol_setting(keys: dict[str, _Field], name: str) -> ProtocolUse:
    """The protocol and setting a dataset entry names (overrides are filled in by the caller)."""
    protocol = PROTOCOLS.get(keys["protocol"].name_in(PROTOCOLS))
    try:
        setting = protocol.setting(name, keys["variant"].text() if "variant" in keys else None)
    except ValueError as err:
        (keys.get("variant") or keys["name"]).fail(str(err))
    if name not in DATASETS:
        keys["name"].fail(f"protocol {protocol.name!r} covers {name!r}, which has no dataset adapter in this harness yet", ", ".join(DATASETS.names()))
    return ProtocolUse(protocol, setting, {})


def _published(setting: Setting, field_name: str) -> Any:
    """The protocol's value of a dataset-entry field."""
    return tuple(setting.metrics) if field_name == "metrics" else getattr(setting, field_name)


def _overrides(setting: Setting, options: dict[str, Any], keys: dict[str, _Field], given: dict[str, Any], metric_options: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every value a protocol entry sets differently from the protocol, as written (adapter options
    that only say where data is read from, such as `workers`, are not overrides)."""
    overrides: dict[str, Any] = {}
    changed = {k: v for k, v in options.items() if k not in NEUTRAL_OPTIONS and setting.options.get(k, _UNSET) != v}
    if changed:
        overrides["options"] = changed
    for field_name, value in given.items():
        if field_name in keys and value != _published(setting, field_name):
            overrides[field_name] = value.as_dict() if isinstance(value, Sampling) else list(value) if isinstance(value, tuple) else value
    changed_metrics = {m: {k: v for k, v in o.items() if setting.metrics.get(m, {}).get(k, _UNSET) != v} for m, o in metric_options.items()}
    if any(changed_metrics.values()):
        overrides["metric_options"] = {m: o for m, o in changed_metrics.items() if o}
    return overrides


_UNSET = object()


def _expand_env(value: Any, f: _Field) -> Any:
    """A string option with ${VAR} replaced from the environment (identities keep the written form)."""
    return _Field(f.source, f.path, value).path_with_env() if isinstance(value, str) and ENV_VAR.search(value) else value


def _parse_scenes(f: _Field) -> str | int | tuple[str, ...]:
    allowed = "all, a number N (the first N scenes), or a list of scene names"
    if f.value == "all":
        return "all"
    if isinstance(f.value, int) and not isinstance(f.value, bool):
        return f.integer(1)
    if isinstance(f.value, list):
        names = tuple(item.text() for item in f.items())
        if len(set(names)) != len(names):
            f.fail("a scene is listed twice", allowed)
        return names
    f.fail(f"expected scenes, got {_kind(f.value)}", allowed)


def _parse_frames(f: _Field) -> tuple[int | None, ...]:
    allowed = "a frame count >= 1, all, or a list of those"
    entries = f.items() if isinstance(f.value, list) else [f]
    frames: list[int | None] = []
    for entry in entries:
        if entry.value == "all":
            frames.append(None)
        elif isinstance(entry.value, int) and not isinstance(entry.value, bool) and entry.value >= 1:
            frames.append(entry.value)
        else:
            entry.fail(f"bad frame count {entry.value!r}", allowed)
    if len(set(frames)) != len(frames):
        f.fail("a frame count is listed twice", allowed)
    return tuple(frames)


def _parse_sampling(f: _Field) -> Sampling:
    keys = f.mapping(SAMPLING_KEYS)
    values = {key: keys[key].text() if key in ("kind", "order") else keys[key].integer(0) for key in keys}
    try:
        return Sampling(**values)
    except ValueError as err:
        f.fail(str(err), f"kind in {', '.join(SAMPLING_KINDS)}, stride >= 1, start >= 0, seed an integer, order (stream only) in {', '.join(STREAM_ORDERS)}")


def _parse_timing(f: _Field) -> TimingSpec:
    keys = f.mapping(TIMING_KEYS)
    warmup = keys["warmup"].integer(0) if "warmup" in keys else TimingSpec.warmup
    repeats = keys["repeats"].integer(1) if "repeats" in keys else TimingSpec.repeats
    repeats_above = _frame_table(keys["repeats_above"], 1) if "repeats_above" in keys else ()
    warmup_above = _frame_table(keys["warmup_above"], 0) if "warmup_above" in keys else ()
    return TimingSpec(warmup, repeats, repeats_above, warmup_above)


def _frame_table(table: _Field, minimum: int) -> tuple[tuple[int, int], ...]:
    """{frames: count} → ((frames, count), ...) ascending; counts are integers >= `minimum`."""
    if not isinstance(table.value, dict):
        table.fail(f"expected a mapping of frame counts to counts, got {_kind(table.value)}", "e.g. {300: 1}")
    rows: list[tuple[int, int]] = []
    for threshold in table.value:
        entry = _Field(table.source, f"{table.path}.{threshold}", table.value[threshold])
        if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
            entry.fail(f"bad frame count {threshold!r}", "an integer >= 1 (from this many frames on)")
        rows.append((threshold, entry.integer(minimum)))
    return tuple(sorted(rows))


def _parse_metrics(f: _Field) -> tuple[str, ...]:
    """Metric names; an explicit empty list runs timing only."""
    if f.value == []:
        return ()
    names = tuple(item.name_in(metrics_pkg.METRICS) for item in f.items())
    if len(set(names)) != len(names):
        f.fail("a metric is listed twice", ", ".join(metrics_pkg.METRICS.names()))
    return names


def _parse_metric_options(f: _Field, metric_names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    keys = f.mapping(metric_names)
    options = {name: keys[name].options() for name in keys}
    for name, opts in options.items():
        _check_kwargs(metrics_pkg.METRICS.get(name), opts, keys[name], leading=OPTIONS_AFTER["metrics"])
    return options


def _unique_labels(specs: list, f: _Field) -> tuple:
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        if spec.label in seen:
            f.child(i).fail(f"label {spec.label!r} is used twice", "a distinct `label` for each entry")
        seen.add(spec.label)
    return tuple(specs)


def _check_kwargs(fn: Callable, options: dict[str, Any], f: _Field, leading: int) -> None:
    """Fail on an option that `fn` does not take, or of the wrong type, where its signature says."""
    try:
        check_options(fn, options, leading)
    except OptionError as err:
        f.child(err.key).fail(err.what, err.allowed)


# -- expansion ---------------------------------------------------------------------------------------


def traits_of(spec: ModelSpec, where: _Field | None = None) -> ModelTraits:
    """The traits of a suite's model entry, after checking that its weights fit the model: the file
    exists and its keys and shapes are the model's (read from the file's header; the model is
    built on the meta device, so nothing is loaded)."""
    where = where or _Field("<suite>", "model", None)
    try:
        model = meta_model(spec.name, **spec.options)
    except Exception as err:
        where.fail(f"cannot build model {spec.name!r} with these options: {err}")
    has_weights = any(True for _ in model.parameters())
    if spec.weights_path == "none" and has_weights:
        where.at("weights").fail(f"model {spec.name!r} has parameters, so it needs weights", WEIGHTS_ALLOWED)
    if spec.weights_path not in ("none", "random"):
        if not has_weights:
            where.at("weights").fail(f"model {spec.name!r} has no weights to load", "none")
        try:
            check_weights(model, spec.weights_path, type(model).checkpoint_filter)
        except WeightsError as err:
            where.at("weights").fail(str(err), WEIGHTS_ALLOWED)
    return model.traits


@dataclass(frozen=True)
class Cell:
    """One measurement: a model with a method on `frames` frames of one scene."""

    suite: Suite = field(repr=False)
    model: ModelSpec
    method: MethodSpec
    dataset: DatasetSpec
    scene: str
    frames: int | None
    preprocess: str | None
    device: str
    plan: Any = field(repr=False, compare=False)

    @property
    def cell_id(self) -> str:
        """Readable and unique in its suite; `--only` globs match it."""
        frames = "all" if self.frames is None else str(self.frames)
        return "/".join([self.model.label, self.method.label, self.dataset.label, self.scene, frames])

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics this cell is scored with: its dataset entry's (a protocol's), else the suite's."""
        return self.dataset.metrics if self.dataset.metrics is not None else self.suite.metrics

    @property
    def metric_options(self) -> dict[str, dict[str, Any]]:
        return self.dataset.metric_options if self.dataset.metric_options is not None else self.suite.metric_options

    @cached_property
    def inputs(self) -> dict[str, Any]:
        """Everything that decides a measurement except the method: cells that share it are compared
        for speed against each other."""
        protocol = {} if self.dataset.protocol is None else {"protocol": self.dataset.protocol.as_row()}
        return protocol | {
            "model": self.model.name,
            "model_options": self.model.options,
            "weights": self.model.weights,
            "dataset": self.dataset.name,
            "dataset_root": self.dataset.root,
            "dataset_options": self.dataset.options,
            "scene": self.scene,
            "frames": self.frames,
            "sampling": self.dataset.sampling.as_dict(),
            "preprocess": self.preprocess,
            "metrics": list(self.metrics),
            "metric_options": {m: self.metric_options.get(m, {}) for m in self.metrics},
            "device": self.device,
        }

    @cached_property
    def inputs_id(self) -> str:
        return _digest(self.inputs)

    @cached_property
    def identity(self) -> str:
        """Stable across machines and runs: paths enter as written in the suite (${VAR} unexpanded)."""
        return _digest({**self.inputs, "method": self.method.name, "method_label": self.method.label, "method_params": self.method.params})


def _digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()[:16]


@dataclass
class Expansion:
    cells: list[Cell]
    skipped: list[str]  # (model, method) pairs that do not apply, one line each
    adapters: dict[str, DatasetAdapter]  # by dataset label, built once and shared by the runner


def expand(suite: Suite, device: str | None = None) -> Expansion:
    """All cells of `suite` in run order (model, dataset, scene, frames, method); checks what only
    the components can check (method parameters, scene names, data on disk) as SuiteErrors."""
    device = device or suite.device
    adapters, scenes = {}, {}
    for i, spec in enumerate(suite.datasets):
        where = _Field(suite.source, f"datasets[{i}]", None)
        adapters[spec.label] = _build_adapter(spec, where)
        scenes[spec.label] = _resolve_scenes(spec, adapters[spec.label], where)
    cells: list[Cell] = []
    skipped: list[str] = []
    for i, model in enumerate(suite.models):
        traits = traits_of(model, _Field(suite.source, f"models[{i}]", None))
        plans = {}
        for j, method in enumerate(suite.methods):
            try:
                plans[method.label] = resolve_plan(method.name, method.params, traits)
            except MethodNotApplicable as err:
                skipped.append(f"{model.label} × {method.label}: skipped, {err}")
            except (ValueError, TypeError) as err:
                _Field(suite.source, f"methods[{j}].params", None).fail(f"for model {model.label}: {err}")
        for k, spec in enumerate(suite.datasets):
            preprocess = spec.preprocess or traits.preprocess_mode
            if preprocess is not None and preprocess not in PREPROCESS:
                _Field(suite.source, f"datasets[{k}].preprocess", None).fail(
                    f"model {model.label} preprocesses with mode {preprocess!r} by default, which is not registered",
                    f"set it to one of {', '.join(PREPROCESS.names())}",
                )
            for scene in scenes[spec.label]:
                for frames in spec.frames:
                    for method in suite.methods:
                        if method.label in plans:
                            cells.append(Cell(suite, model, method, spec, scene, frames, preprocess, device, plans[method.label]))
    _check_distinct(cells, suite.source)
    return Expansion(cells, skipped, adapters)


def check_frames(suite: Suite, expansion: Expansion, progress: bool = False) -> None:
    """SuiteError unless every scene of the suite has the frames its cells ask for, as the
    sampling draws them. Lists every scene's frames on disk, which can take a while on a large
    dataset: `validate` does it, `run` leaves it to each cell."""
    index = {spec.label: k for k, spec in enumerate(suite.datasets)}
    asked = dict.fromkeys((cell.dataset.label, cell.scene, cell.frames) for cell in expansion.cells)
    for label, scene, frames in tqdm(asked, desc="checking frames", unit="check", leave=False, disable=not progress, file=sys.stderr):
        try:
            expansion.adapters[label].select(scene, frames, suite.datasets[index[label]].sampling)
        except (ValueError, OSError) as err:
            _Field(suite.source, f"datasets[{index[label]}].frames", None).fail(f"scene {scene!r}, {'all' if frames is None else frames} frames: {err}")


def _build_adapter(spec: DatasetSpec, f: _Field) -> DatasetAdapter:
    try:
        return DATASETS.get(spec.name)(root=spec.root_path, **spec.adapter_options)
    except (ValueError, TypeError, OSError) as err:
        f.fail(f"cannot open dataset {spec.name!r}: {err}")


def _resolve_scenes(spec: DatasetSpec, adapter: DatasetAdapter, f: _Field) -> list[str]:
    try:
        available = adapter.scenes()
    except (ValueError, OSError) as err:
        f.at("root").fail(f"cannot list the scenes of {spec.name!r}: {err}")
    if not available:
        f.at("root").fail(f"dataset {spec.name!r} has no scenes there", "a root that holds at least one scene")
    if spec.scenes == "all":
        return list(available)
    if isinstance(spec.scenes, int):
        if spec.scenes > len(available):
            f.at("scenes").fail(f"asked for {spec.scenes} scenes, {spec.name!r} has {len(available)}", f"1 .. {len(available)}")
        return list(available[: spec.scenes])
    known = set(available)
    for k, scene in enumerate(spec.scenes):
        if scene not in known:
            shown = ", ".join(available[:10]) + (f", ... ({len(available)} in all)" if len(available) > 10 else "")
            f.at(f"scenes[{k}]").fail(f"unknown scene {scene!r}", shown)
    return list(spec.scenes)


def _check_distinct(cells: list[Cell], source: str) -> None:
    seen: dict[str, str] = {}
    for cell in cells:
        if cell.identity in seen:
            raise SuiteError(f"{source}: cells {seen[cell.identity]} and {cell.cell_id} measure the same thing; remove one entry or change its options")
        seen[cell.identity] = cell.cell_id
