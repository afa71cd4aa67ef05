"""The end-to-end protocol vectors through the runner: native-format data written from the vectors,
a model that answers with the vectors' predictions, `avggt-bench run` with the protocol named on the
dataset entry, then the report's protocol table, compared with the official scripts' numbers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from bench.cli import main
from bench.models import MODELS, BenchModel, Prediction, WeightsInfo
from bench.protocols import PROTOCOLS
from bench.protocols.published import PI3_CO3D_CATEGORIES
from bench.report import load_results, protocol_tables
from bench.store import read_raw, read_rows
from tests.protocol_vectors import load, tally

FLIP_XY = np.diag([-1.0, -1.0, 1.0])


class ReplayModel(BenchModel):
    """Answers each frame with a stored world-to-camera pose (the official scripts' stub model)."""

    family = "oracle"

    def __init__(self, weights: str = "none", predictions: dict | None = None) -> None:
        super().__init__()
        self.weights_info = WeightsInfo(id="none", sha256=None, random=False)  # real answers, not random weights
        self.predictions = predictions or {}

    def run(self, images, plan=None, sequence=None):
        poses = np.stack([self.predictions[(sequence.scene, frame)] for frame in sequence.frame_ids])
        return {"extrinsics": torch.from_numpy(poses), "intrinsics": torch.from_numpy(sequence.intrinsics)}

    def to_prediction(self, raw):
        return Prediction(extrinsics=raw["extrinsics"].numpy(), intrinsics=raw["intrinsics"].numpy())


def replay(register, predictions: dict) -> str:
    register(MODELS, "t_replay", lambda weights="none": ReplayModel(weights, predictions))
    return "t_replay"


def run_suite(tmp_path: Path, dataset: dict) -> tuple[Path, pd.DataFrame]:
    suite = {
        "name": "e2e",
        "models": [{"name": "t_replay", "weights": "none"}],
        "methods": ["dense"],
        "datasets": [dataset],
        "timing": {"warmup": 0, "repeats": 1},
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    out = tmp_path / "results"
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, load_results(out)


def tiny_image(path: Path, size_wh: tuple[int, int] = (16, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size_wh[1], size_wh[0], 3), 128, dtype=np.uint8)).save(path, format="JPEG" if path.suffix == ".jpg" else "PNG")


# -- CO3D ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def co3d(tmp_path_factory):
    """VGGT's prepared annotations (one <category>_test.jgz per category, sequences and frames in the
    vector's file order; empty files for the categories the vector has no sequence of) and images."""
    data = load("co3d_e2e.npz")
    root, annotations = tmp_path_factory.mktemp("co3d"), tmp_path_factory.mktemp("co3d_annotations")
    files: dict[str, dict[str, list]] = {category: {} for category in PI3_CO3D_CATEGORIES}
    predictions = {}
    for f, path in enumerate(data["frame_filepath"]):
        seq = int(data["frame_seq_index"][f])
        category, name = str(data["seq_category"][seq]), str(data["seq_names"][seq])
        entry = {"filepath": str(path), "R": data["frame_R_pt3d"][f].tolist(), "T": data["frame_T_pt3d"][f].tolist(), "focal_length": [2.0, 2.0], "principal_point": [0.0, 0.0]}
        files[category].setdefault(name, []).append(entry)
        tiny_image(root / str(path))
        predictions[(f"{category}/{name}", str(int(Path(str(path)).stem.removeprefix("frame"))))] = data["frame_pred_w2c"][f]
    for category, sequences in files.items():
        with gzip.open(annotations / f"{category}_test.jgz", "wt", encoding="utf-8") as handle:
            json.dump(sequences, handle)
    frame_lists = {str(data["seq_names"][s]): [str(p) for p, i in zip(data["frame_filepath"], data["frame_seq_index"]) if i == s] for s in range(len(data["seq_names"]))}
    return root, annotations, predictions, frame_lists, data


def frame_index(frame_lists: dict, scene: str, frame_id: str) -> int:
    """The index into the sequence's file frame list of a frame id (its frame number)."""
    return [int(Path(p).stem.removeprefix("frame")) for p in frame_lists[scene.split("/")[1]]].index(int(frame_id))


def test_vggt_co3d_end_to_end(tmp_path, register, co3d):
    root, annotations, predictions, frame_lists, data = co3d
    replay(register, predictions)
    out, df = run_suite(tmp_path, {"name": "co3d", "root": str(root), "protocol": "vggt-co3d", "options": {"annotations": str(annotations)}})
    worst = tally("vggt-co3d")
    # The sequences scored, in the order the seed-0 stream visits them (by name; filtered ones draw nothing).
    rows = sorted(read_rows(out), key=lambda r: r["scene"])
    assert [r["scene"].split("/")[1] for r in rows] == list(data["vggt__evaluated_seq"])
    assert all(r["status"] == "ok" and r["protocol_overrides"] is None and r["protocol_version"] == 1 for r in rows)
    for k, r in enumerate(rows):
        raw = read_raw(out, r)
        np.testing.assert_array_equal([frame_index(frame_lists, r["scene"], i) for i in raw["frame_ids"]], data["vggt__ids"][k])
        worst.check(raw["pose.rot_err_deg"], data["vggt__rot_err_deg"][k], what=f"{r['scene']} rotation")
        worst.check(raw["pose.trans_err_deg"], data["vggt__trans_err_deg"][k], what=f"{r['scene']} translation")
    [(title, table)] = protocol_tables(df, out)
    assert title.startswith("vggt-co3d v1 · co3d (test) · 10 frames") and table["comparable"].tolist() == ["yes"]
    thresholds = list(data["vggt__auc_thresholds"])
    worst.check(table[[f"AUC@{t}" for t in thresholds]].iloc[0].to_numpy() / 100, data["vggt__mean_auc"], rel=1e-12, what="mean AUC")
    assert table["scenes"].iloc[0] == f"{len(rows)}/{len(rows)}"


def test_pi3_co3d_end_to_end(tmp_path, register, co3d):
    root, annotations, predictions, frame_lists, data = co3d
    replay(register, predictions)
    out, df = run_suite(tmp_path, {"name": "co3d", "root": str(root), "protocol": "pi3-relpose-angular", "options": {"annotations": str(annotations)}})
    worst = tally("pi3-relpose-angular")
    rows = read_rows(out)
    assert [r["scene"].split("/")[1] for r in rows] == list(data["pi3__map_seq"]) == list(data["pi3__eval_seq_order"])
    for k, r in enumerate(rows):
        raw = read_raw(out, r)
        np.testing.assert_array_equal([frame_index(frame_lists, r["scene"], i) for i in raw["frame_ids"]], data["pi3__map_ids"][k])
        assert raw["pose.rot_err_deg"].dtype == np.float32  # π³'s loaders hold poses in float32
        worst.check(raw["pose.rot_err_deg"], data["pi3__rot_err_deg"][k], rel=1e-4, what=f"{r['scene']} rotation")
        worst.check(raw["pose.trans_err_deg"], data["pi3__trans_err_deg"][k], rel=1e-4, what=f"{r['scene']} translation")
    [(_, table)] = protocol_tables(df, out)
    keys = [str(k).replace("_", "@") for k in data["pi3__metric_keys"]]
    assert keys == [c.label for c in PROTOCOLS.get("pi3-relpose-angular").columns]
    worst.check(table[keys].iloc[0].to_numpy(), data["pi3__metric_percent"], rel=1e-12, what="π³ CO3D table")
    assert table["comparable"].tolist() == ["yes"]


# -- RealEstate10K -------------------------------------------------------------------------------------


def test_pi3_re10k_end_to_end(tmp_path, register):
    data = load("re10k_e2e.npz")
    root = tmp_path / "re10k"
    k = data["intrinsics"]
    width, height = 640, 360
    normalised = [float(k[0, 0] / width), float(k[1, 1] / height), float((k[0, 2] + 0.5) / width), float((k[1, 2] + 0.5) / height)]
    predictions, start = {}, 0
    for name, count in zip(data["seq_names"], data["seq_num_frames"]):
        name, count = str(name), int(count)
        lines = [f"https://www.youtube.com/watch?v={name}"]
        for i in range(count):
            w2c = data["gt_w2c"][start + i]
            lines.append(" ".join([str(1000 * i), *map(repr, normalised), "0", "0", *map(repr, w2c.ravel().tolist())]))
            tiny_image(root / name / "images" / f"{i:04d}.png", (width, height))
            predictions[(name, f"{i:04d}")] = data["pred_w2c"][start + i]
        (root / "metadata" / "test").mkdir(parents=True, exist_ok=True)
        (root / "metadata" / "test" / f"{name}.txt").write_text("\n".join(lines) + "\n")
        start += count
    replay(register, predictions)
    # Only these 4 sequences exist here (the protocol walks its 1719), so the walk is named as an override.
    out, df = run_suite(tmp_path, {"name": "re10k", "root": str(root), "protocol": "pi3-relpose-angular", "options": {"sequences": [str(n) for n in data["seq_names"]]}})
    worst = tally("pi3-relpose-angular")
    rows = read_rows(out)
    assert [r["scene"] for r in rows] == list(data["pi3__map_seq"])
    assert rows[0]["protocol_overrides"] == {"options": {"sequences": [str(n) for n in data["seq_names"]]}}
    for i, r in enumerate(rows):
        raw = read_raw(out, r)
        np.testing.assert_array_equal([int(f) for f in raw["frame_ids"]], data["pi3__map_ids"][i])
        worst.check(raw["pose.rot_err_deg"], data["pi3__rot_err_deg"][i], rel=1e-4, what=f"{r['scene']} rotation")
        worst.check(raw["pose.trans_err_deg"], data["pi3__trans_err_deg"][i], rel=1e-4, what=f"{r['scene']} translation")
    [(_, table)] = protocol_tables(df, out)
    keys = [str(k).replace("_", "@") for k in data["pi3__metric_keys"]]
    worst.check(table[keys].iloc[0].to_numpy(), data["pi3__metric_percent"], rel=1e-12, what="π³ RealEstate10K table")
    assert table["comparable"].iloc[0] == "no: overrides options"
