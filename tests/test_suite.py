"""Suite files: one test per kind of mistake, and the expansion into cells with stable identities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_suite, write_suite
from torch import nn

from bench.methods import METHODS, DensePlan, MethodNotApplicable
from bench.models import MODELS, BenchModel
from bench.models.oracle import OracleModel
from bench.models import ModelTraits
from bench.suite import ModelSpec, SuiteError, TimingSpec, expand, load_suite, traits_of
from datasets_adapters import DATASETS, DatasetAdapter, Sequence


class FolderScenes(DatasetAdapter):
    """A dataset whose scenes are the sub-folders of its root; 10 blank frames each."""

    name = "t_folder"

    def __init__(self, root=None, *, fast: bool = False) -> None:
        super().__init__(root)
        self.fast = fast

    def scenes(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def frame_ids(self, scene: str) -> list[str]:
        return [str(i) for i in range(10)]

    def load_frames(self, scene: str, frame_ids: list[str]) -> Sequence:
        s = len(frame_ids)
        extrinsics = np.tile(np.eye(3, 4), (s, 1, 1))
        return Sequence(self.name, scene, np.zeros((s, 3, 8, 8), np.float32), extrinsics, np.tile(np.eye(3), (s, 1, 1)), frame_ids=frame_ids)


@pytest.fixture
def folder_data(tmp_path, register, monkeypatch):
    root = tmp_path / "data"
    for scene in ("kitchen", "office", "stairs"):
        (root / scene).mkdir(parents=True)
    register(DATASETS, "t_folder", FolderScenes)
    monkeypatch.setenv("T_DATA_ROOT", str(root))
    return root


def folder_dataset(**changes):
    return {"name": "t_folder", "root": "${T_DATA_ROOT}", "frames": [2, 4], **changes}


def error_of(tmp_path, data) -> str:
    path = write_suite(tmp_path, data)
    with pytest.raises(SuiteError) as info:
        expand(load_suite(path))
    message = str(info.value)
    assert message.startswith(f"{path}: "), message  # every error names the file first
    return message


# -- one test per kind of mistake ----------------------------------------------------------------


def test_unknown_key_names_the_field_and_suggests(tmp_path, fake_metrics):
    data = tiny_suite()
    data["datasets"][0]["framse"] = [3]
    message = error_of(tmp_path, data)
    assert "datasets[0].framse: unknown key (did you mean 'frames'?)" in message
    assert "allowed: name, label, root, protocol, variant, options, scenes, frames, sampling, preprocess, metrics, metric_options" in message
    assert ": modles: unknown key (did you mean 'models'?); allowed: name, description, device," in error_of(tmp_path, tiny_suite(modles=[]))


def test_wrong_type(tmp_path, fake_metrics):
    assert "models: expected a list, got str 'oracle'" in error_of(tmp_path, tiny_suite(models="oracle"))
    message = error_of(tmp_path, tiny_suite(timing={"repeats": "3"}))
    assert "timing.repeats: expected an integer >= 1, got '3'" in message
    assert "timing.warmup: expected an integer >= 0, got True" in error_of(tmp_path, tiny_suite(timing={"warmup": True}))
    assert "methods[0].params: expected a mapping" in error_of(tmp_path, tiny_suite(methods=[{"name": "dense", "params": [1]}]))


def test_unknown_model(tmp_path, fake_metrics):
    message = error_of(tmp_path, tiny_suite(models=[{"name": "vgtt"}]))
    assert "models[0].name: unknown model 'vgtt'; allowed: " in message and "oracle" in message


def test_unknown_method(tmp_path, fake_metrics):
    message = error_of(tmp_path, tiny_suite(methods=["dense", {"name": "avgt"}]))
    assert "methods[1].name: unknown method 'avgt'; allowed: dense" in message


def test_unknown_dataset(tmp_path, fake_metrics):
    message = error_of(tmp_path, tiny_suite(datasets=[{"name": "co4d", "frames": 8}]))
    assert "datasets[0].name: unknown dataset 'co4d'; allowed: " in message and "synthetic" in message


def test_unknown_metric(tmp_path, fake_metrics):
    message = error_of(tmp_path, tiny_suite(metrics=["t_pose", "chamfer"]))
    assert "metrics[1]: unknown metric 'chamfer'; allowed: " in message
    assert "t_pose" in message


@pytest.mark.parametrize(
    "frames, where, what",
    [
        (0, "datasets[0].frames", "bad frame count 0"),
        ([8, -1], "datasets[0].frames[1]", "bad frame count -1"),
        (["many"], "datasets[0].frames[0]", "bad frame count 'many'"),
        ([8, 8], "datasets[0].frames", "a frame count is listed twice"),
        ([], "datasets[0].frames", "the list is empty"),
    ],
)
def test_bad_frames(tmp_path, fake_metrics, frames, where, what):
    data = tiny_suite()
    data["datasets"][0]["frames"] = frames
    message = error_of(tmp_path, data)
    assert f"{where}: {what}" in message


@pytest.mark.parametrize(
    "sampling, what",
    [
        ({"kind": "zigzag"}, "datasets[0].sampling: sampling kind 'zigzag' is not one of first-n, stride, uniform, random"),
        ({"kind": "stride", "stride": 0}, "datasets[0].sampling: sampling stride must be >= 1"),
        ({"every": 2}, "datasets[0].sampling.every: unknown key; allowed: kind, stride, start, seed"),
        ({"seed": -1}, "datasets[0].sampling.seed: expected an integer >= 0"),
    ],
)
def test_bad_sampling(tmp_path, fake_metrics, sampling, what):
    data = tiny_suite()
    data["datasets"][0]["sampling"] = sampling
    assert what in error_of(tmp_path, data)


def test_unset_environment_variable(tmp_path, fake_metrics, folder_data, monkeypatch):
    monkeypatch.delenv("T_DATA_ROOT")
    message = error_of(tmp_path, tiny_suite(datasets=[folder_dataset()]))
    assert "datasets[0].root: environment variable T_DATA_ROOT is not set; allowed: set it first, e.g. export T_DATA_ROOT=" in message


@pytest.mark.parametrize("key", ["models", "methods", "datasets"])
def test_empty_lists(tmp_path, fake_metrics, key):
    assert f"{key}: the list is empty; allowed: at least one entry" in error_of(tmp_path, tiny_suite(**{key: []}))


def test_yaml_syntax_error_gives_the_line(tmp_path):
    message = error_of(tmp_path, "name: broken\nmodels: [oracle\nmethods: [dense]\n")
    assert "YAML syntax error" in message and "line 3" in message


def test_missing_required_keys(tmp_path, fake_metrics):
    data = tiny_suite()
    del data["name"]
    assert "name: missing" in error_of(tmp_path, data)
    data = tiny_suite()
    del data["datasets"][0]["frames"]
    assert "datasets[0].frames: missing" in error_of(tmp_path, data)


def test_duplicate_labels_and_duplicate_cells(tmp_path, fake_metrics):
    message = error_of(tmp_path, tiny_suite(models=["oracle", "oracle"]))
    assert "models[1]: label 'oracle' is used twice; allowed: a distinct `label` for each entry" in message
    same = tiny_suite(models=["oracle", {"name": "oracle", "label": "again"}])
    assert "measure the same thing" in error_of(tmp_path, same)


def test_options_that_the_component_does_not_take(tmp_path, fake_metrics):
    data = tiny_suite(models=[{"name": "oracle", "options": {"noise": 0.1}}])
    message = error_of(tmp_path, data)
    assert "models[0].options.noise: unknown option; allowed: rotation_noise_deg, translation_noise, depth_noise, seed" in message
    data = tiny_suite()
    data["datasets"][0]["options"] = {"lenght": 10}
    assert "datasets[0].options.lenght: unknown option" in error_of(tmp_path, data)
    assert "models[0]: cannot build model 'oracle'" in error_of(tmp_path, tiny_suite(models=[{"name": "oracle", "options": {"depth_noise": -1}}]))
    message = error_of(tmp_path, tiny_suite(models=[{"name": "vggt-tiny", "options": {"compiled": True}}]))
    assert "models[0].options.compiled: unknown option; allowed: seed, head_frames_per_chunk, token_chunk_frames, compile, heads_dtype" in message


def test_method_parameters_are_checked_by_the_preset(tmp_path, fake_metrics):
    message = error_of(tmp_path, tiny_suite(methods=[{"name": "dense", "params": {"sigma": 4}}]))
    assert "methods[0].params: for model oracle: method dense " in message and "sigma" in message


def test_missing_files(tmp_path, fake_metrics, folder_data):
    assert "does not exist" in error_of(tmp_path, tiny_suite(datasets=[folder_dataset(root=str(tmp_path / "nowhere"))]))
    message = error_of(tmp_path, tiny_suite(models=[{"name": "vggt-tiny", "weights": "${T_DATA_ROOT}/vggt.pt"}]))
    assert f"models[0].weights: weights file not found: {folder_data}/vggt.pt" in message


def test_unknown_scene(tmp_path, fake_metrics, folder_data):
    message = error_of(tmp_path, tiny_suite(datasets=[folder_dataset(scenes=["office", "garage"])]))
    assert "datasets[0].scenes[1]: unknown scene 'garage'; allowed: kitchen, office, stairs" in message
    assert "asked for 5 scenes" in error_of(tmp_path, tiny_suite(datasets=[folder_dataset(scenes=5)]))


def test_bad_device_and_metric_options(tmp_path, fake_metrics):
    assert "device: unknown device 'gpu'; allowed: cpu, cuda, cuda:N" in error_of(tmp_path, tiny_suite(device="gpu"))
    message = error_of(tmp_path, tiny_suite(metric_options={"pointmap": {"icp_threshold": 0.1}}))
    assert "metric_options.pointmap: unknown key; allowed: t_pose, t_depth" in message
    message = error_of(tmp_path, tiny_suite(metric_options={"t_pose": {"threshold": 5}}))
    assert "metric_options.t_pose.threshold: unknown option; allowed: (no options)" in message


def test_bad_labels_and_timing_table(tmp_path, fake_metrics):
    assert "methods[0].label: 'a/b' cannot name a cell" in error_of(tmp_path, tiny_suite(methods=[{"name": "dense", "label": "a/b"}]))
    assert "timing.repeats_above.big: bad frame count 'big'" in error_of(tmp_path, tiny_suite(timing={"repeats_above": {"big": 1}}))


# -- expansion -----------------------------------------------------------------------------------


def test_cells_in_run_order_with_readable_ids(tmp_path, fake_metrics):
    expansion = expand(load_suite(write_suite(tmp_path, tiny_suite())))
    assert [c.cell_id for c in expansion.cells] == [
        f"{model}/dense/synthetic/{scene}/{frames}" for model in ("oracle", "noisy") for scene in ("orbit", "walk") for frames in (3, 6)
    ]
    assert len({c.identity for c in expansion.cells}) == 8
    assert all(c.device == "cpu" and c.preprocess is None and c.plan.is_dense for c in expansion.cells)
    # cells that differ only in the method share their inputs: that is how speedups find the dense row
    assert len({c.inputs_id for c in expansion.cells}) == 8


def test_scenes_frames_and_methods_combine(tmp_path, fake_metrics, folder_data, register):
    register(METHODS, "t_dense_again", lambda traits, **params: DensePlan())
    data = tiny_suite(
        models=["oracle"],
        methods=["dense", {"name": "t_dense_again", "label": "again"}],
        datasets=[folder_dataset(scenes=2, frames=[2, "all"], preprocess="none")],
    )
    cells = expand(load_suite(write_suite(tmp_path, data))).cells
    assert [c.cell_id for c in cells] == [
        f"oracle/{m}/t_folder/{s}/{f}" for s in ("kitchen", "office") for f in ("2", "all") for m in ("dense", "again")
    ]
    assert cells[0].inputs_id == cells[1].inputs_id and cells[0].identity != cells[1].identity
    assert cells[2].frames is None and cells[0].preprocess == "none"


def test_methods_that_do_not_apply_are_skipped(tmp_path, fake_metrics, register):
    def vggt_only(traits, **params):
        if traits.family != "vggt":
            raise MethodNotApplicable(f"needs a VGGT model, not {traits.family}")
        return DensePlan()

    register(METHODS, "t_vggt_only", vggt_only)
    expansion = expand(load_suite(write_suite(tmp_path, tiny_suite(methods=["dense", "t_vggt_only"]))))
    assert len(expansion.cells) == 8 and {c.method.name for c in expansion.cells} == {"dense"}
    assert expansion.skipped == [
        "oracle × t_vggt_only: skipped, needs a VGGT model, not oracle",
        "noisy × t_vggt_only: skipped, needs a VGGT model, not oracle",
    ]


def test_identity_is_stable_and_tracks_what_is_measured(tmp_path, fake_metrics, folder_data, monkeypatch):
    def ids(data, device=None):
        return [c.identity for c in expand(load_suite(write_suite(tmp_path, data)), device).cells]

    base = tiny_suite(datasets=[folder_dataset()])
    assert ids(base) == ids(base)
    # the root enters as written: moving the data and pointing the variable there keeps identities
    moved = tmp_path / "moved"
    folder_data.rename(moved)
    monkeypatch.setenv("T_DATA_ROOT", str(moved))
    reference = ids(base)
    assert ids(base) == reference
    for changed in (
        tiny_suite(datasets=[folder_dataset(sampling={"kind": "random", "seed": 1})]),
        tiny_suite(datasets=[folder_dataset(options={"fast": True})]),
        tiny_suite(datasets=[folder_dataset()], methods=[{"name": "dense", "label": "exact"}]),
        tiny_suite(datasets=[folder_dataset()], metrics=["t_pose"]),
    ):
        assert not set(ids(changed)) & set(reference)
    assert not set(ids(base, device="cuda")) & set(reference)
    # new options for the second model change its cells only
    reseeded = ids(tiny_suite(datasets=[folder_dataset()], models=base["models"][:1] + [{**base["models"][1], "options": {"seed": 1}}]))
    half = len(reference) // 2
    assert reseeded[:half] == reference[:half] and not set(reseeded[half:]) & set(reference)


def test_repeats_above_thresholds():
    timing = TimingSpec(warmup=1, repeats=5, repeats_above=((100, 3), (300, 1)))
    assert [timing.repeats_for(n) for n in (8, 99, 100, 299, 300, 1000)] == [5, 5, 3, 3, 1, 1]


def test_warmup_above_is_read_from_the_suite(tmp_path, fake_metrics):
    suite = load_suite(write_suite(tmp_path, tiny_suite(timing={"warmup": 2, "warmup_above": {500: 0, 100: 1}})))
    assert [suite.timing.warmup_for(n) for n in (8, 100, 499, 500)] == [2, 1, 1, 0]
    message = error_of(tmp_path, tiny_suite(timing={"warmup_above": {100: -1}}))
    assert "timing.warmup_above.100: expected an integer >= 0" in message


def test_a_default_preprocess_mode_that_does_not_exist(tmp_path, fake_metrics, register):
    class Cropping(OracleModel):
        preprocess_mode = "t_missing_mode"

    register(MODELS, "t_cropping", Cropping)
    message = error_of(tmp_path, tiny_suite(models=["t_cropping"]))
    assert "datasets[0].preprocess: model t_cropping preprocesses with mode 't_missing_mode' by default, which is not registered" in message
    data = tiny_suite(models=["t_cropping"])
    data["datasets"][0]["preprocess"] = "none"
    assert {c.preprocess for c in expand(load_suite(write_suite(tmp_path, data))).cells} == {"none"}


def test_model_traits_come_from_a_meta_device_build(register):
    built = []

    class Tiny(BenchModel):
        family = "t"

        def __init__(self, weights="random", layers=3):
            super().__init__()
            self.num_global_layers = layers
            self.proj = nn.Linear(2, 2)
            built.append(self.proj.weight.device.type)

    register(MODELS, "t_tiny", Tiny)
    assert traits_of(ModelSpec("t_tiny", "t_tiny", "random", "random", {"layers": 5})) == ModelTraits("t", 5, None, 0, 0, None, None)
    assert built == ["meta"]  # no memory, no initialisation

    def moving_factory(weights="random", **options):
        return Tiny(weights, **options).to("cpu")  # cannot be copied out of the meta device

    register(MODELS, "t_moving", moving_factory)
    built.clear()
    assert traits_of(ModelSpec("t_moving", "t_moving", "random", "random", {})) == ModelTraits("t", 3, None, 0, 0, None, None)
    assert built == ["meta", "cpu"]  # built for real when the meta build fails


def test_the_bf16_heads_speed_suite_differs_from_the_speed_suite_only_in_the_heads():
    """suites/speed-heads-bf16.yaml measures what the float32 heads cost: cells of suites/speed.yaml
    (VGGT-1B, dense and AVGGT), timed alike, with only heads_dtype changed."""
    suites = Path(__file__).resolve().parents[1] / "suites"
    speed, bf16 = (load_suite(suites / name) for name in ("speed.yaml", "speed-heads-bf16.yaml"))
    assert bf16.timing == speed.timing
    twins = {cell.cell_id: cell for cell in expand(speed, device="cpu").cells}
    cells = expand(bf16, device="cpu").cells
    assert len(cells) == 8
    for cell in cells:
        assert cell.model.options == {**twins[cell.cell_id].model.options, "heads_dtype": "bfloat16"}
