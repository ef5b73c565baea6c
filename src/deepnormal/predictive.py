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
        """Bounds of the central `level` interval."""
        tail = (1.0 - level) / 2.0
        return self.quantile(tail), self.quantile(1.0 - tail)

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
