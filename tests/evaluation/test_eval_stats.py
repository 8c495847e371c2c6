"""FID / KID math (sdm_neuro.evaluation.stats) against closed forms and naive re-implementations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sdm_neuro.evaluation import stats
from sdm_neuro.evaluation.stats import (
    feature_stats,
    fid_from_features,
    frechet_distance,
    kid,
)


def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def test_frechet_distance_diagonal_closed_form() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3.0, size=6), rng.uniform(0.1, 3.0, size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_frechet_distance_full_covariance_matches_eigendecomposition() -> None:
    rng = np.random.default_rng(1)
    d = 12
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _spd(rng, d), _spd(rng, d)
    # Tr sqrt(s1 s2) = Tr sqrt(s1^1/2 s2 s1^1/2), the latter symmetric PSD -> eigh is exact.
    r = _psd_sqrt(s1)
    tr_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(r @ s2 @ r), 0, None)))
    expected = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_singular_covariances_stay_finite() -> None:
    rng = np.random.default_rng(2)
    mu, sigma = feature_stats(rng.normal(size=(4, 10)))  # 4 samples in 10-d: rank 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy-version dependent eps fallback
        value = frechet_distance(mu, sigma, mu, sigma)
    assert np.isfinite(value) and abs(value) < 1e-3


def test_frechet_distance_non_finite_sqrtm_retries_with_eps(monkeypatch: pytest.MonkeyPatch) -> None:
    real = stats._sqrtm
    calls: list[np.ndarray] = []

    def fake(a: np.ndarray) -> np.ndarray | None:
        calls.append(a)
        return np.full_like(a, np.nan) if len(calls) == 1 else real(a)

    monkeypatch.setattr(stats, "_sqrtm", fake)
    s1, s2 = np.diag([1.0, 2.0]), np.diag([3.0, 4.0])
    with pytest.warns(RuntimeWarning, match="singular"):
        value = frechet_distance(np.zeros(2), s1, np.zeros(2), s2, eps=0.5)
    np.testing.assert_allclose(calls[1], (s1 + 0.5 * np.eye(2)) @ (s2 + 0.5 * np.eye(2)))
    expected = 10.0 - 2 * (np.sqrt(1.5 * 3.5) + np.sqrt(2.5 * 4.5))
    assert value == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_rejects_bad_shapes_and_complex_roots() -> None:
    with pytest.raises(ValueError, match="mean vectors"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))
    # Not a covariance: the product has negative eigenvalues -> large imaginary square root.
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), np.diag([1.0, -4.0]), np.zeros(2), np.eye(2))


def test_feature_stats_and_fid_of_identical_sets() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8))
    mu, sigma = feature_stats(a)
    np.testing.assert_allclose(mu, a.mean(0))
    np.testing.assert_allclose(sigma, np.cov(a.T))
    assert abs(fid_from_features(a, a)) < 1e-6
    assert fid_from_features(a, a + 1.0) == pytest.approx(8.0, rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        feature_stats(a[:1])
    with pytest.raises(ValueError, match="dimensions differ"):
        fid_from_features(a, a[:, :4])


def _naive_kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written as plain double loops."""
    m, d = x.shape

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (float(a @ b) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_double_loop_on_whole_set() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(9, 5)), rng.normal(0.3, 1.2, size=(9, 5))
    mean, std = kid(x, y, subsets=1, subset_size=9)
    assert mean == pytest.approx(_naive_kid(x, y), rel=1e-10)
    assert std == 0.0
    # subset_size beyond the data is clipped to min(len(a), len(b)): still the whole set.
    mean_clipped, _ = kid(x, y, subsets=3, subset_size=1000)
    assert mean_clipped == pytest.approx(mean, rel=1e-10)


def test_kid_same_vs_shifted_distribution_and_determinism() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    shifted = rng.normal(0.5, 1.0, size=(300, 16))
    same_mean, same_std = kid(a, b, subsets=20, subset_size=100, seed=1)
    diff_mean, _ = kid(a, shifted, subsets=20, subset_size=100, seed=1)
    assert abs(same_mean) < 3 * same_std + 0.02
    assert diff_mean > 0.2 and diff_mean > 10 * abs(same_mean)
    assert kid(a, b, subsets=20, subset_size=100, seed=1) == (same_mean, same_std)
    assert kid(a, b, subsets=20, subset_size=100, seed=2) != (same_mean, same_std)


def test_kid_rejects_bad_arguments() -> None:
    a = np.zeros((5, 3))
    with pytest.raises(ValueError, match="subset_size"):
        kid(a, a, subset_size=1)
    with pytest.raises(ValueError, match="subsets"):
        kid(a, a, subsets=0)
    with pytest.raises(ValueError, match="dimensions differ"):
        kid(a, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="NaN"):
        kid(np.full((5, 3), np.nan), a)
