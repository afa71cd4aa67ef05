"""All four metrics through the real runner: the smoke suite's synthetic scenes and oracle models."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bench.cli import main
from bench.store import read_rows

SMOKE = Path(__file__).resolve().parents[1] / "suites" / "smoke.yaml"


@pytest.mark.slow
def test_every_metric_scores_the_exact_oracle_perfectly_and_the_noisy_one_not(tmp_path):
    suite = yaml.safe_load(SMOKE.read_text())
    suite["models"] = [m for m in suite["models"] if m["name"] == "oracle"]
    suite["methods"] = ["dense"]
    suite["metrics"] = ["pose", "trajectory", "depth", "pointmap"]
    suite["datasets"][0]["frames"] = [8]
    suite["timing"] = {"warmup": 0, "repeats": 1}
    path = tmp_path / "smoke_all_metrics.yaml"
    path.write_text(yaml.safe_dump(suite))
    out = tmp_path / "results"
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    assert rows and all(row["status"] == "ok" for row in rows)
    for row in rows:
        assert not any(key.endswith("_note") for key in row), row
        if row["model"] == "oracle":
            assert row["pose.auc30"] == pytest.approx(100.0)
            assert row["trajectory.ate"] == pytest.approx(0.0, abs=1e-6)
            assert row["depth.abs_rel"] == pytest.approx(0.0, abs=1e-6)
            assert row["pointmap.acc"] == pytest.approx(0.0, abs=1e-6)
            assert row["pointmap.comp"] == pytest.approx(0.0, abs=1e-6)
            assert row["pointmap.nc"] == pytest.approx(1.0, abs=1e-6)
        else:
            assert row["pose.auc30"] < 100.0 and row["trajectory.ate"] > 1e-3
            assert row["depth.abs_rel"] > 1e-3 and row["pointmap.acc"] > 1e-3 and row["pointmap.nc"] < 1.0
