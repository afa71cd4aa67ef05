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


class BenchModel(nn.Module):
    """Base class of the harness's models.

    Subclasses set the class attributes and implement `forward` and `to_prediction`.
    """

    family: str = ""  # "vggt", "pi3", "oracle": chooses the method presets that apply
    num_global_layers: int = 0  # global-attention layers the attention plan addresses
    reference_frame: int | None = None  # frame the model treats as the world frame, if any
    preprocess_mode: str | None = None  # default preprocessing (bench.preprocess), None = as given

    def __init__(self) -> None:
        super().__init__()
        self.weights_info = WeightsInfo(id="random", sha256=None, random=True)
        self.compiled = False  # whether forward runs code that its first call at a new size compiles
        self._primed: set[tuple[Any, ...]] = set()

    def compile_stages(self) -> None:
        """Run the memory-bound stages of every block and head compiled (`bench.stages`)."""
        compile_stages(self)
        self.compiled = True

    def prime(self, images: torch.Tensor, plan: "AttentionPlan | None" = None) -> None:
        """Do outside the timed region what a first forward at this image size would do inside it:
        compile. One two-frame forward per image size, device and plan (plans compile stages of
        their own); nothing for eager models. Compiled code is general in sizes from 2 up; a size
        of exactly 1 (a last chunk of one frame) compiles once more, in whichever forward first meets it."""
        key = (tuple(images.shape[-2:]), images.device, plan)  # plans hash by identity
        if self.compiled and key not in self._primed:
            with torch.inference_mode():  # the mode the timed forwards run in (compiled code guards on it)
                self(images[..., :2, :, :, :], plan=plan)
            self._primed.add(key)

    def run(self, images: torch.Tensor, plan: "AttentionPlan | None" = None, sequence: "Sequence | None" = None) -> dict[str, torch.Tensor]:
        """The timed call. `sequence` is there for models that read ground truth (the oracle)."""
        return self(images, plan=plan)

    def to_prediction(self, raw: dict[str, torch.Tensor]) -> Prediction:
        raise NotImplementedError


MODELS: Registry = Registry("model")


def create_model(name: str, weights: str = "random", **options: Any) -> BenchModel:
    """Build registered model `name` with `weights` (a local file, a cached Hugging Face id, or "random")."""
    return MODELS.get(name)(weights=weights, **options)
