"""The predictive families, one class each (predictive.Predictive): its parameters per row
and every score of its distribution, in the target's original units. Pure numpy and scipy.

The network predicts a Normal N(loc, scale^2) of a transformed target t = g(y):
- `normal`:    g(y) = y      y ~ N(loc, scale^2)
- `lognormal`: g(y) = log y  y ~ LogNormal(loc, scale^2), for a positive, skewed target
Each family knows its transform and its density's Jacobian (the table encoder standardises
t; training adds log|dt/dy| so that every NLL is of y itself) and its closed forms (NLL, CRPS,
CDF, quantiles, mean, median, std). The NLL of y is the NLL of t plus log|dt/dy|, so a
log-normal and a normal model compare on the same scale. The rest of the code asks the
family and never branches on its name.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

from deepnormal.predictive import Predictive

HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


def normal_nll_points(t: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Each point's full Gaussian NLL of t under N(loc, scale^2)."""
    z = (t - loc) / scale
    return HALF_LOG_2PI + np.log(scale) + 0.5 * z**2


def normal_crps(y: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Closed form CRPS of N(loc, scale^2) at y (Gneiting & Raftery 2007), per point."""
    z = (y - loc) / scale
    pdf = np.exp(-0.5 * z**2) / np.sqrt(2.0 * np.pi)
    return scale * (z * (2.0 * ndtr(z) - 1.0) + 2.0 * pdf - 1.0 / np.sqrt(np.pi))


class Normal(Predictive):
    """y ~ N(loc, scale^2)."""

    name = "normal"
    support = "any real number"
    columns = ("mu", "sigma")

    def __init__(self, loc, scale) -> None:
        self.loc = np.asarray(loc, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)

    @staticmethod
    def transform(y: np.ndarray) -> np.ndarray:
        """t = g(y), the scale the network models."""
        return np.asarray(y, dtype=np.float64)

    @staticmethod
    def log_jacobian(y: np.ndarray) -> np.ndarray:
        """log|dt/dy| per point, added to the NLL of t to give the NLL of y."""
        return np.zeros(np.shape(y))

    @staticmethod
    def invalid_target(y: np.ndarray) -> np.ndarray:
        return np.zeros(np.shape(y), dtype=bool)

    def parameters(self) -> dict[str, np.ndarray]:
        return {"mu": self.loc, "sigma": self.scale}

    def arguments(self) -> dict[str, np.ndarray]:
        return {"loc": self.loc, "scale": self.scale}

    def nll_points(self, y) -> np.ndarray:
        return normal_nll_points(self.transform(y), self.loc, self.scale)

    def cdf(self, y) -> np.ndarray:
        return ndtr((y - self.loc) / self.scale)

    def quantile(self, level) -> np.ndarray:
        return self.loc + self.scale * ndtri(level)

    def mean(self) -> np.ndarray:
        return self.loc

    def std(self) -> np.ndarray:
        return self.scale

    def crps(self, y) -> np.ndarray:
        return normal_crps(y, self.loc, self.scale)


class LogNormal(Predictive):
    """log y ~ N(loc, scale^2): a positive target, skewed to the right."""

    name = "lognormal"
    support = "positive numbers"
    columns = ("mu", "sigma")

    def __init__(self, loc, scale) -> None:
        self.loc = np.asarray(loc, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)

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

    def parameters(self) -> dict[str, np.ndarray]:
        return {"mu": self.loc, "sigma": self.scale}

    def arguments(self) -> dict[str, np.ndarray]:
        return {"loc": self.loc, "scale": self.scale}

    def nll_points(self, y) -> np.ndarray:
        return normal_nll_points(self.transform(y), self.loc, self.scale) + self.log_jacobian(y)

    def cdf(self, y) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return ndtr((np.log(y) - self.loc) / self.scale)

    def quantile(self, level) -> np.ndarray:
        return np.exp(self.loc + self.scale * ndtri(level))

    def mean(self) -> np.ndarray:
        return np.exp(self.loc + 0.5 * np.square(self.scale))

    def std(self) -> np.ndarray:
        variance_factor = np.expm1(np.square(self.scale))
        return np.exp(self.loc + 0.5 * np.square(self.scale)) * np.sqrt(variance_factor)

    def crps(self, y) -> np.ndarray:
        """Closed form CRPS at y > 0 (Baran & Lerch 2015):
        y (2 Phi(w) - 1) - 2 exp(loc + scale^2/2) (Phi(w - scale) + Phi(scale/sqrt 2) - 1),
        w = (log y - loc) / scale."""
        loc, scale = self.loc, self.scale
        w = (np.log(y) - loc) / scale
        mean = np.exp(loc + 0.5 * np.square(scale))
        return y * (2.0 * ndtr(w) - 1.0) - 2.0 * mean * (
            ndtr(w - scale) + ndtr(scale / np.sqrt(2.0)) - 1.0)


FAMILIES: dict[str, type[Predictive]] = {family.name: family for family in (Normal, LogNormal)}


def family_named(name: str) -> type[Predictive]:
    """The family class for a model.distribution name (resolved: never `auto`)."""
    return FAMILIES[name]
