"""What every model in the harness is: a module that maps images to a `Prediction`.

The runner times `BenchModel.run` (the forward pass: backbone and heads) and converts the raw
outputs with `to_prediction` outside the timed region.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from bench.models.graphs import CapturedForward
from bench.registry import Registry
from bench.stages import compile_stages

if TYPE_CHECKING:
    from bench.methods.layout import AttentionPlan
    from datasets_adapters.sequence import Sequence


@dataclass
class Prediction:
    """A model's output in the harness conventions (numpy, one sequence, no batch axis)."""

    extrinsics: np.ndarray  # (S, 3, 4) world-to-camera, OpenCV axes
    intrinsics: np.ndarray  # (S, 3, 3) pixels of the model's input images
    depth: np.ndarray | None = None  # (S, H, W)
    depth_conf: np.ndarray | None = None  # (S, H, W)
    world_points: np.ndarray | None = None  # (S, H, W, 3)
    world_points_conf: np.ndarray | None = None  # (S, H, W)
    raw: dict[str, np.ndarray] = field(default_factory=dict)  # the model's own outputs, by name


@dataclass(frozen=True)
class WeightsInfo:
    """Where the weights came from; recorded in every result row."""

    id: str  # a path, a Hugging Face id, or "random"
    sha256: str | None  # None for random weights
    random: bool

    def as_row(self) -> dict[str, Any]:
        return {"weights": self.id, "weights_sha256": self.sha256, "weights_random": self.random}


@dataclass(frozen=True)
class ModelTraits:
    """What the harness needs to know of a model before loading it: what its class declares."""

    family: str
    num_global_layers: int
    reference_frame: int | None
    early_global_layers: int
    published_global_layers: int
    preprocess_mode: str | None
    default_weights: str | None


