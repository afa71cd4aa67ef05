"""A plugin for the distributed tests: an oracle whose worker process dies (SIGKILL) in a chosen cell."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from bench.models import MODELS
from bench.models.oracle import OracleModel


class DyingOracle(OracleModel):
    """The oracle, except that on a sequence of `die_at` frames it kills its own process: once
    (the first time, leaving `die_once` behind as the mark), or every time when `die_once` is empty."""

    def __init__(self, weights: str = "none", *, die_at: int = 0, die_once: str = "", **options) -> None:
        super().__init__(weights, **options)
        self.die_at, self.die_once = die_at, die_once

    def run(self, images, plan=None, sequence=None):
        if sequence is not None and sequence.num_frames == self.die_at:
            mark = Path(self.die_once) if self.die_once else None
            if mark is None or not mark.exists():
                if mark is not None:
                    mark.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        return super().run(images, plan, sequence)


MODELS.register("t-dying-oracle", DyingOracle, help="test plugin: an oracle that kills its worker in one cell")
