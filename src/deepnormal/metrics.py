"""Scores of predictive distributions: arrays in, numbers or arrays out.

A predictor's output is a family (family.Normal, family.LogNormal) with the Normal
(loc, scale) of its transformed target; every score is in the target's original units and
every NLL is the *full* negative log likelihood in nats per point (including the
0.5*log(2*pi) constant that torch.nn.GaussianNLLLoss drops by default, and the family's
Jacobian). With the default family the (loc, scale) are the Gaussian's (mu, sigma).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from deepnormal.family import HALF_LOG_2PI, Normal, normal_nll_points

NORMAL = Normal()
# Levels at which the calibration curve and the quantile calibration error are read.
CALIBRATION_LEVELS = np.linspace(0.05, 0.95, 19)


def gaussian_nll(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    return float(np.mean(normal_nll_points(y, mu, sigma)))


def gaussian_nll_points(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Each point's NLL under N(mu, sigma^2)."""
    return normal_nll_points(y, mu, sigma)


def nll_points(y, loc, scale, family=NORMAL) -> np.ndarray:
    return family.nll_points(y, loc, scale)


def mixture_nll(y: np.ndarray, loc: np.ndarray, scale: np.ndarray, family=NORMAL) -> float:
    """Exact NLL of an equal-weight mixture of the family: members along the first axis of
    loc and scale ([M, n]), mean over the n points. A mixture of log-normals is a mixture of
    normals of log y, plus the same Jacobian."""
    z = (family.transform(y) - loc) / scale
    log_densities = -HALF_LOG_2PI - np.log(scale) - 0.5 * z**2
    nll = np.log(len(loc)) - logsumexp(log_densities, axis=0) + family.log_jacobian(y)
    return float(np.mean(nll))


def gaussian_crps(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    """Closed form CRPS of N(mu, sigma^2) at y (Gneiting & Raftery 2007), mean over points."""
    return float(np.mean(NORMAL.crps(y, mu, sigma)))


def interval(loc, scale, level: float, family=NORMAL) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of the central `level` interval."""
    return family.interval(level, loc, scale)


def coverage(y, loc, scale, level: float, family=NORMAL) -> float:
    """PICP: fraction of targets inside the central `level` interval."""
    low, high = interval(loc, scale, level, family)
    return float(np.mean((y >= low) & (y <= high)))


def mean_interval_width(loc, scale, level: float, family=NORMAL) -> float:
    """MPIW: mean width of the central `level` interval."""
    low, high = interval(loc, scale, level, family)
    return float(np.mean(high - low))


def pit(y, loc, scale, family=NORMAL) -> np.ndarray:
    """Probability integral transform: uniform on [0, 1] for a calibrated predictor."""
    return family.cdf(y, loc, scale)


def calibration_curve(y, loc, scale, levels: np.ndarray = CALIBRATION_LEVELS,
                      family=NORMAL) -> np.ndarray:
    """Observed fraction of targets below the predicted `level` quantile, per level."""
    values = pit(y, loc, scale, family)
    return np.array([np.mean(values <= level) for level in levels])


def calibration_error(y, loc, scale, family=NORMAL) -> float:
    """Mean |observed - nominal| quantile coverage over CALIBRATION_LEVELS (Kuleshov et al.)."""
    observed = calibration_curve(y, loc, scale, family=family)
    return float(np.mean(np.abs(observed - CALIBRATION_LEVELS)))


def score(y, loc, scale, levels: list[float], family=NORMAL) -> dict[str, float]:
    """Every metric of one predictor on one split, keyed by the names MLflow and DVC show.
    rmse and mae are of the predictive mean; sharpness is the root mean predictive variance."""
    error = y - family.mean(loc, scale)
    scores = {
        "nll": float(np.mean(family.nll_points(y, loc, scale))),
        "crps": float(np.mean(family.crps(y, loc, scale))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "calibration_error": calibration_error(y, loc, scale, family),
        "sharpness": float(np.sqrt(np.mean(family.std(loc, scale) ** 2))),
    }
    for level in levels:
        tag = level_tag(level)
        scores[f"picp_{tag}"] = coverage(y, loc, scale, level, family)
        scores[f"mpiw_{tag}"] = mean_interval_width(loc, scale, level, family)
    return scores


def level_tag(level: float) -> str:
    """0.95 -> '95', 0.5 -> '50', 0.975 -> '97.5': the suffix used in metric names."""
    return f"{level * 100:g}"
