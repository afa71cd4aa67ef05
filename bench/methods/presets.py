"""Named methods (presets) and their resolution into an attention plan for one model.

A preset declares its parameters (with published defaults, some per model family) and how the
resolved parameters assign operators to global layers. Suites and `-p key=value` overrides may set
any declared parameter; anything else is an error that lists what the preset accepts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from bench.methods.block_sparse import IMPLEMENTATIONS
from bench.methods.kernels import KERNEL_CHOICES
from bench.methods.params import Param, boolean, choice, fraction, grid, integer, layer_set, sigma, thresholds
from bench.methods.layout import LayerRule
from bench.methods.plan import Plan
from bench.registry import Registry

if TYPE_CHECKING:
    from bench.models.base import ModelTraits  # what a model declares of itself (methods never import models)


class MethodNotApplicable(ValueError):
    """A preset that does not apply to this model family (e.g. `vggt` on pi3): the cell is skipped."""


def early_layers(traits: ModelTraits) -> str:
    """The published t_early of the model's family, scaled to models with fewer global layers (the
    tiny test models)."""
    if not traits.published_global_layers:
        return "none"
    count = int(traits.early_global_layers * traits.num_global_layers / traits.published_global_layers + 0.5)
    return f"0-{count - 1}" if count else "none"


Build = Callable[[dict[str, Any], int], list[LayerRule]]


class Preset:
    """A named method: parameters with defaults, and the rules they produce for a model."""

    def __init__(self, name: str, params: dict[str, Param], build: Build, families: tuple[str, ...] | None = None) -> None:
        self.name, self.params, self.build, self.families = name, {**params, "kernel": KERNEL}, build, families

    def settings(self, traits: ModelTraits, overrides: dict[str, Any]) -> dict[str, Any]:
        """Every parameter, typed: the override where given, else the default for this model."""
        unknown = ", ".join(map(repr, sorted(set(overrides) - set(self.params))))
        if unknown and list(self.params) == ["kernel"]:
            raise ValueError(f"method {self.name} takes no parameters other than kernel, got {unknown}")
        if unknown:
            raise ValueError(f"method {self.name} has no parameter {unknown}; allowed: {', '.join(self.params)}")
        settings = {}
        for key, param in self.params.items():
            value = overrides[key] if key in overrides else param.default_for(traits)
            try:
                settings[key] = param.parse(value)
            except ValueError as error:
                raise ValueError(f"method {self.name}: parameter {key}={value!r}: {error}") from None
        return settings

    def __call__(self, traits: ModelTraits, **overrides: Any) -> Plan:
        family, layers = traits.family, traits.num_global_layers
        if self.families is not None and family not in self.families:
            raise MethodNotApplicable(f"method {self.name} applies to {', '.join(self.families)} models, not {family}")
        settings = self.settings(traits, overrides)
        if settings.get("keep_reference") and traits.reference_frame is None and layers:
            raise ValueError(f"method {self.name}: keep_reference=true, but {family} models have no reference frame")
        try:
            rules = self.build(settings, layers)
        except ValueError as error:
            raise ValueError(f"method {self.name}: {error}") from None
        return Plan(self.name, family, layers, rules, kernel=settings["kernel"], settings=settings)


def _pick(settings: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: settings[name] for name in names}


KERNEL = Param(choice(KERNEL_CHOICES), "auto", "exact-attention kernel of every operator: " + ", ".join(KERNEL_CHOICES))
FRAME_LAYERS = Param(layer_set, early_layers, "global layers run as frame attention (default: the first t_early)")
ALL_LAYERS = Param(layer_set, "all", "global layers the operator replaces; the others stay dense")

AVGGT_PARAMS = {
    "frame_layers": FRAME_LAYERS,
    "dense_layers": Param(layer_set, "none", "global layers kept dense; all others run subsample"),
    "sigma": Param(sigma, "auto", "patch subsampling: auto, 1, 2, 4, 6, 9 (windows 1x1, 1x2, 2x2, 2x3, 3x3)"),
    "grid": Param(grid, None, "explicit window rows x cols (e.g. 2x3); overrides sigma"),
    "sigma_thresholds": Param(thresholds, "30,150", "auto sigma: 2 below the first frame count, 4 below the second, else 9"),
    "keep_reference": Param(boolean, lambda traits: traits.reference_frame is not None, "keep the reference frame whole"),
    "diagonal": Param(boolean, True, "each query also attends to its own (dropped) key"),
    "mean": Param(boolean, True, "one extra key/value: the mean of the dropped patches"),
    "mean_log_count": Param(boolean, False, "add log(number dropped) to the mean key's score"),
}
SUBSAMPLE_PARAMS = ("sigma", "grid", "sigma_thresholds", "keep_reference", "diagonal", "mean", "mean_log_count")


def _avggt_rules(settings: dict[str, Any], n: int) -> list[LayerRule]:
    frame = settings["frame_layers"].indices(n, "frame_layers")
    kept_dense = settings["dense_layers"].indices(n, "dense_layers")
    rest = tuple(i for i in range(n) if i not in frame and i not in kept_dense)
    return [
        LayerRule("frame", frame),
        LayerRule("dense", kept_dense),
        LayerRule("subsample", rest, _pick(settings, *SUBSAMPLE_PARAMS)),
    ]


def _g2f_rules(settings: dict[str, Any], n: int) -> list[LayerRule]:
    return [LayerRule("frame", settings["frame_layers"].indices(n, "frame_layers"))]


def _block_sparse_params(ratio: float) -> dict[str, Param]:
    return {
        "layers": ALL_LAYERS,
        "sparse_ratio": Param(fraction(0.0, 1.0), ratio, "keep at least (1 - sparse_ratio) of the key blocks"),
        "cdf_threshold": Param(fraction(0.0, 1.0), 0.7, "keep key blocks until their pooled probability reaches this"),
        "implementation": Param(choice(IMPLEMENTATIONS), "auto", "flex (CUDA default) or masked (reference, CPU default)"),
    }


def _block_sparse_rules(settings: dict[str, Any], n: int) -> list[LayerRule]:
    params = _pick(settings, "sparse_ratio", "cdf_threshold", "implementation")
    return [LayerRule("block_sparse", settings["layers"].indices(n, "layers"), params)]


MERGE_PARAMS = {
    "layers": ALL_LAYERS,
    "ratio": Param(fraction(0.0, 1.0), 0.9, "fraction of all tokens merged away (at most every mergeable one)"),
    "protected": Param(fraction(0.0, 1.0, include_high=False), 0.1, "fraction of tokens never merged, by fixed stride"),
    "seed": Param(integer, 0, "seed of the random merge targets"),
}


def _merge_rules(settings: dict[str, Any], n: int) -> list[LayerRule]:
    return [LayerRule("merge", settings["layers"].indices(n, "layers"), _pick(settings, "ratio", "protected", "seed"))]


def _all_dense(settings: dict[str, Any], n: int) -> list[LayerRule]:
    return [LayerRule("dense", tuple(range(n)))]


METHODS: Registry = Registry("method")


def _register(preset: Preset, help: str) -> None:
    METHODS.register(preset.name, preset, help=help)


_register(Preset("dense", {}, _all_dense), "exact softmax attention over all tokens in every global layer")
_register(Preset("vggt", {}, _all_dense, ("vggt", "oracle")), "VGGT as published: dense global attention")
_register(Preset("pi3", {}, _all_dense, ("pi3", "oracle")), "pi3 as published: dense global attention")
_register(Preset("g2f", {"frame_layers": FRAME_LAYERS}, _g2f_rules), "AVGGT step 1 only: the early global layers as frame attention")
_register(Preset("avggt", AVGGT_PARAMS, _avggt_rules), "AVGGT: early global layers frame attention, the rest subsampled")
_register(Preset("sparse-vggt-50", _block_sparse_params(0.5), _block_sparse_rules), "block-sparse global attention, sparse_ratio 0.5")
_register(Preset("sparse-vggt-75", _block_sparse_params(0.75), _block_sparse_rules), "block-sparse global attention, sparse_ratio 0.75")
_register(Preset("fastvggt", MERGE_PARAMS, _merge_rules), "FastVGGT: token merging in every global layer, ratio 0.9")


def resolve_plan(name: str, params: dict[str, Any], traits: ModelTraits) -> Plan:
    """The plan of preset `name` with `params` overrides (strings or typed values), for a model with `traits`."""
    return METHODS.get(name)(traits, **params)


def describe_method(name: str, traits: ModelTraits, frames: int | None = None, params: dict[str, Any] | None = None) -> dict:
    """A preset's plan for a model with `traits` with its defaults or `params`: what `avggt-bench
    list methods` shows (for the released model of the first family the preset applies to)."""
    return METHODS.get(name)(traits, **(params or {})).describe(frames)


def method_summary(name: str, traits: ModelTraits) -> str:
    """One line for `avggt-bench list methods`: the preset's layer ranges, operators and parameters."""
    described = describe_method(name, traits)
    groups = []
    for group in described["layers"]:
        params = ", ".join(f"{key}={value}" for key, value in group["params"].items())
        groups.append(f"{group['layers']} {group['operator']}" + (f" ({params})" if params else ""))
    return f"{described['family']}: " + "; ".join(groups)
