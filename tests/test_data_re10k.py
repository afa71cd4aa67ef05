"""RealEstate10K adapter on sequences written in π³'s layout: camera text files and extracted frames."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bench.check_data import check_data
from datasets_adapters import DATASETS, DatasetError, Sampling
from datasets_adapters.check import check_dataset
from tests.native_datasets import check_seen_from, look_at_c2w, orbit_eyes, render_opencv, unproject

SIZES = {"0a1b2c3d4e5f6a7b": (36, 64), "1f2e3d4c5b6a7980": (27, 64)}  # 640×360 and 640×272 shapes, at a tenth


def write_sequence(root, name, hw, frames=4, normalised=(0.9, 1.5, 0.47, 0.53)):
    """A camera file (URL line, then 19 numbers per frame) and the frames cut in line order.
    Returns the c2w poses and the pixel K the adapter must deliver (integer pixel centres)."""
    h, w = hw
    fx, fy, cx, cy = normalised
    k = np.array([[fx * w, 0.0, cx * w - 0.5], [0.0, fy * h, cy * h - 0.5], [0.0, 0.0, 1.0]])
    lines, poses = [f"https://www.youtube.com/watch?v={name}"], []
    for i, eye in enumerate(orbit_eyes(frames)):
        c2w = look_at_c2w(eye)
        poses.append(c2w)
        w2c = np.linalg.inv(c2w)[:3]
        lines.append(" ".join([str(1_000_000 + 33_366 * i), *(repr(v) for v in normalised), "0", "0", *(repr(float(x)) for x in w2c.ravel())]))
        image = root / name / "images" / f"{i:04d}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render_opencv(c2w, k, hw).rgb).save(image)
    (root / "metadata" / "test").mkdir(parents=True, exist_ok=True)
    (root / "metadata" / "test" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return np.stack(poses), k


@pytest.fixture
def re10k(tmp_path):
    truth = {name: write_sequence(tmp_path, name, hw) for name, hw in SIZES.items()}
    return tmp_path, truth


def adapter(root, **options):
    return DATASETS.get("re10k")(root=root, **{"sequences": "all", **options})


def test_cameras_are_the_written_ones_in_pixels_of_non_square_frames(re10k):
    root, truth = re10k
    a = adapter(root)
    assert a.scenes() == sorted(SIZES)
    for name, (c2w, k) in truth.items():
        seq = a.load(name, None, Sampling(kind="first-n"))
        assert seq.frame_ids == ["0000", "0001", "0002", "0003"] and seq.depth is None
        assert seq.images.shape == (4, 3, *SIZES[name])
        np.testing.assert_allclose(seq.extrinsics, np.linalg.inv(c2w)[:, :3], atol=1e-12)
        np.testing.assert_allclose(seq.intrinsics, np.broadcast_to(k, (4, 3, 3)), atol=1e-12)
        assert seq.intrinsics[0, 0, 0] != seq.intrinsics[0, 1, 1]  # fy_n ≠ fx_n on non-square frames


def test_the_cameras_see_the_scene_they_were_rendered_from(re10k):
    """Points of the true scene (ray-cast through the written camera) project with the adapter's
    cameras where every other frame's true camera sees them."""
    root, truth = re10k
    name = "0a1b2c3d4e5f6a7b"
    seq = adapter(root).load(name, None, Sampling(kind="first-n"))
    c2w, k = truth[name]
    depth = np.stack([render_opencv(pose, k, SIZES[name]).depth for pose in c2w])  # RealEstate10K has none: the true scene's
    points, _ = unproject(replace(seq, depth=depth, valid=depth > 0), 0)
    seen, behind = check_seen_from(seq, 2, points, c2w[2], k)
    assert seen > 0.5 and behind < 0.01  # the rest are occluded in frame 2 or leave it


def test_the_named_list_and_short_sequences(re10k, tmp_path):
    root, _ = re10k
    with pytest.raises(DatasetError, match=r"metadata/test/000c3ab189999a83\.txt: missing \(and 1718 more\): 1719 of the 1719 listed"):
        DATASETS.get("re10k")(root=root).scenes()  # the default walk is the protocol's 1719 sequences
    assert adapter(root, sequences=["1f2e3d4c5b6a7980"]).scenes() == ["1f2e3d4c5b6a7980"]
    short = adapter(root, min_frames=5)
    assert short.scenes() == [] and "2 scene(s) with fewer than min_frames=5" in short.notes()[0]
    with pytest.raises(DatasetError, match="sequences='some'"):
        adapter(root, sequences="some")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace(" 0 0 ", " 0 "), r"line 2 has 18 numbers, expected 19"),
        (lambda t: t.replace("0.9", "zero", 1), r"line 2 is not numbers"),
        (lambda t: t.splitlines()[0] + "\n", r"no camera lines"),
    ],
)
def test_malformed_camera_files_name_the_file_and_line(re10k, edit, message):
    root, _ = re10k
    path = root / "metadata/test/0a1b2c3d4e5f6a7b.txt"
    path.write_text(edit(path.read_text()))
    with pytest.raises(DatasetError, match=rf"{path}: {message}"):
        adapter(root).frame_ids("0a1b2c3d4e5f6a7b")


def test_check_data_names_a_missing_frame_and_a_shifted_extraction(re10k):
    root, _ = re10k
    assert check_dataset("re10k", root, {"sequences": "all"}, decode=None).ok
    (root / "0a1b2c3d4e5f6a7b/images/0002.png").unlink()
    extra = root / "1f2e3d4c5b6a7980/images/0004.png"
    extra.write_bytes((root / "1f2e3d4c5b6a7980/images/0000.png").read_bytes())
    report = check_dataset("re10k", root, {"sequences": "all"}, decode=None)
    issues = "\n".join(report.issues())
    assert not report.ok and "0a1b2c3d4e5f6a7b/images/0002.png" in issues and "5 frames for 4 camera lines" in issues
    result = CliRunner().invoke(check_data, ["re10k", str(root), "-o", "sequences=all"])
    assert result.exit_code != 0 and "0002.png" in result.output
