"""Reading the files of native datasets, each failure turned into one `DatasetError` naming the file.

Adapters read images, 16-bit depth PNGs, text matrices and (gzip) JSON only through these
functions, so a truncated or malformed file always fails the same way, with its path in the
message, instead of as a traceback from deep inside PIL, numpy or json.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from datasets_adapters.base import DatasetError

_UINT16_MODES = ("I;16", "I;16L", "I;16B", "I")


def wxh(shape_hw: tuple[int, ...]) -> str:
    """An (H, W, ...) shape as "WxH", the way image sizes are usually written."""
    return f"{shape_hw[1]}x{shape_hw[0]}"


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: missing folder ({what})")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: missing file ({what})")
    return path


def _open_image(path: Path) -> Image.Image:
    """Open and fully decode an image, so truncation is found here and not later."""
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"{path}: cannot decode image ({err})") from None
    return image


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file, read from its header only."""
    try:
        with Image.open(path) as image:
            w, h = image.size
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing file") from None
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"{path}: cannot read image header ({err})") from None
    return h, w


def read_rgb(path: Path, size_hw: tuple[int, int] | None = None) -> np.ndarray:
    """An image as float32 (3, H, W) in [0, 1]; resized (bicubic, antialiased) to `size_hw` if given."""
    image = _open_image(path).convert("RGB")
    if size_hw is not None and image.size != (size_hw[1], size_hw[0]):
        image = image.resize((size_hw[1], size_hw[0]), Image.Resampling.BICUBIC)
    hwc = np.asarray(image)
    chw = np.empty((3,) + hwc.shape[:2], dtype=np.float32)  # one pass, straight into channel-first order
    np.divide(hwc.transpose(2, 0, 1), np.float32(255.0), out=chw)
    return chw


def read_uint16_png(path: Path) -> np.ndarray:
    """A single-channel 16-bit PNG as uint16 (H, W), bits preserved exactly."""
    image = _open_image(path)
    if image.mode not in _UINT16_MODES:
        raise DatasetError(f"{path}: expected a 16-bit single-channel PNG, got PIL mode {image.mode!r}")
    arr = np.asarray(image)
    if image.mode == "I" and (arr.min(initial=0) < 0 or arr.max(initial=0) > 0xFFFF):
        raise DatasetError(f"{path}: values outside the 16-bit range")
    return np.array(arr, dtype=np.uint16)  # a writable, native-order copy


def read_uint8_png(path: Path, what: str = "mask") -> np.ndarray:
    """An 8-bit single-channel image as uint8 (H, W), values as stored (a mask whose threshold matters)."""
    image = _open_image(path)
    if image.mode != "L":
        raise DatasetError(f"{path}: expected an 8-bit single-channel {what} (PIL mode 'L'), got mode {image.mode!r}")
    return np.array(image, dtype=np.uint8)


def read_mask_png(path: Path) -> np.ndarray:
    """A mask image as bool (H, W): any non-zero pixel is set."""
    return np.asarray(_open_image(path).convert("L")) > 0


def read_text(path: Path, what: str | None = None) -> str:
    """A text file whole; missing or unreadable is one `DatasetError` naming it (and `what` it is)."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing file" + (f" ({what})" if what else "")) from None
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read text ({err})") from None


def read_matrix(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A whitespace-separated text matrix as float64; -inf / nan entries are kept as such."""
    text = read_text(path)
    try:
        values = np.array(text.split(), dtype=np.float64)
    except ValueError:
        raise DatasetError(f"{path}: malformed matrix, expected {shape[0]}x{shape[1]} numbers") from None
    if values.size != shape[0] * shape[1]:
        raise DatasetError(f"{path}: malformed matrix, expected {shape[0]}x{shape[1]} = {shape[0] * shape[1]} numbers, found {values.size}")
    return values.reshape(shape)


def read_json(path: Path) -> Any:
    """A JSON file; `.jgz` / `.gz` files are gunzipped first (CO3D's annotation format)."""
    opener = gzip.open if path.suffix in (".jgz", ".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing file") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DatasetError(f"{path}: truncated or corrupt gzip stream ({err}); download the file again") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot read ({err})") from None


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def stack_frames(
    labels: list[str], read: Callable[[int], tuple[np.ndarray, ...]], workers: int | None = None
) -> tuple[np.ndarray, ...]:
    """Call `read(i)` for every frame on a thread pool and stack each returned array over frames.

    Output arrays are allocated once from the first frame's shapes and each frame is written into
    its slot as soon as it is read (1000 frames of 640×480 float32 are 3.7 GB: no second copy, no
    queue of decoded frames). `labels[i]` names frame i in the error when its shapes differ.
    """
    first = read(0)
    out = tuple(np.empty((len(labels),) + a.shape, dtype=a.dtype) for a in first)

    def put(i: int, arrays: tuple[np.ndarray, ...]) -> None:
        for dst, src, ref in zip(out, arrays, first, strict=True):
            if src.shape != ref.shape:
                raise DatasetError(
                    f"{labels[i]}: shape {src.shape} differs from {ref.shape} of the first frame ({labels[0]}); "
                    "frames of one sequence must share a size"
                )
            dst[i] = src

    put(0, first)
    with ThreadPoolExecutor(max_workers=max(1, workers or default_workers())) as pool:
        for _ in pool.map(lambda i: put(i, read(i)), range(1, len(labels))):  # each worker fills its own slot
            pass
    return out
