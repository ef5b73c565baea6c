"""The tools practitioners use instead, as baselines: CatBoost (`RMSEWithUncertainty`) and
NGBoost (`Dist=Normal`), fitted on the training split with early stopping on the validation
split, each predicting a Normal (loc, scale) of the family's transformed target (log y for the
log-normal family) as that family's distribution, so evaluate scores them exactly as it
scores the model.

Optional: the `peers` extra (`pip install 'deepnormal[peers]'`) installs both; evaluate fits
those that `evaluate.peers` names, and says how to install a missing one.
CatBoost takes the categorical columns as they are (`cat_features`, an empty cell the
"(missing)" category) and empty numeric cells as they are; NGBoost takes numbers (empty cells
the training median) and one-hot categories, the columns fitted on the training split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepnormal.data import CATEGORICAL, DATE
from deepnormal.errors import DeepnormalError
from deepnormal.predictive import Predictive
from deepnormal.prepared import Split
from deepnormal.preprocessing import MISSING_CATEGORY, day_counts

PEERS = ("catboost", "ngboost")
CATBOOST_ITERATIONS, CATBOOST_PATIENCE = 3000, 200
NGBOOST_PATIENCE = 50


@dataclass(frozen=True)
class FittedPeer:
    """A fitted peer: frame -> the family's distribution per row."""

    name: str
    predict: Callable[[pd.DataFrame], Predictive]
    seconds: float  # the fit's wall time


def categorical_columns(split: Split) -> list[str]:
    return [c for c, kind in split.kinds.items() if kind == CATEGORICAL]


def dates_as_days(frame: pd.DataFrame, split: Split) -> pd.DataFrame:
    """Date columns as day counts (trees take numbers); the rest as it is."""
    dated = [c for c, kind in split.kinds.items() if kind == DATE]
    return frame.assign(**{c: day_counts(frame[c]) for c in dated}) if dated else frame


def as_labels(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Category cells as text (numeric codes too), an empty cell the "(missing)" category."""
    return frame[columns].astype(object).fillna(MISSING_CATEGORY).astype(str)


def one_hot_encoder(train: Split) -> Callable[[pd.DataFrame], np.ndarray]:
    """Numbers (the training median for empty cells) and one-hot categories, the columns
    fitted on the training split (a category not seen there: all zeros)."""
    categorical = categorical_columns(train)
    numeric = [c for c in train.frame.columns if c not in categorical]
    medians = dates_as_days(train.frame, train)[numeric].median()
    columns = pd.get_dummies(as_labels(train.frame, categorical)).columns if categorical else []

    def encode(frame: pd.DataFrame) -> np.ndarray:
        parts = [dates_as_days(frame, train)[numeric].fillna(medians).to_numpy(float)]
        if categorical:
            parts.append(pd.get_dummies(as_labels(frame, categorical))
                         .reindex(columns=columns, fill_value=0).to_numpy(float))
        return np.column_stack(parts)

    return encode


def _require(name: str, module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DeepnormalError(
            f"evaluate.peers lists '{name}', but the {name} package is not installed: "
            "pip install 'deepnormal[peers]' (or drop it from evaluate.peers)") from None


def fit_catboost(train: Split, val: Split, family, seed: int = 0) -> FittedPeer:
    catboost = _require("catboost", "catboost")
    categorical = categorical_columns(train)

    def frame(data: pd.DataFrame) -> pd.DataFrame:
        return dates_as_days(data, train).assign(**as_labels(data, categorical))

    start = time.perf_counter()
    model = catboost.CatBoostRegressor(
        loss_function="RMSEWithUncertainty", iterations=CATBOOST_ITERATIONS, random_seed=seed,
        verbose=False, allow_writing_files=False)
    model.fit(frame(train.frame), family.transform(train.target), cat_features=categorical,
              eval_set=(frame(val.frame), family.transform(val.target)),
              early_stopping_rounds=CATBOOST_PATIENCE)
    seconds = time.perf_counter() - start

    def predict(data: pd.DataFrame) -> Predictive:
        predicted = model.predict(frame(data))  # columns: mean, variance
        return family(predicted[:, 0], np.sqrt(predicted[:, 1]))

    return FittedPeer("catboost", predict, seconds)


def fit_ngboost(train: Split, val: Split, family, seed: int = 0) -> FittedPeer:
    ngboost = _require("ngboost", "ngboost")
    encode = one_hot_encoder(train)
    start = time.perf_counter()
    model = ngboost.NGBRegressor(Dist=ngboost.distns.Normal, verbose=False, random_state=seed)
    model.fit(encode(train.frame), family.transform(train.target),
              X_val=encode(val.frame), Y_val=family.transform(val.target),
              early_stopping_rounds=NGBOOST_PATIENCE)
    seconds = time.perf_counter() - start

    def predict(data: pd.DataFrame) -> Predictive:
        params = model.pred_dist(encode(data)).params
        return family(params["loc"], params["scale"])

    return FittedPeer("ngboost", predict, seconds)


FITS = {"catboost": fit_catboost, "ngboost": fit_ngboost}


def fit_peer(name: str, train: Split, val: Split, family: type[Predictive]) -> FittedPeer:
    """`family` (a family.py class): the peer models its transformed target."""
    return FITS[name](train, val, family)
