"""Prediction heads that read aggregator tokens."""

from bench.models.heads.camera_head import POSE_ENCODING_DIM, CameraHead
from bench.models.heads.dpt_head import DPTHead

__all__ = ["POSE_ENCODING_DIM", "CameraHead", "DPTHead"]
