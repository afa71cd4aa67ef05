"""Models: VGGT, pi3 (checkpoint-compatible), the oracle; one registry, one factory."""

from bench.models.base import MODELS, BenchModel, ModelTraits, Prediction, WeightsInfo, create_model, meta_model, model_traits, published_families, published_traits
from bench.models import oracle  # noqa: F401  (registers "oracle")
from bench.models import pi3 as _pi3  # noqa: F401  (registers pi3, pi3-tiny)
from bench.models import vggt as _vggt  # noqa: F401  (registers vggt-1b, vggt-tiny)

__all__ = ["MODELS", "BenchModel", "ModelTraits", "Prediction", "WeightsInfo", "create_model", "meta_model", "model_traits", "published_families", "published_traits"]
