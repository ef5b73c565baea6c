"""The predictive family: how the network's Normal (loc, scale) becomes a distribution of
the target in its own units, and every score of that distribution. Pure numpy and scipy.

The network always predicts a Normal N(loc, scale^2) of a transformed target t = g(y):
- `normal`:    g(y) = y      y ~ N(loc, scale^2)
- `lognormal`: g(y) = log y  y ~ LogNormal(loc, scale^2), for a positive, skewed target
Each family is one class that knows its transform, its density's Jacobian and its closed
forms (NLL, CRPS, CDF, quantiles, mean, median, std), in the way NGBoost keeps one class per
distribution; the metrics, plots, predict and serving code ask the family and never branch on
its name. Every score is in the target's original units: the NLL of y is the NLL of t plus
log|dt/dy|, so a log-normal and a normal model compare on the same scale.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


def normal_nll_points(t: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Each point's full Gaussian NLL of t under N(loc, scale^2)."""
    z = (t - loc) / scale
    return HALF_LOG_2PI + np.log(scale) + 0.5 * z**2


class Normal:
    name = "normal"

    @staticmethod
    def transform(y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float64)

    @staticmethod
    def log_jacobian(y: np.ndarray) -> np.ndarray:
        """log|dt/dy| per point, added to the NLL of t to give the NLL of y."""
        return np.zeros(np.shape(y))

    @staticmethod
    def invalid_target(y: np.ndarray) -> np.ndarray:
        """Where y lies outside the family's support (none for the normal)."""
        return np.zeros(np.shape(y), dtype=bool)

    support = "any real number"

    def nll_points(self, y, loc, scale) -> np.ndarray:
        return normal_nll_points(self.transform(y), loc, scale) + self.log_jacobian(y)

    @staticmethod
    def cdf(y, loc, scale) -> np.ndarray:
        return ndtr((y - loc) / scale)

    @staticmethod
    def quantile(level, loc, scale) -> np.ndarray:
        return loc + scale * ndtri(level)

    @staticmethod
    def mean(loc, scale) -> np.ndarray:
        return np.asarray(loc, dtype=np.float64)

    @staticmethod
    def std(loc, scale) -> np.ndarray:
        return np.asarray(scale, dtype=np.float64)

    @staticmethod
    def crps(y, loc, scale) -> np.ndarray:
        """Closed form CRPS of N(loc, scale^2) at y (Gneiting & Raftery 2007), per point."""
        z = (y - loc) / scale
        pdf = np.exp(-0.5 * z**2) / np.sqrt(2.0 * np.pi)
        return scale * (z * (2.0 * ndtr(z) - 1.0) + 2.0 * pdf - 1.0 / np.sqrt(np.pi))

    def median(self, loc, scale) -> np.ndarray:
        return self.quantile(0.5, loc, scale)

    def interval(self, level: float, loc, scale) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the central `level` interval."""
        tail = (1.0 - level) / 2.0
        return self.quantile(tail, loc, scale), self.quantile(1.0 - tail, loc, scale)


class LogNormal(Normal):
    name = "lognormal"
    support = "positive numbers"

    @staticmethod
    def transform(y: np.ndarray) -> np.ndarray:
        return np.log(np.asarray(y, dtype=np.float64))

    @staticmethod
    def log_jacobian(y: np.ndarray) -> np.ndarray:
        # t = log y, dt/dy = 1/y: NLL(y) = NLL(log y) + log y.
        return np.log(np.asarray(y, dtype=np.float64))

    @staticmethod
    def invalid_target(y: np.ndarray) -> np.ndarray:
        return ~(np.asarray(y, dtype=np.float64) > 0)

    @staticmethod
    def cdf(y, loc, scale) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return ndtr((np.log(y) - loc) / scale)

    @staticmethod
    def quantile(level, loc, scale) -> np.ndarray:
        return np.exp(loc + scale * ndtri(level))

    @staticmethod
    def mean(loc, scale) -> np.ndarray:
        return np.exp(loc + 0.5 * np.square(scale))

    @staticmethod
    def std(loc, scale) -> np.ndarray:
        variance_factor = np.expm1(np.square(scale))
        return np.exp(loc + 0.5 * np.square(scale)) * np.sqrt(variance_factor)

    @staticmethod
    def crps(y, loc, scale) -> np.ndarray:
        """Closed form CRPS of LogNormal(loc, scale^2) at y > 0 (Baran & Lerch 2015):
        y (2 Phi(w) - 1) - 2 exp(loc + scale^2/2) (Phi(w - scale) + Phi(scale/sqrt 2) - 1),
        w = (log y - loc) / scale."""
        w = (np.log(y) - loc) / scale
        mean = np.exp(loc + 0.5 * np.square(scale))
        return y * (2.0 * ndtr(w) - 1.0) - 2.0 * mean * (
            ndtr(w - scale) + ndtr(scale / np.sqrt(2.0)) - 1.0)


FAMILIES = {family.name: family() for family in (Normal, LogNormal)}


def family(name: str) -> Normal:
    return FAMILIES[name]
