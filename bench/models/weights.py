"""Weights for any model: resolve a name to a file, read its state dict, check it, load it strictly.

`weights` is a local `.pt`/`.pth`/`.safetensors` file, a Hugging Face id found in the local cache
(nothing is ever downloaded), or "random" (seeded initialisation, for timing only). The model
class's `checkpoint_filter` maps the file's keys first (VGGT's drops its track head by prefix, with
one warning); every key it keeps must match the model exactly, or one error names the missing,
unexpected and mis-shaped keys.
The file's sha256 is recorded with the model and cached beside the file as `<file>.sha256`.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, TypeVar

import torch
from torch import nn

from bench.models.base import WeightsInfo

HF_FILENAMES = ("model.safetensors", "model.pt")  # tried in this order inside a cached Hugging Face repo
# A key prefix that only one released model family has: names what a mismatched file is.
FAMILY_SIGNATURES = {"VGGT": "aggregator.frame_blocks.", "pi3": "point_decoder."}
_WRAPPER_KEYS = ("model", "state_dict")  # training checkpoints nest the state dict under one of these
_HF_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_LISTED = 8  # keys named per category in an error

M = TypeVar("M", bound=nn.Module)


class WeightsError(ValueError):
    """Weights that cannot be found, read, or matched to the model; the message says which and why."""


CheckpointFilter = Callable[[dict[str, torch.Tensor], str], dict[str, torch.Tensor]]


def build_with_weights(build: Callable[[], M], weights: str, *, seed: int = 0, checkpoint_filter: CheckpointFilter | None = None) -> M:
    """Build a model with `build()` and give it `weights`; the model's `weights_info` records them.

    Random weights are seeded without touching the global RNG, and drawn on the default device
    (`with torch.device(...)`): the same seed gives the same weights on one kind of device. For a
    file the model is built on the meta device and takes the file's tensors (after the model's
    `checkpoint_filter`) as they are, so nothing is initialised twice.
    """
    if weights == "random":
        device = torch.get_default_device()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            model = build()
        model.weights_info = WeightsInfo(id="random", sha256=None, random=True)
        return model
    path = resolve_weights(weights)
    state = read_state_dict(path)
    if checkpoint_filter is not None:
        state = checkpoint_filter(state, str(path))
    with torch.device("meta"):
        model = build()
    check_state_dict(model, state, path)
    model.load_state_dict(state, strict=True, assign=True)
    model.weights_info = WeightsInfo(id=weights, sha256=file_sha256(path), random=False)
    return model


def resolve_weights(weights: str) -> Path:
    """A local file, or the cached file of a Hugging Face id; never downloads."""
    path = Path(weights).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise WeightsError(f"weights {weights!r} is a directory; give the .pt or .safetensors file inside it")
    if _HF_ID.match(weights) and not path.suffix:
        return _cached_hf_file(weights)
    raise WeightsError(f"weights file not found: {weights}; give a local .pt/.safetensors file, a cached Hugging Face id, or 'random'")


def _cached_hf_file(repo_id: str) -> Path:
    from huggingface_hub import constants, try_to_load_from_cache

    for filename in HF_FILENAMES:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return Path(found)
    raise WeightsError(
        f"Hugging Face model {repo_id!r} is not in the local cache ({constants.HF_HUB_CACHE}; looked for {', '.join(HF_FILENAMES)}). "
        f"Nothing is downloaded at run time: fetch it beforehand (`hf download {repo_id} {HF_FILENAMES[0]}`), "
        "point HF_HUB_CACHE at a cache that has it, or pass a local file"
    )


def read_state_dict(path: Path, shapes_only: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file or a torch-saved state dict (unwrapping {'model': ...}).

    With `shapes_only` they come as meta tensors of the file's shapes and dtypes, read from the
    safetensors header or a memory-mapped torch file: a check of a multi-gigabyte file reads
    kilobytes."""
    try:
        if path.suffix == ".safetensors":
            obj = _safetensors_shapes(path) if shapes_only else _safetensors_tensors(path)
        else:
            obj = _torch_load(path, mmap=shapes_only)
    except Exception as err:  # any reader failure means the same thing: not a weights file
        raise WeightsError(f"cannot read {path} as a state dict ({type(err).__name__}: {err})") from None
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        obj = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), obj)
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of parameter names to tensors); got {type(obj).__name__}")
    if shapes_only:
        return {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in obj.items()}
    return dict(obj)


def _safetensors_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")


def _safetensors_shapes(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}


def _torch_load(path: Path, mmap: bool) -> object:
    if mmap:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # a file in torch's legacy (pre-zip) format cannot be memory-mapped
            pass
    return torch.load(path, map_location="cpu", weights_only=True)


def check_weights(model: nn.Module, weights: str, checkpoint_filter: CheckpointFilter | None = None) -> Path:
    """The file `weights` resolves to, after checking that its keys and shapes (after the model's
    `checkpoint_filter`) are exactly `model`'s, without reading its tensors: what a suite can check
    before a run, `model` built on the meta device."""
    path = resolve_weights(weights)
    state = read_state_dict(path, shapes_only=True)
    if checkpoint_filter is not None:
        with warnings.catch_warnings():  # the load itself says what the filter skips
            warnings.simplefilter("ignore")
            state = checkpoint_filter(state, str(path))
    check_state_dict(model, state, path)
    return path


def drop_prefixes(state: dict[str, torch.Tensor], prefixes: tuple[str, ...], source: Path | str) -> dict[str, torch.Tensor]:
    """`state` without keys under `prefixes` (parts of the released model the harness does not use)."""
    kept = {k: v for k, v in state.items() if not k.startswith(prefixes)}
    if len(kept) < len(state):
        names = ", ".join(f"{p}*" for p in prefixes)
        warnings.warn(f"{source}: skipped {len(state) - len(kept)} keys under {names} (not used by this harness)", stacklevel=2)
    return kept


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: Path | str) -> None:
    """Raise one `WeightsError` unless `state` has exactly the model's keys with its shapes."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} (model {expected[k]})" for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if not (missing or unexpected or mismatched):
        return
    problems = [f"{what} ({len(keys)}): {', '.join(keys[:_LISTED])}{', ...' if len(keys) > _LISTED else ''}" for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)) if keys]
    message = f"{source} does not match {type(model).__name__}: " + "; ".join(problems)
    family = _family_of(state)
    if family and family != _family_of(model.state_dict()):
        message += f". This looks like a {family} checkpoint: choose the {family} model for it"
    raise WeightsError(message)


def _family_of(state: Mapping[str, object]) -> str | None:
    return next((name for name, prefix in FAMILY_SIGNATURES.items() if any(k.startswith(prefix) for k in state)), None)


def file_sha256(path: Path) -> str:
    """sha256 of the file's bytes, cached beside it in `<file>.sha256` and trusted while size and mtime hold."""
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cache = path.with_name(path.name + ".sha256")
    try:
        cached = json.loads(cache.read_text())
        if {k: cached.get(k) for k in stamp} == stamp:
            return cached["sha256"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    sha = digest.hexdigest()
    try:
        cache.write_text(json.dumps({**stamp, "sha256": sha}))
    except OSError:
        pass  # a read-only location: the hash is still returned, only not cached
    return sha
