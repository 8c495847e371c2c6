"""FID and KID from feature matrices (pure numpy / scipy, float64).

The formulas follow the reference implementations so that numbers are comparable with published
results: :func:`frechet_distance` is pytorch-fid's ``calculate_frechet_distance`` and :func:`kid`
is the unbiased polynomial-kernel MMD estimate of torch-fidelity / clean-fid.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg


def _features(feats: np.ndarray, name: str, min_rows: int = 2) -> np.ndarray:
    """Validate a ``[N, D]`` feature matrix and return it as finite float64."""
    arr = np.asarray(feats, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D feature matrix [N, D], got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name}: need at least {min_rows} samples, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: features contain NaN or infinity")
    return arr


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``d^2 = |mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))``, computed exactly as
    pytorch-fid does (Dougal Sutherland's stable version): if ``sqrtm`` of the product is not
    finite (near-singular covariances, e.g. fewer samples than dimensions), ``eps * I`` is added to
    both covariances; a small imaginary part from round-off is dropped, a large one (diagonal
    imaginary part beyond 1e-3) means the inputs are not covariance matrices and raises.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors differ in shape: {mu1.shape} vs {mu2.shape}")
    d = mu1.shape[0]
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"covariances must both be ({d}, {d}) to match the means, got "
                         f"{sigma1.shape} and {sigma2.shape}")
    for name, arr in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinity")

    diff = mu1 - mu2
    covmean = _sqrtm(sigma1 @ sigma2)
    if covmean is None or not np.isfinite(covmean).all():
        warnings.warn(f"FID: product of covariances is singular; adding {eps} to their diagonals",
                      RuntimeWarning, stacklevel=2)
        offset = np.eye(d) * eps
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if covmean is None or not np.isfinite(covmean).all():
            raise ValueError("FID: matrix square root of the covariance product is not finite "
                             f"even with eps={eps} added to the diagonals")

    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError("FID: matrix square root has a large imaginary component "
                             f"({np.max(np.abs(covmean.imag)):.3g}); are sigma1/sigma2 "
                             "symmetric positive semi-definite covariance matrices?")
        covmean = covmean.real

    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def _sqrtm(a: np.ndarray) -> np.ndarray | None:
    """``scipy.linalg.sqrtm`` that reports failure as ``None`` (the caller then regularises)."""
    with warnings.catch_warnings():
        # Singularity is handled by the caller's finiteness check, as in pytorch-fid.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        try:
            return linalg.sqrtm(a)
        except (linalg.LinAlgError, ValueError):
            return None


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, ``ddof=1``) covariance of a ``[N, D]`` feature matrix, as pytorch-fid."""
    arr = _features(feats, "features")
    return arr.mean(axis=0), np.atleast_2d(np.cov(arr, rowvar=False))


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets ``[N_a, D]`` and ``[N_b, D]``."""
    fa, fb = _features(a, "features a"), _features(b, "features b")
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"feature dimensions differ: {fa.shape[1]} vs {fb.shape[1]}")
    mu1, sigma1 = feature_stats(fa)
    mu2, sigma2 = feature_stats(fb)
    return frechet_distance(mu1, sigma1, mu2, sigma2)


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's cubic kernel ``k(x, y) = (x.y / d + 1)^3``."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 for equal-size samples: within-set sums skip the diagonal (i == j)."""
    m = x.shape[0]
    k_xx = _polynomial_kernel(x, x)
    k_yy = _polynomial_kernel(y, y)
    k_xy = _polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kid(feats_a: np.ndarray, feats_b: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: ``(mean, std)`` of the unbiased MMD^2 over random subsets.

    Each of ``subsets`` rounds draws ``m`` rows without replacement from each set and evaluates the
    unbiased MMD^2 estimate with the cubic polynomial kernel (torch-fidelity's ``mmd_est=
    "unbiased"``, identical to clean-fid's ``kernel_distance``). ``m = min(subset_size, len(a),
    len(b))``: like clean-fid (and unlike torch-fidelity, which raises), a ``subset_size`` larger
    than either set is clipped, so small evaluations still give a number, but then every subset
    is the whole set and ``std`` is 0. The std is the population std (``ddof=0``) as in
    torch-fidelity. Subsets are drawn with ``np.random.RandomState(seed)`` in torch-fidelity's
    order, so results are deterministic for a seed.
    """
    fa, fb = _features(feats_a, "features a"), _features(feats_b, "features b")
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"feature dimensions differ: {fa.shape[1]} vs {fb.shape[1]}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    if subset_size < 2:
        raise ValueError(f"subset_size must be >= 2 (the unbiased estimate needs pairs), "
                         f"got {subset_size}")
    m = min(subset_size, fa.shape[0], fb.shape[0])
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        x = fa[rng.choice(fa.shape[0], m, replace=False)]
        y = fb[rng.choice(fb.shape[0], m, replace=False)]
        mmds[i] = _mmd2_unbiased(x, y)
    return float(mmds.mean()), float(mmds.std())
