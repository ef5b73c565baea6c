"""The reference data-generating process (see README): numpy and pandas, no torch.

    x ~ Uniform(x_low, x_high)
    mu(x)    = intercept + slope * x + cos_amplitude * cos(cos_frequency * x)
    sigma(x) = noise_offset + noise_amplitude * sin(noise_frequency * x)
    y ~ Normal(mu(x), sigma(x)^2)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepnormal.config import GenerateParams

# The synthetic table's columns: one feature, then the target.
COLUMNS = ("x", "y")


def true_mean(x: np.ndarray, p: GenerateParams) -> np.ndarray:
    return p.intercept + p.slope * x + p.cos_amplitude * np.cos(p.cos_frequency * x)


def true_sigma(x: np.ndarray, p: GenerateParams) -> np.ndarray:
    return p.noise_offset + p.noise_amplitude * np.sin(p.noise_frequency * x)


def sample(p: GenerateParams) -> tuple[np.ndarray, np.ndarray]:
    """Draw n points (x, y) from the process with the params' seed."""
    rng = np.random.default_rng(p.seed)
    x = rng.uniform(p.x_low, p.x_high, size=p.n)
    # sigma(x) can touch 0 (e.g. at x = -3.927 for the defaults); the noise is then exactly 0.
    noise = rng.standard_normal(p.n) * true_sigma(x, p)
    return x, true_mean(x, p) + noise


def table(p: GenerateParams) -> pd.DataFrame:
    """The n sampled points as a table of COLUMNS."""
    return pd.DataFrame(dict(zip(COLUMNS, sample(p), strict=True)))
