"""Reference predictors scored beside the model: pure numpy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from deepnormal.family import Normal
from deepnormal.predictive import Predictive


@dataclass(frozen=True)
class LinearGaussian:
    """Homoscedastic least-squares line: y ~ N(a + b.x, s^2) with one global s (MLE)."""

    intercept: float
    coefficients: np.ndarray
    sigma: float

    @classmethod
    def fit(cls, features: np.ndarray, target: np.ndarray) -> LinearGaussian:
        design = np.column_stack([np.ones(len(features)), features])
        solution, *_ = np.linalg.lstsq(design, target, rcond=None)
        residuals = target - design @ solution
        return cls(float(solution[0]), solution[1:], float(np.sqrt(np.mean(residuals**2))))

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu = self.intercept + features @ self.coefficients
        return mu, np.full(len(features), self.sigma)


def line(family: type[Predictive], design: np.ndarray,
         target: np.ndarray) -> Callable[[np.ndarray], Predictive]:
    """The homoscedastic straight line a model of `family` is compared with, fitted on the
    training design: for the Normal and the log-normal, the least-squares line of the
    transformed target with one global sigma; for a point mass at zero, the share of zeros
    and that log-normal line on the positive rows; for the heavy-tailed families, the Normal
    line of the target itself. Returns design -> its distribution per row."""
    if family.point_mass:
        zero = family.in_mass(target)
        positive = LinearGaussian.fit(design[~zero], np.log(target[~zero]))
        share = float(np.mean(zero))
        return lambda rows: family(np.full(len(rows), share), *positive.predict(rows))
    if family.ensemble == "moments":
        fitted = LinearGaussian.fit(design, family.transform(target))
        return lambda rows: family(*fitted.predict(rows))
    fitted = LinearGaussian.fit(design, target)
    return lambda rows: Normal(*fitted.predict(rows))
