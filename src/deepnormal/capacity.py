"""What the network gets for a table of a given size: pure functions of the training rows and
the model's settings (config.ModelParams), so that one params.yaml serves 200 rows and 60,000.

- Piecewise-linear encoding of the numbers (Gorishniy et al. 2022): each number also enters
  as its position in quantile bins of the training split, which lets a small MLP bend where
  a tree would split. Under model.numeric_encoding auto it is used from PIECEWISE_MIN_ROWS
  training rows: it cost small tables (engel, diabetes, carseats, 141-265 training rows: up
  to 0.22 nats); from 1,000 it was neutral or better: wage (1,800) and exam (2,435) within
  0.002, stackoverflow (3,356) 0.011 better, the reference problem (1,200, one number whose
  noise vanishes at one point: a scale that must fall steeply) 0.03 better with a longer run,
  and every table of 4,800 training rows and more (deliveries, txhousing, hotels by 0.09,
  gapminder, cpssw8; docs/model-quality.md).
"""

from __future__ import annotations

from deepnormal.config import ModelParams

PIECEWISE_MIN_ROWS = 1_000


def piecewise_bins(model: ModelParams, rows: int) -> int:
    """Bins per number for the piecewise-linear encoding of a table with `rows` training rows;
    0: the numbers enter as they are."""
    wanted = model.numeric_encoding == "piecewise" or (
        model.numeric_encoding == "auto" and rows >= PIECEWISE_MIN_ROWS)
    return model.piecewise_bins if wanted else 0
