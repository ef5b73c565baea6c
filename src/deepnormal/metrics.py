"""Scores of predictive distributions (predictive.Predictive): targets and a distribution in,
numbers or arrays out.

Every score is in the target's original units and every NLL is the *full* negative log
likelihood in nats per point (including the 0.5*log(2*pi) constant that
torch.nn.GaussianNLLLoss drops by default, and the family's Jacobian).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from deepnormal.family import HALF_LOG_2PI
from deepnormal.predictive import Predictive, level_tag

# Levels at which the calibration curve and the quantile calibration error are read.
CALIBRATION_LEVELS = np.linspace(0.05, 0.95, 19)


def nll(y: np.ndarray, predictive: Predictive) -> float:
    """Mean NLL per point."""
    return float(np.mean(predictive.nll_points(y)))


def mixture_nll(y: np.ndarray, members: Predictive) -> float:
    """Exact NLL of an equal-weight mixture of the family's members, their parameters [M, n]
    (members along the first axis), mean over the n points. A mixture of log-normals is a
    mixture of normals of log y, plus the same Jacobian (computed so, as ever, for the two
    families an ensemble predicts by its moments)."""
    if members.ensemble == "moments":
        z = (members.transform(y) - members.loc) / members.scale
        log_densities = -HALF_LOG_2PI - np.log(members.scale) - 0.5 * z**2
        points = (np.log(len(members.loc)) - logsumexp(log_densities, axis=0)
                  + members.log_jacobian(y))
        return float(np.mean(points))
    return float(np.mean(mixture_nll_points(y, members)))


def mixture_nll_points(y: np.ndarray, members: Predictive) -> np.ndarray:
    """Each point's NLL under the equal-weight mixture of members ([M, n] parameters)."""
    count = len(next(iter(members.arguments().values())))
    return np.log(count) - logsumexp(-members.nll_points(y), axis=0)


def coverage(y: np.ndarray, predictive: Predictive, level: float) -> float:
    """PICP: fraction of targets inside the central `level` interval."""
    with np.errstate(over="ignore", invalid="ignore"):
        low, high = predictive.interval(level)
    return float(np.mean((y >= low) & (y <= high)))


def mean_interval_width(predictive: Predictive, level: float) -> float | None:
    """MPIW: mean width of the central `level` interval (over the rows where the width exists
    in floating point)."""
    with np.errstate(over="ignore", invalid="ignore"):
        low, high = predictive.interval(level)
        width = high - low
    exists = np.isfinite(width)
    return float(np.mean(width[exists])) if exists.any() else None


def pit(y: np.ndarray, predictive: Predictive) -> np.ndarray:
    """Probability integral transform: uniform on [0, 1] for a calibrated predictor."""
    return predictive.cdf(y)


def calibration_curve(y: np.ndarray, predictive: Predictive,
                      levels: np.ndarray = CALIBRATION_LEVELS) -> np.ndarray:
    """Observed fraction of targets below the predicted `level` quantile, per level."""
    values = pit(y, predictive)
    return np.array([np.mean(values <= level) for level in levels])


def calibration_error(y: np.ndarray, predictive: Predictive) -> float:
    """Mean |observed - nominal| quantile coverage over CALIBRATION_LEVELS (Kuleshov et al.)."""
    observed = calibration_curve(y, predictive)
    return float(np.mean(np.abs(observed - CALIBRATION_LEVELS)))


def score(y: np.ndarray, predictive: Predictive, levels: list[float]) -> dict[str, float]:
    """Every metric of one predictor on one split, keyed by the names MLflow and DVC show.
    rmse and mae are of the predictive mean; sharpness is the root mean predictive variance.
    No score is NaN or infinite because of a few rows: a mean or std that does not exist in
    floating point (a log-normal with a huge spread) leaves its row out of rmse, mae and
    sharpness, counted as `rows_without_moments`; such a row's CRPS is the quantile form's."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        mean, std = predictive.mean(), predictive.std()
        finite = np.isfinite(mean) & np.isfinite(std)
        error = (y - mean)[finite]
        crps = predictive.crps(y)
    unscored = ~np.isfinite(crps)
    if unscored.any():
        crps = crps.copy()
        crps[unscored] = predictive.take(unscored).crps_from_quantiles(y[unscored])
    scores = {
        "nll": nll(y, predictive),
        "crps": float(np.mean(crps)),
        "rmse": float(np.sqrt(np.mean(error**2))) if finite.any() else None,
        "mae": float(np.mean(np.abs(error))) if finite.any() else None,
        "calibration_error": calibration_error(y, predictive),
        "sharpness": (float(np.sqrt(np.mean(std[finite] ** 2))) if finite.any() else None),
    }
    for level in levels:
        tag = level_tag(level)
        scores[f"picp_{tag}"] = coverage(y, predictive, level)
        scores[f"mpiw_{tag}"] = mean_interval_width(predictive, level)
    # A Student-t with df <= 2 on every row has no variance: no sharpness (nor rmse and mae
    # without a mean, nor a width without bounds) rather than a NaN.
    scores = {name: value for name, value in scores.items() if value is not None}
    if not finite.all():
        scores["rows_without_moments"] = int((~finite).sum())
    return scores
