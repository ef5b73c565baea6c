"""Scores for Gaussian predictive distributions: arrays in, numbers or arrays out.

All NLLs are the *full* Gaussian negative log likelihood in nats per point (including
the 0.5*log(2*pi) constant that torch.nn.GaussianNLLLoss drops by default).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, ndtr, ndtri

HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)
# Levels at which the calibration curve and the quantile calibration error are read.
CALIBRATION_LEVELS = np.linspace(0.05, 0.95, 19)


def gaussian_nll(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    return float(np.mean(gaussian_nll_points(y, mu, sigma)))


def gaussian_nll_points(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Each point's NLL."""
    z = (y - mu) / sigma
    return HALF_LOG_2PI + np.log(sigma) + 0.5 * z**2


def mixture_nll(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    """Exact NLL of an equal-weight Gaussian mixture: members along the first axis of mu and
    sigma ([M, n]), mean over the n points."""
    z = (y - mu) / sigma
    log_densities = -HALF_LOG_2PI - np.log(sigma) - 0.5 * z**2
    return float(np.mean(np.log(len(mu)) - logsumexp(log_densities, axis=0)))


def gaussian_crps(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    """Closed form CRPS of N(mu, sigma^2) at y (Gneiting & Raftery 2007), mean over points."""
    z = (y - mu) / sigma
    pdf = np.exp(-0.5 * z**2) / np.sqrt(2.0 * np.pi)
    return float(np.mean(sigma * (z * (2.0 * ndtr(z) - 1.0) + 2.0 * pdf - 1.0 / np.sqrt(np.pi))))


def interval_half_width(sigma: np.ndarray, level: float) -> np.ndarray:
    """Half width of the central `level` interval of N(mu, sigma^2)."""
    return ndtri(0.5 + level / 2.0) * sigma


def coverage(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray, level: float) -> float:
    """PICP: fraction of targets inside the central `level` interval."""
    return float(np.mean(np.abs(y - mu) <= interval_half_width(sigma, level)))


def mean_interval_width(sigma: np.ndarray, level: float) -> float:
    """MPIW: mean width of the central `level` interval."""
    return float(np.mean(2.0 * interval_half_width(sigma, level)))


def pit(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Probability integral transform: uniform on [0, 1] for a calibrated predictor."""
    return ndtr((y - mu) / sigma)


def calibration_curve(
    y: np.ndarray, mu: np.ndarray, sigma: np.ndarray, levels: np.ndarray = CALIBRATION_LEVELS
) -> np.ndarray:
    """Observed fraction of targets below the predicted `level` quantile, per level."""
    values = pit(y, mu, sigma)
    return np.array([np.mean(values <= level) for level in levels])


def calibration_error(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    """Mean |observed - nominal| quantile coverage over CALIBRATION_LEVELS (Kuleshov et al.)."""
    observed = calibration_curve(y, mu, sigma)
    return float(np.mean(np.abs(observed - CALIBRATION_LEVELS)))


def score(
    y: np.ndarray, mu: np.ndarray, sigma: np.ndarray, levels: list[float]
) -> dict[str, float]:
    """Every metric of one predictor on one split, keyed by the names MLflow and DVC show."""
    error = y - mu
    scores = {
        "nll": gaussian_nll(y, mu, sigma),
        "crps": gaussian_crps(y, mu, sigma),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "calibration_error": calibration_error(y, mu, sigma),
        "sharpness": float(np.sqrt(np.mean(sigma**2))),
    }
    for level in levels:
        tag = level_tag(level)
        scores[f"picp_{tag}"] = coverage(y, mu, sigma, level)
        scores[f"mpiw_{tag}"] = mean_interval_width(sigma, level)
    return scores


def level_tag(level: float) -> str:
    """0.95 -> '95', 0.5 -> '50', 0.975 -> '97.5': the suffix used in metric names."""
    return f"{level * 100:g}"
