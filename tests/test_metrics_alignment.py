import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from metrics.alignment import (
    CorrespondenceMoments,
    DegenerateAlignmentError,
    Similarity,
    icp_point_to_point,
    umeyama,
)
from metrics.geometry import unproject_depth
from tests.metrics_scene import box_room, random_similarity


def random_points(count: int = 200, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 3)) * np.array([2.0, 1.0, 0.5])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_umeyama_recovers_a_random_similarity(seed):
    scale, rotation, translation = random_similarity(seed)
    source = random_points(seed=seed)
    fitted = umeyama(source, scale * source @ rotation.T + translation)
    assert fitted.scale == pytest.approx(scale, rel=1e-12)
    np.testing.assert_allclose(fitted.rotation, rotation, atol=1e-12)
    np.testing.assert_allclose(fitted.translation, translation, atol=1e-12)


def test_umeyama_without_scale_recovers_a_rigid_transform():
    _, rotation, translation = random_similarity(4)
    source = random_points()
    fitted = umeyama(source, source @ rotation.T + translation, with_scale=False)
    assert fitted.scale == 1.0
    np.testing.assert_allclose(fitted.apply(source), source @ rotation.T + translation, atol=1e-12)


def test_umeyama_returns_a_rotation_where_the_naive_solution_reflects():
    source = random_points(seed=5)
    mirrored = source * np.array([1.0, 1.0, -1.0])  # no rotation maps source onto its mirror image
    centred_source, centred_target = source - source.mean(0), mirrored - mirrored.mean(0)
    u, _, vt = np.linalg.svd(centred_target.T @ centred_source)
    assert np.linalg.det(u @ vt) == pytest.approx(-1.0)  # the unconstrained orthogonal fit is a reflection
    fitted = umeyama(source, mirrored, with_scale=False)
    assert np.linalg.det(fitted.rotation) == pytest.approx(1.0)
    # The best proper rotation, by an independent solver (scipy's Kabsch).
    best, _ = Rotation.align_vectors(centred_target, centred_source)
    np.testing.assert_allclose(fitted.rotation, best.as_matrix(), atol=1e-9)


def test_moments_accumulated_in_chunks_equal_one_batch():
    scale, rotation, translation = random_similarity(6)
    source = random_points(300, seed=6) + 100.0  # far from the origin: the chunk origin matters
    target = scale * source @ rotation.T + translation + 1e-3 * random_points(300, seed=7)
    moments = CorrespondenceMoments()
    for chunk in np.array_split(np.arange(300), 7):
        moments.add(source[chunk], target[chunk])
    chunked, whole = moments.similarity(), umeyama(source, target)
    assert chunked.scale == pytest.approx(whole.scale, rel=1e-10)
    np.testing.assert_allclose(chunked.rotation, whole.rotation, atol=1e-10)
    np.testing.assert_allclose(chunked.translation, whole.translation, atol=1e-8)


@pytest.mark.parametrize(
    "source",
    [
        np.outer(np.arange(10.0), [1.0, 2.0, 3.0]),  # collinear
        np.ones((10, 3)),  # coincident
        np.ones((2, 3)),  # too few
    ],
)
def test_umeyama_refuses_degenerate_point_sets(source):
    with pytest.raises(DegenerateAlignmentError):
        umeyama(source, source)


def test_similarity_composition_applies_first_then_second():
    first, second = Similarity(*random_similarity(8)), Similarity(*random_similarity(9))
    points = random_points(20)
    np.testing.assert_allclose(first.then(second).apply(points), second.apply(first.apply(points)), atol=1e-12)


def room_cloud() -> np.ndarray:
    gt = box_room(frames=6, height=24, width=32)
    return unproject_depth(gt["depth"], gt["intrinsics"], gt["extrinsics"], gt["valid"])


def wavy_surface() -> np.ndarray:
    """A dense, asymmetric surface z = f(x, y) on a 2 cm grid: ICP has a unique answer."""
    x, y = np.meshgrid(np.linspace(-1, 1, 101), np.linspace(-0.8, 0.8, 81))
    z = 0.2 * np.sin(2.5 * x + 0.3) * np.cos(1.7 * y) + 0.1 * x * y
    return np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)


def test_icp_undoes_a_small_rigid_misalignment():
    target = wavy_surface()
    rotation = Rotation.from_rotvec(np.radians(0.4) * np.array([0.2, 0.9, 0.4])).as_matrix()
    source = target @ rotation.T + np.array([0.004, -0.003, 0.002])
    refined = icp_point_to_point(source, target, threshold=0.1)
    np.testing.assert_allclose(refined.transform.apply(source), target, atol=1e-9)
    assert refined.fitness == 1.0 and refined.inlier_rmse == pytest.approx(0.0, abs=1e-9)


def test_icp_leaves_clouds_without_close_pairs_alone():
    target = room_cloud()
    refined = icp_point_to_point(target + 10.0, target, threshold=0.1)
    np.testing.assert_allclose(refined.transform.apply(target), target)
    assert refined.fitness == 0.0
