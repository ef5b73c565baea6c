"""The predictive distribution: what every predictor (the network, the line, a peer, the
oracle) hands to scoring, plotting, `deepnormal-predict` and the served model. Pure numpy.

Each family (family.py) is one subclass holding its parameters per row, in the way NGBoost
keeps one class per distribution: its density, CDF, quantiles, moments and CRPS, every one in
the target's original units. What is common to every family lives here: the median and the
central intervals (from the quantiles) and the output columns, defined once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import pandas as pd

# The central intervals `deepnormal-predict` and the served model write unless told others.
DEFAULT_LEVELS = (0.5, 0.8, 0.95)
# Summary columns of the output, before the family's own parameters and the intervals.
SUMMARY_COLUMNS = ("mean", "median", "std")


def level_tag(level: float) -> str:
    """0.95 -> '95', 0.5 -> '50', 0.975 -> '97.5': the suffix of metric and column names."""
    return f"{level * 100:g}"


def interval_columns(level: float) -> tuple[str, str]:
    tag = level_tag(level)
    return f"lower_{tag}", f"upper_{tag}"


class Predictive(ABC):
    """A distribution of the target per row (parameters are arrays of one shape).

    Class attributes say what the family is: its `name` (model.distribution), its `support`
    (for messages), and `columns`, the names under which its parameters are written out."""

    name: ClassVar[str]
    support: ClassVar[str]
    columns: ClassVar[tuple[str, ...]]
    # Network outputs beyond the location and the scale (df, skew and tail, P(y = 0)).
    shape_count: ClassVar[int] = 0
    # How an ensemble's members become one prediction: "moments" (one distribution of the
    # family with the members' mean and variance) or "mixture" (their exact mixture).
    ensemble: ClassVar[str] = "moments"
    # A point mass (at zero): its NLL there is a probability's, not a density's, so it
    # compares with continuous families by CRPS.
    point_mass: ClassVar[bool] = False

    @staticmethod
    def in_mass(y: np.ndarray) -> np.ndarray:
        """Where y falls on the family's point mass (never, for a continuous family)."""
        return np.zeros(np.shape(y), dtype=bool)

    @staticmethod
    @abstractmethod
    def invalid_target(y: np.ndarray) -> np.ndarray:
        """Where y lies outside the family's support."""

    @abstractmethod
    def parameters(self) -> dict[str, np.ndarray]:
        """The family's parameters, by output column name."""

    @abstractmethod
    def arguments(self) -> dict[str, np.ndarray]:
        """The family's parameters by the names its constructor takes."""

    def take(self, rows) -> Predictive:
        """The distribution of some rows (an index or a boolean mask)."""
        return type(self)(**{name: values[rows] for name, values in self.arguments().items()})

    @abstractmethod
    def nll_points(self, y: np.ndarray) -> np.ndarray:
        """Each point's negative log density of y, in the target's units."""

    @abstractmethod
    def cdf(self, y: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def quantile(self, level) -> np.ndarray: ...

    @abstractmethod
    def mean(self) -> np.ndarray: ...

    @abstractmethod
    def std(self) -> np.ndarray: ...

    @abstractmethod
    def crps(self, y: np.ndarray) -> np.ndarray:
        """Each point's continuous ranked probability score."""

    def median(self) -> np.ndarray:
        return self.quantile(0.5)

    def continuous_part(self) -> Predictive:
        """The distribution without its point mass (itself, for a continuous family)."""
        return self

    def crps_from_quantiles(self, y: np.ndarray, count: int = 1000) -> np.ndarray:
        """The CRPS in its quantile form, 2 * integral over a of (1{y <= Q(a)} - a)(Q(a) - y),
        by the midpoint rule on `count` levels: finite where a closed form overflows (a
        log-normal with a huge spread), the tails beyond the outermost levels left out."""
        levels = (np.arange(count) + 0.5) / count
        total = np.zeros(np.shape(y))
        y = np.asarray(y, dtype=np.float64)
        for level in levels:
            q = self.quantile(level)
            total += ((y <= q) - level) * (q - y)
        return 2.0 * total / count

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the central `level` interval. With a point mass at zero that holds the
        lower tail's probability, the interval starts at zero and ends at the `level`
        quantile instead, so that it still holds `level` of the probability (a central one
        would hold more: its lower end would sit on the mass)."""
        tail = (1.0 - level) / 2.0
        if not self.point_mass:
            return self.quantile(tail), self.quantile(1.0 - tail)
        starts = self.cdf(np.zeros(self.shape)) >= tail
        return (np.where(starts, 0.0, self.quantile(tail)),
                np.where(starts, self.quantile(level), self.quantile(1.0 - tail)))

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the rows (of one member, for a mixture's members)."""
        return np.shape(next(iter(self.arguments().values())))

    def frame(self, levels, prefix: str = "") -> pd.DataFrame:
        """The output columns: mean, median, std, the family's parameters and the central
        interval bounds at each level (`lower_95`, `upper_95`), each name after `prefix`.
        A value that does not exist in floating point (the mean of a log-normal with a huge
        spread) is NaN, an empty cell: never inf."""
        with np.errstate(over="ignore", invalid="ignore"):
            columns = {"mean": self.mean(), "median": self.median(), "std": self.std()}
            columns |= self.parameters()
            for level in levels:
                columns.update(zip(interval_columns(level), self.interval(level), strict=True))
        return pd.DataFrame({f"{prefix}{name}": np.where(np.isinf(values), np.nan, values)
                             for name, values in columns.items()})

    def without_moments(self) -> int:
        """Rows whose mean or std does not exist in floating point."""
        with np.errstate(over="ignore", invalid="ignore"):
            return int((~(np.isfinite(self.mean()) & np.isfinite(self.std()))).sum())

    @classmethod
    def output_columns(cls, levels, prefix: str = "") -> list[str]:
        """The names `frame` writes, in its order."""
        return [f"{prefix}{name}" for name in (
            *SUMMARY_COLUMNS, *cls.columns,
            *(name for level in levels for name in interval_columns(level)))]


class Mixture(Predictive):
    """An ensemble's exact predictive distribution: the equal-weight mixture of its members,
    one family's distributions with parameters [M, n] (members along the first axis). Its
    density, CDF, mean and variance are the members' averages; quantiles come from a
    monotone numerical inversion of the CDF (bisection between the members' own quantiles,
    which bracket the mixture's) and the CRPS from the CDF by Gauss-Legendre quadrature.
    Its parameter columns are the members' averages of each parameter."""

    def __init__(self, members: Predictive) -> None:
        self.members = members
        family = type(members)
        self.name, self.support, self.columns = family.name, family.support, family.columns
        self.point_mass = family.point_mass

    def invalid_target(self, y: np.ndarray) -> np.ndarray:
        return self.members.invalid_target(y)

    def output_columns(self, levels, prefix: str = "") -> list[str]:
        return type(self.members).output_columns(levels, prefix)

    def parameters(self) -> dict[str, np.ndarray]:
        return {name: values.mean(axis=0) for name, values in self.members.parameters().items()}

    def arguments(self) -> dict[str, np.ndarray]:
        return self.members.arguments()

    def take(self, rows) -> Mixture:
        family = type(self.members)
        return Mixture(family(**{name: values[:, rows]
                                 for name, values in self.members.arguments().items()}))

    @property
    def count(self) -> int:
        return len(next(iter(self.members.arguments().values())))

    @property
    def shape(self) -> tuple[int, ...]:
        return np.shape(next(iter(self.members.arguments().values())))[1:]

    def nll_points(self, y: np.ndarray) -> np.ndarray:
        from scipy.special import logsumexp

        return np.log(self.count) - logsumexp(-self.members.nll_points(y), axis=0)

    def cdf(self, y: np.ndarray) -> np.ndarray:
        return self.members.cdf(y).mean(axis=0)

    def quantile(self, level) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            bounds = self.members.quantile(level)
        low, high = bounds.min(axis=0), bounds.max(axis=0)
        target = np.broadcast_to(np.asarray(level, dtype=np.float64), low.shape)
        for _ in range(BISECTIONS):  # the smallest q with F(q) >= level, to float precision
            middle = (low + high) / 2
            above = self.cdf(middle) >= target
            high, low = np.where(above, middle, high), np.where(above, low, middle)
        return high

    def mean(self) -> np.ndarray:
        return self.members.mean().mean(axis=0)

    def std(self) -> np.ndarray:
        mean, spread = self.members.mean(), self.members.std()
        second = (spread**2 + mean**2).mean(axis=0)
        return np.sqrt(np.maximum(second - mean.mean(axis=0) ** 2, 0.0))

    def crps(self, y: np.ndarray) -> np.ndarray:
        """The integral of (F(t) - 1{t >= y})^2 over t, with t = Q(Phi(u)) the quantile of
        the row's widest member (of its continuous part, for a point mass at zero, below
        which the integrand is 0): u spreads the nodes where each member's mass is, heavy
        tails included. Gauss-Legendre on u in [-8, 8] (beyond, below 1e-15 of the
        probability), split where t passes y; dt/du by central differences."""
        from scipy.special import ndtr, ndtri

        y = np.asarray(y, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            spread = self.members.quantile(0.9) - self.members.quantile(0.1)
        widest = np.nanargmax(np.where(np.isfinite(spread), spread, -np.inf), axis=0)
        columns = np.arange(widest.size)
        reference = type(self.members)(**{name: values[widest, columns] for name, values in
                                          self.members.arguments().items()})
        # A point mass's continuous part spans (0, inf), where the integrand lives.
        reference = reference.continuous_part()
        u_y = np.clip(ndtri(np.clip(reference.cdf(y), 1e-300, 1 - 1e-16)), -CRPS_REACH,
                      CRPS_REACH)
        nodes, weights = np.polynomial.legendre.leggauss(CRPS_NODES)
        total = np.zeros(np.shape(y))
        for start, end, below in ((-CRPS_REACH, u_y, True), (u_y, CRPS_REACH, False)):
            half = (end - start) / 2
            for node, weight in zip(nodes, weights, strict=True):
                u = start + half * (node + 1)
                with np.errstate(over="ignore", invalid="ignore"):
                    t = reference.quantile(ndtr(u))
                    slope = (reference.quantile(ndtr(u + STEP))
                             - reference.quantile(ndtr(u - STEP))) / (2 * STEP)
                    value = self.cdf(t)
                    part = (value**2 if below else (1 - value) ** 2) * slope
                total += weight * half * np.where(np.isfinite(part), part, 0.0)
        if self.point_mass:  # from zero up to where the continuous part's nodes begin
            first = reference.quantile(ndtr(-CRPS_REACH))
            edge = np.minimum(first, np.maximum(y, 0.0))
            total += edge * (self.cdf(np.zeros(np.shape(y))) ** 2 + self.cdf(edge) ** 2) / 2
        return total


BISECTIONS = 60  # halves the members' quantile spread 60 times: float precision
CRPS_REACH, CRPS_NODES, STEP = 8.0, 96, 1e-4
