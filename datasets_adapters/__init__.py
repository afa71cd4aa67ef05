"""Dataset adapters: native formats on disk → `Sequence` (datasets_adapters.sequence)."""

from datasets_adapters.base import DATASETS, DatasetAdapter, DatasetError
from datasets_adapters.sampling import Sampling
from datasets_adapters.sequence import Sequence

__all__ = ["DATASETS", "DatasetAdapter", "DatasetError", "Sampling", "Sequence"]
