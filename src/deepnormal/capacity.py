"""What the network gets for a table of a given size: pure functions of the training rows and
the model's settings (config.ModelParams), so that one params.yaml serves 200 rows and 60,000.

- Piecewise-linear encoding of the numbers (Gorishniy et al. 2022): each number also enters
  as its position in quantile bins of the training split, which lets a small MLP bend where
  a tree would split. It cost small tables (engel, diabetes, carseats: up to 0.22 nats) and is
  used from PIECEWISE_MIN_ROWS training rows under model.numeric_encoding auto
  (docs/model-quality.md has the figures).
"""

from __future__ import annotations

from deepnormal.config import ModelParams

PIECEWISE_MIN_ROWS = 5_000


def piecewise_bins(model: ModelParams, rows: int) -> int:
    """Bins per number for the piecewise-linear encoding of a table with `rows` training rows;
    0: the numbers enter as they are."""
    wanted = model.numeric_encoding == "piecewise" or (
        model.numeric_encoding == "auto" and rows >= PIECEWISE_MIN_ROWS)
    return model.piecewise_bins if wanted else 0
