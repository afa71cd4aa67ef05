"""Dataset adapters: native formats on disk → `Sequence` (datasets_adapters.sequence)."""

from datasets_adapters.base import DATASETS, DatasetAdapter, DatasetError, create_adapter
from datasets_adapters.sampling import Sampling
from datasets_adapters.sequence import Sequence
from datasets_adapters import co3d, dtu, eth3d, nrgbd, re10k, scannet, seven_scenes, synthetic, tum  # noqa: E402,F401  (each registers itself in DATASETS)

__all__ = ["DATASETS", "DatasetAdapter", "DatasetError", "Sampling", "Sequence", "create_adapter"]
