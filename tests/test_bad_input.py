"""Bad input, tried on purpose: no command deletes a row it was not asked to, every command exits
non-zero when it did not do what was asked, a results folder has one writer, and every user error
is one line naming the file, field or option. Each test names the failure it guards against."""

from __future__ import annotations

import json
from collections import Counter
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_suite, write_suite
from PIL import Image
from safetensors.torch import save_file

from bench.cli import main
from bench.models import MODELS
from bench.models.oracle import OracleModel
from bench.predict import load_image
from bench.report import load_results, summary_rows
from bench.store import ResultStore, read_rows

REPO = Path(__file__).resolve().parent.parent


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_clear_error(result, *fragments: str) -> None:
    """A failed command with one `Error:` line holding every fragment, and no traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and all(f in errors[0] for f in fragments), result.output


@pytest.fixture
def measured(tmp_path, fake_metrics):
    """A finished run of the tiny suite (8 cells) and its suite file."""
    suite = write_suite(tmp_path, tiny_suite())
    out = tmp_path / "out"
    assert invoke("run", suite, "--out", out).exit_code == 0
    return suite, out


# -- 1. data loss ------------------------------------------------------------------------------------


def test_data_loss_fresh_remeasures_only_the_selection_and_deletes_no_row(measured):
    suite, out = measured
    before = {row["cell"]: row for row in read_rows(out)}
    env_before = json.loads((out / "env.json").read_text())
    result = invoke("run", suite, "--out", out, "--fresh", "--only", "oracle/dense/*/orbit/*")
    assert result.exit_code == 0 and "2 cells: 0 already done, recorded 2 ok" in result.output
    after = {row["cell"]: row for row in read_rows(out)}
    assert set(after) == set(before) and len(after) == 8  # nothing lost
    written = Counter(json.loads(line)["cell"] for line in (out / "cells.jsonl").read_text().splitlines())
    assert written == {cell: 2 if cell.startswith("oracle/dense/synthetic/orbit/") else 1 for cell in before}  # old rows stay, superseded
    assert all(after[c] == before[c] for c in after if written[c] == 1)
    assert json.loads((out / "env.json").read_text()).keys() >= env_before.keys()


# -- 2. silent passes --------------------------------------------------------------------------------


def test_silent_pass_compare_fails_when_the_new_set_is_empty(measured, tmp_path):
    _, out = measured
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "cells.jsonl").write_text("")
    one_clear_error(invoke("compare", out, empty), f"{empty / 'cells.jsonl'}: holds no rows yet")


def test_silent_pass_compare_fails_when_no_cell_is_in_common(measured, tmp_path, fake_metrics):
    _, out = measured
    other = tmp_path / "other"
    suite = write_suite(tmp_path, tiny_suite(datasets=[{"name": "synthetic", "options": {"length": 13, "height": 48, "width": 64}, "frames": [3, 6]}]), name="other.yaml")
    assert invoke("run", suite, "--out", other).exit_code == 0
    one_clear_error(invoke("compare", out, other), "no cell of the new results is in the baseline: nothing was compared", "8 baseline cells are missing")


def test_silent_pass_compare_fails_when_baseline_cells_are_missing(measured, tmp_path):
    suite, out = measured
    partial = tmp_path / "partial"
    assert invoke("run", suite, "--out", partial, "--only", "oracle/*").exit_code == 0
    result = invoke("compare", out, partial)
    one_clear_error(result, "4 baseline cells are missing from the new results")
    assert "noisy/dense/synthetic/orbit/3" in result.output  # each missing cell is named
    assert invoke("compare", out, partial, "--allow-missing").exit_code == 0


class Broken(OracleModel):
    """The oracle, except that every forward fails."""

    def run(self, images, plan=None, sequence=None):
        raise RuntimeError("kernel exploded")


def test_silent_pass_run_fails_when_cells_end_in_error(tmp_path, fake_metrics, register):
    register(MODELS, "t_broken", Broken)
    suite = write_suite(tmp_path, tiny_suite(models=[{"name": "t_broken", "weights": "none"}]))
    result = invoke("run", suite, "--out", tmp_path / "out")
    one_clear_error(result, "4 of 4 cells ended in error", "run the same command again to retry them")
    assert [row["status"] for row in read_rows(tmp_path / "out")] == ["error"] * 4  # recorded all the same


# -- 3. no lock ----------------------------------------------------------------------------------------


def test_no_lock_a_second_run_is_refused_naming_the_holder(tmp_path, fake_metrics):
    suite = write_suite(tmp_path, tiny_suite())
    store = ResultStore(tmp_path / "out")
    with store.locked():
        result = invoke("run", suite, "--out", store.directory)
    one_clear_error(result, f"{store.directory} is being written by pid {os.getpid()} on {socket.gethostname()} since ")
    assert not store.cells.exists()  # the refused run measured nothing
    assert invoke("run", suite, "--out", store.directory).exit_code == 0  # released: the next run goes ahead


def test_no_lock_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from bench.store import ResultStore\nwith ResultStore({str(tmp_path)!r}).locked():\n    print('held', flush=True)\n    input()"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(Exception, match=f"being written by pid {holder.pid}"):
        with ResultStore(tmp_path).locked():
            pass
    holder.kill()
    holder.wait()
    with ResultStore(tmp_path).locked():  # taken over at once: the kernel released the dead holder's lock
        assert str(os.getpid()) in (tmp_path / ".lock").read_text()


# -- 4. tracebacks instead of messages -----------------------------------------------------------------


def test_traceback_report_on_an_empty_cells_file(tmp_path):
    (tmp_path / "cells.jsonl").write_text("")
    one_clear_error(invoke("report", tmp_path), "holds no rows yet")


def test_traceback_leaderboard_on_a_missing_or_empty_root(tmp_path):
    result = invoke("leaderboard", tmp_path / "nowhere")
    assert result.exit_code == 2 and "does not exist" in result.output and "Traceback" not in result.output
    one_clear_error(invoke("leaderboard", tmp_path), "no results sets in")
    assert not (tmp_path / "leaderboard.md").exists()


def test_traceback_dataset_option_of_the_wrong_type(tmp_path, fake_metrics):
    data = tiny_suite(datasets=[{"name": "synthetic", "options": {"length": "abc"}, "frames": [3]}])
    suite = write_suite(tmp_path, data)
    for command in ("validate", "run"):
        one_clear_error(invoke(command, suite), f"{suite}: datasets[0].options.length: expected an integer, got 'abc'")
    result = invoke("check-data", "scannet", tmp_path, "-o", "min_frames=abc")
    one_clear_error(result, "dataset 'scannet': option min_frames: expected an integer, got 'abc'")


def test_traceback_model_option_outside_its_values(tmp_path, fake_metrics):
    suite = write_suite(tmp_path, tiny_suite(models=[{"name": "pi3-tiny", "options": {"heads_dtype": "half"}}]))
    for command in ("validate", "run"):
        one_clear_error(invoke(command, suite), f"{suite}: models[0].options.heads_dtype: expected one of 'float32', 'bfloat16', got 'half'")


def test_traceback_predict_on_cuda_without_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(image)
    for device in ("cuda", "cuda:1"):
        result = invoke("predict", "--model", "vggt-tiny", "--weights", "random", "--device", device, "--images", image, "--out", tmp_path / "p.npz")
        one_clear_error(result, "CUDA was asked for but this torch has none")


def test_traceback_corrupt_env_json(measured):
    suite, out = measured
    (out / "env.json").write_text("{not json")
    one_clear_error(invoke("run", suite, "--out", out, "--fresh"), f"{out / 'env.json'}: not valid JSON")


# -- 5. validate passes suites that fail every cell ----------------------------------------------------


def tiny_vggt_state() -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in MODELS.get("vggt-tiny")(weights="random").state_dict().items()}


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_validate_checks_the_weights_file_and_its_keys(tmp_path, fake_metrics, suffix):
    state = tiny_vggt_state()
    good, bad = tmp_path / f"good{suffix}", tmp_path / f"bad{suffix}"
    del state["camera_head.pose_branch.fc2.bias"]
    save = save_file if suffix == ".safetensors" else torch.save
    save(tiny_vggt_state(), str(good))
    save(state, str(bad))

    def suite_with(weights: str) -> Path:
        return write_suite(tmp_path, tiny_suite(models=[{"name": "vggt-tiny", "weights": weights}], metrics=[]))

    assert invoke("validate", suite_with(str(good))).exit_code == 0
    one_clear_error(invoke("validate", suite_with(str(bad))), "models[0].weights:", "does not match VGGT: missing (1): camera_head.pose_branch.fc2.bias")
    one_clear_error(invoke("validate", suite_with(str(tmp_path / f"absent{suffix}"))), "models[0].weights: weights file not found")


def test_validate_refuses_no_weights_on_a_model_with_parameters(tmp_path, fake_metrics):
    suite = write_suite(tmp_path, tiny_suite(models=[{"name": "vggt-tiny", "weights": "none"}]))
    one_clear_error(invoke("validate", suite), "models[0].weights: model 'vggt-tiny' has parameters, so it needs weights")
    assert invoke("validate", write_suite(tmp_path, tiny_suite())).exit_code == 0  # the oracle has none to load


def test_validate_checks_frame_counts_against_the_data(tmp_path, fake_metrics):
    data = tiny_suite(datasets=[{"name": "synthetic", "options": {"length": 5, "height": 48, "width": 64}, "frames": [3, 8]}])
    one_clear_error(invoke("validate", write_suite(tmp_path, data)), "datasets[0].frames: scene 'orbit', 8 frames:", "the sequence has only 5")


def test_validate_checks_metric_option_types(tmp_path):
    suite = write_suite(tmp_path, tiny_suite(metrics=["depth"], metric_options={"depth": {"adam_lr": "fast"}}))
    one_clear_error(invoke("validate", suite), "metric_options.depth.adam_lr: expected a number, got 'fast'")


# -- 6. the report hides missing cells ------------------------------------------------------------------


def test_report_hides_missing_cells_a_row_with_fewer_scenes_than_dense_is_marked(tmp_path, fake_metrics, frame_method):
    suite = write_suite(tmp_path, tiny_suite(methods=["dense", frame_method], models=[{"name": "oracle", "weights": "none"}]))
    out = tmp_path / "out"
    assert invoke("run", suite, "--out", out).exit_code == 0
    lines = (out / "cells.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["cell"] != "oracle/t_frame/synthetic/walk/3"]
    (out / "cells.jsonl").write_text("".join(line + "\n" for line in kept))  # a lost cell
    summary = summary_rows(load_results(out)).set_index(["frames", "method"])
    assert summary.loc[(3, "t_frame"), "scenes"] == "1/2" and summary.loc[(3, "dense"), "scenes"] == "2/2"
    assert summary.loc[(3, "t_frame"), "note"] == "no row for 1 of 2 scenes; not comparable with dense: averages 1 of its 2 scenes"
    assert summary.loc[(6, "t_frame"), "scenes"] == "2/2" and summary.loc[(6, "t_frame"), "note"] == ""
    report = invoke("report", out)
    assert report.exit_code == 0 and "not comparable with dense" in (out / "report.md").read_text()


# -- 7. small ones ---------------------------------------------------------------------------------------


@pytest.fixture
def one_image(tmp_path) -> Path:
    path = tmp_path / "frame.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def predict_args(image: Path, out: Path, *more: str) -> list:
    return ["predict", "--model", "vggt-tiny", "--weights", "random", "--device", "cpu", "--images", image, "--out", out, *more]


def test_small_predict_with_the_oracle_says_it_takes_no_images(one_image, tmp_path):
    result = invoke("predict", "--model", "oracle", "--weights", "none", "--device", "cpu", "--images", one_image, "--out", tmp_path / "p.npz")
    one_clear_error(result, "model 'oracle' does not look at images")
    assert "preprocess mode None" not in result.output


def test_small_check_data_synthetic_needs_no_root(tmp_path):
    result = invoke("check-data", "synthetic", "-o", "length=4")
    assert result.exit_code == 0 and "synthetic (generated)" in result.output, result.output
    one_clear_error(invoke("check-data", "synthetic", tmp_path), "give no root", "no ROOT after `check-data synthetic`")


def test_small_predict_writes_exactly_the_out_path_and_counts_one_image(one_image, tmp_path):
    out = tmp_path / "x.txt"
    result = invoke(*predict_args(one_image, out))
    assert result.exit_code == 0 and f"1 image (518×364) → {out}" in result.output, result.output
    assert out.is_file() and not (tmp_path / "x.txt.npz").exists() and "depth" in np.load(out).files


def test_small_missing_weights_hint_names_the_hf_command(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(tmp_path / "a.png")
    result = invoke("predict", "--model", "vggt-tiny", "--weights", "acme/none", "--device", "cpu", "--images", tmp_path, "--out", tmp_path / "p.npz")
    one_clear_error(result, "`hf download acme/none model.safetensors`")
    assert "huggingface-cli" not in result.output


def test_small_mixed_sizes_warn_and_sixteen_bit_images_keep_their_values(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.full((40, 56, 3), 128, np.uint8)).save(folder / "a.png")
    grey = np.full((30, 56), 32768, np.uint16)  # half grey in 16 bits
    Image.fromarray(grey).save(folder / "b.png")
    assert Image.open(folder / "b.png").mode.startswith("I")
    np.testing.assert_allclose(load_image(folder / "b.png"), 32768 / 65535, rtol=1e-6)  # not saturated to white
    result = invoke(*predict_args(folder, tmp_path / "p.npz"))
    assert result.exit_code == 0, result.output
    assert "warning: the images differ in size (56×30, 56×40); each is resized by mode 'crop' and padded with white" in result.output


def test_small_list_methods_shows_the_plan_for_each_model_family():
    output = invoke("list", "methods").output
    block = output[output.index("\ng2f") : output.index("\navggt ")]
    assert "pi3: 0-9 frame; 10-17 dense" in block and "vggt: 0-8 frame; 9-23 dense" in block


def test_small_predict_device_takes_what_run_takes(one_image, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = invoke(*predict_args(one_image, tmp_path / "p.npz"), "--device", "cuda:0")
    one_clear_error(result, "CUDA was asked for")  # accepted as a device, refused for this build
    result = invoke(*predict_args(one_image, tmp_path / "p.npz"), "--device", "gpu")
    assert result.exit_code == 2 and "unknown device 'gpu'; allowed: cpu, cuda, cuda:N" in result.output


def test_small_readme_puts_method_parameters_on_the_command_that_takes_them():
    readme = (REPO / "README.md").read_text()
    for line in readme.splitlines():
        if " -p " in line and "avggt-bench" in line:
            assert "avggt-bench predict" in line, line


# -- 8. README install -------------------------------------------------------------------------------------


def test_readme_install_names_the_cpu_wheel_index_and_the_test_costs():
    readme = (REPO / "README.md").read_text()
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in readme
    assert 'python -m pytest -q -m "not slow"' in readme
    assert "full suite" in readme and "GB of memory" in readme
