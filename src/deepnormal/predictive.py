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

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the central `level` interval."""
        tail = (1.0 - level) / 2.0
        return self.quantile(tail), self.quantile(1.0 - tail)

    def frame(self, levels, index=None) -> pd.DataFrame:
        """The output columns: mean, median, std, the family's parameters and the central
        interval bounds at each level (`lower_95`, `upper_95`)."""
        columns = {"mean": self.mean(), "median": self.median(), "std": self.std()}
        columns |= self.parameters()
        for level in levels:
            columns.update(zip(interval_columns(level), self.interval(level), strict=True))
        return pd.DataFrame(columns, index=index)

    def beside(self, table: pd.DataFrame, levels) -> pd.DataFrame:
        """`table` (its rows in the same order) with the output columns set on it."""
        table = table.copy()
        for name, values in self.frame(levels).items():
            table[name] = values.to_numpy()
        return table

    @classmethod
    def output_columns(cls, levels) -> list[str]:
        """The names `frame` writes, in its order."""
        return [*SUMMARY_COLUMNS, *cls.columns,
                *(name for level in levels for name in interval_columns(level))]
