"""Transformer building blocks shared by VGGT and pi3, one concept per file."""

from bench.models.layers.attention import Attend, Attention, sdpa
from bench.models.layers.block import Block
from bench.models.layers.dinov2 import DinoVisionTransformer, interpolate_pos_embed
from bench.models.layers.layer_scale import LayerScale
from bench.models.layers.mlp import Mlp
from bench.models.layers.patch_embed import PatchEmbed
from bench.models.layers.rope import RopeTable, grid_positions, rope_table

__all__ = [
    "Attend",
    "Attention",
    "Block",
    "DinoVisionTransformer",
    "LayerScale",
    "Mlp",
    "PatchEmbed",
    "RopeTable",
    "grid_positions",
    "interpolate_pos_embed",
    "rope_table",
    "sdpa",
]
