"""Dataset adapters: native formats on disk → `Sequence` (datasets_adapters.sequence)."""

from datasets_adapters.sequence import Sequence

__all__ = ["Sequence"]
