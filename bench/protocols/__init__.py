"""Published evaluation protocols: named, versioned presets that reproduce a paper's table."""

from bench.protocols.base import PROTOCOLS, Column, Protocol, SceneResult, Setting, register_protocol
from bench.protocols import published  # noqa: E402,F401  (registers the published protocols)

__all__ = ["PROTOCOLS", "Column", "Protocol", "SceneResult", "Setting", "register_protocol"]