class BenchModel(nn.Module):
    """Base class of the harness's models.

    A model family declares itself here, once, in class attributes (the methods, the suite and
    the weights loader read them through `traits` and `checkpoint_filter`), and implements
    `forward` and `to_prediction`.
    """

    family: str = ""  # "vggt", "pi3", "oracle": chooses the method presets that apply
    num_global_layers: int = 0  # global-attention layers the attention plan addresses
    reference_frame: int | None = None  # frame the model treats as the world frame, if any
    early_global_layers: int = 0  # AVGGT's t_early as published for this family, in the released model's global layers
    published_global_layers: int = 0  # global layers of the released model (t_early scales to smaller configurations)
    preprocess_mode: str | None = None  # default preprocessing (bench.preprocess), None = as given
    default_weights: str | None = None  # the released checkpoint's Hugging Face id

    @classmethod
    def checkpoint_filter(cls, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
        """Map a released checkpoint's state dict onto this model's keys (timm's checkpoint filter);
        everything it returns must then load strictly. Default: as it is."""
        return state

    @property
    def traits(self) -> ModelTraits:
        return ModelTraits(
            self.family, self.num_global_layers, self.reference_frame, self.early_global_layers,
            self.published_global_layers, self.preprocess_mode, self.default_weights,
        )  # fmt: skip

    def __init__(self, cuda_graph_frames: int = 0) -> None:
        super().__init__()
        self.weights_info = WeightsInfo(id="random", sha256=None, random=True)
        self.compiled = False  # whether forward runs code that its first call at a new size compiles
        self._primed: set[tuple[Any, ...]] = set()
        self.cuda_graph_frames = cuda_graph_frames  # forwards of up to this many frames on a GPU run as a captured CUDA graph
        self._captured: tuple["AttentionPlan | None", CapturedForward] | None = None  # the one graph kept

    def compile_stages(self) -> None:
        """Run the memory-bound stages of every block and head compiled (`bench.stages`)."""
        compile_stages(self)
        self.compiled = True

    def prime(self, images: torch.Tensor, plan: "AttentionPlan | None" = None) -> None:
        """Do outside the timed region what a first forward at this size would do inside it, and
        start the plan's observations afresh for the forwards to come. Compile: one two-frame
        forward per image size, device and plan (plans compile stages of their own); nothing for
        eager models. Compiled code is general in sizes from 2 up; a size of exactly 1 (a last
        chunk of one frame) compiles once more, in whichever forward first meets it. Then, where
        these images run as a CUDA graph (`cuda_graph_frames`), capture it."""
        key = (tuple(images.shape[-2:]), images.device, plan)  # plans hash by identity
        if self.compiled and key not in self._primed:
            with torch.inference_mode():  # the mode the timed forwards run in (compiled code guards on it)
                self(images[..., :2, :, :, :], plan=plan)
            self._primed.add(key)
        if plan is not None:
            plan.reset_observations()
        if self._runs_as_graph(images, plan):
            self._graph_for(images, plan)

    def queue(self, images: torch.Tensor, plan: "AttentionPlan | None" = None) -> dict[str, torch.Tensor]:
        """The part of the forward that never waits on the host (what a CUDA graph captures):
        all of it, unless the model moves a last step into `finish`."""
        return self(images, plan=plan)

    def finish(self, queued: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The forward's outputs from `queue`'s: the steps that wait on the host (none by default)."""
        return queued

    def run(self, images: torch.Tensor, plan: "AttentionPlan | None" = None, sequence: "Sequence | None" = None) -> dict[str, torch.Tensor]:
        """The timed call. `sequence` is there for models that read ground truth (the oracle).
        Outputs of a forward run as a CUDA graph stay valid until the model's next call."""
        if self._runs_as_graph(images, plan):
            return self.finish(self._graph_for(images, plan)(images))
        self._captured = None  # a graph's memory is not held through forwards that do not use it
        return self(images, plan=plan)

    def graph_peak_gib(self, images: torch.Tensor, plan: "AttentionPlan | None") -> float | None:
        """The peak memory of the forward that `run(images, plan)` replays (None if it replays
        none): the allocator's peak over replays alone misses the graph's own tensors."""
        if not self._runs_as_graph(images, plan) or self._captured is None:
            return None
        return self._captured[1].peak_bytes / 2**30

    def _runs_as_graph(self, images: torch.Tensor, plan: "AttentionPlan | None") -> bool:
        return captures_on(images.device) and images.shape[-4] <= self.cuda_graph_frames and (plan is None or plan.capturable)

    def _graph_for(self, images: torch.Tensor, plan: "AttentionPlan | None") -> CapturedForward:
        """The captured forward of `plan` at `images`' shape: the one kept, or a new capture."""
        if self._captured is None or self._captured[0] is not plan or not self._captured[1].matches(images):
            self._captured = None  # free the old graph before capturing the next
            with torch.inference_mode():
                self._captured = (plan, CapturedForward(lambda x: self.queue(x, plan=plan), images))
        return self._captured[1]

    def to_prediction(self, raw: dict[str, torch.Tensor]) -> Prediction:
        raise NotImplementedError


def captures_on(device: torch.device) -> bool:
    """Whether forwards on `device` can run as CUDA graphs."""
    return device.type == "cuda"


MODELS: Registry = Registry("model")


def create_model(name: str, weights: str = "random", **options: Any) -> BenchModel:
    """Build registered model `name` with `weights` (a local file, a cached Hugging Face id, or "random")."""
    return MODELS.get(name)(weights=weights, **options)


def meta_model(name: str, **options: Any) -> BenchModel:
    """Registered model `name` with `options`, built with random weights on the meta device (no
    memory, no weights read) to read its traits and parameter names; a factory that cannot be
    built there is built for real."""
    factory = MODELS.get(name)
    try:
        with torch.device("meta"):
            return factory(weights="random", **options)
    except Exception:  # not meta-safe (e.g. it reads a tensor's value while building)
        return factory(weights="random", **options)


def model_traits(name: str, **options: Any) -> ModelTraits:
    """The traits of registered model `name` with `options` (from a `meta_model`)."""
    return meta_model(name, **options).traits


def published_families() -> list[str]:
    """The families with a released model registered (vggt, pi3), in registry order."""
    families = [traits.family for traits in map(model_traits, MODELS) if traits.num_global_layers == traits.published_global_layers and traits.num_global_layers]
    return list(dict.fromkeys(families))


def published_traits(family: str) -> ModelTraits:
    """The traits of the released model of `family` (the registered one whose global layers are the
    published count), for showing what a method does to it."""
    for name in MODELS:
        traits = model_traits(name)
        if traits.family == family and traits.num_global_layers == traits.published_global_layers:
            return traits
    raise ValueError(f"no registered model is the released {family!r} model")
