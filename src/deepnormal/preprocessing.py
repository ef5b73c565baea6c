"""The one fitted object that describes a table: fitted on the training split, stored in the
checkpoint as plain values (numbers, strings, lists), applied by train, evaluate,
`deepnormal-predict` and the served model alike. No torch at import (only fitting bin edges
loads it).

- numeric column: an empty cell gets the training median, and each column that had empty
  cells in training gets a 0/1 "was empty" input beside it; a column that is never negative,
  takes more than two values and is skewed in training becomes log(1 + x) (model.log_skewed);
  a cell beyond the range the training split spanned is counted, and held to that range
  widened by HELD_MARGIN training standard deviations (a network extrapolates linearly, and
  a log-normal turns a far row into an absurd spread; a little way out, as on credit, where
  the balance grows linearly with the limit, extrapolation is right: clipping at the range
  itself cost credit 0.11 nats a point); then standardised with the training mean and std
  (identity with model.standardize false, where the margin is HELD_MARGIN units); with
  model.numeric_encoding piecewise, also the edges of quantile bins of those standardised
  training values, from which the network builds each number's piecewise-linear encoding;
- date column: a day count (since 1970, held near the training range and standardised, as a
  number is) and the day of the year and of the week, each as a point on a circle (sin, cos)
  so that December meets January; an empty cell gets the training median date;
- categorical column: a code per category seen in at least data.min_category_rows training
  rows; code 0 is the "unknown" slot shared by rarer categories and by categories never seen
  in training; an empty cell is the category "(missing)" (its own code when it was frequent
  enough in training);
- target: the family's transform (log y for the log-normal), standardised.
In the spirit of pytorch-tabular's fitted datamodule, nothing downstream re-derives any of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from deepnormal.cells import canonical_categories, cell_text, dates, numbers
from deepnormal.data import CATEGORICAL, DATE
from deepnormal.errors import DeepnormalError
from deepnormal.family import family_named
from deepnormal.prepared import Split

MISSING_CATEGORY = "(missing)"
UNKNOWN_CODE = 0


@dataclass(frozen=True)
class Encoded:
    """A table as the network takes it."""

    numeric: np.ndarray  # float32 [n, numeric_dim]: standardised values and "was empty" flags
    codes: np.ndarray  # int64 [n, categorical columns]
    unknown: dict[str, int]  # categorical column -> cells that went to the unknown slot
    filled: dict[str, int]  # column -> empty cells filled (median, or the missing category)
    outside: dict[str, int]  # numeric or date column -> cells beyond the training range
    row_outside: np.ndarray  # int [n]: each row's cells beyond the training range

    def __len__(self) -> int:
        return len(self.numeric)


# A numeric column that is never negative, takes more than two values and has a sample
# skewness above this (counts, amounts, career totals) enters the network as log(1 + x)
# when that helps a straight line fit the target (columns_to_log): trees do not mind a long
# tail, a network's first layer does.
SKEW_THRESHOLD = 1.0


def columns_to_log(numeric: dict[str, np.ndarray], target: np.ndarray,
                   other: np.ndarray) -> set[str]:
    """The skewed, never negative columns (skewed_count) whose log(1 + x), one column at a
    time, lets a least-squares line on every input (`other`: the rest, e.g. one-hot
    categories) fit the transformed target with a smaller residual: a long tail that the
    target does not share stays as it is (a balance linear in income)."""
    names = list(numeric)
    base = np.column_stack([np.ones(len(target)), *numeric.values(), other])

    def residual(design: np.ndarray) -> float:
        solution, *_ = np.linalg.lstsq(design, target, rcond=None)
        return float(np.sum((target - design @ solution) ** 2))

    plain = residual(base)
    chosen = set()
    for j, name in enumerate(names):
        if skewed_count(numeric[name]):
            design = base.copy()
            design[:, 1 + j] = np.log1p(numeric[name])
            if residual(design) < plain:
                chosen.add(name)
    return chosen


def scaling(values: np.ndarray, standardize: bool) -> tuple[float, float]:
    """A numeric input's standardisation (mean, std); identity without `standardize`."""
    if not standardize:
        return 0.0, 1.0
    std = float(values.std())
    # A constant column would divide by zero; leave it unscaled.
    return float(values.mean()), std if std > 0 else 1.0


def skewed_count(values: np.ndarray) -> bool:
    if values.min() < 0 or len(np.unique(values)) <= 2:
        return False
    centred = values - values.mean()
    spread = np.sqrt(np.mean(centred ** 2))
    return spread > 0 and float(np.mean(centred ** 3) / spread ** 3) > SKEW_THRESHOLD


# The seasons of a date: the day of the year and of the week, each on a circle.
DAYS_A_YEAR, DAYS_A_WEEK = 365.25, 7.0
DATE_INPUTS = 5  # the day count, then sin and cos of each season


def day_counts(values: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 (float, NaN for an empty cell) of datetime64 cells."""
    stamps = values.astype("datetime64[ns]")
    days = stamps.to_numpy().astype("datetime64[ns]").astype(np.int64) / 86_400e9
    return np.where(stamps.isna().to_numpy(), np.nan, days)


def seasons(days: np.ndarray) -> list[np.ndarray]:
    """sin and cos of the day of the year and of the week, from day counts (1970-01-01 was a
    Thursday; a year's phase from the mean year keeps it smooth over leap years)."""
    year = 2 * np.pi * np.mod(days, DAYS_A_YEAR) / DAYS_A_YEAR
    week = 2 * np.pi * np.mod(days, DAYS_A_WEEK) / DAYS_A_WEEK
    return [np.sin(year), np.cos(year), np.sin(week), np.cos(week)]


# How far beyond the training range a value may extrapolate, in training standard deviations.
HELD_MARGIN = 1.0


def held(values: np.ndarray, low: float | None, high: float | None,
         std: float) -> tuple[np.ndarray, np.ndarray]:
    """(values clipped to [low, high] widened by HELD_MARGIN * std, where a value lay beyond
    [low, high] itself); no range: as they are."""
    if low is None or high is None:
        return values, np.zeros(len(values), dtype=bool)
    low32, high32 = np.asarray(low, values.dtype), np.asarray(high, values.dtype)
    beyond = (values < low32) | (values > high32)
    margin = np.asarray(HELD_MARGIN * std, values.dtype)
    return np.clip(values, low32 - margin, high32 + margin), beyond


@dataclass(frozen=True)
class NumericColumn:
    name: str
    fill: float  # the training median, for empty cells
    log: bool  # enters as log(1 + x)
    flag: bool  # had empty cells in training: a 0/1 "was empty" input beside it
    mean: float  # standardisation, after the log
    std: float
    low: float | None = None  # the training range, after the log (None: older checkpoints)
    high: float | None = None
    # Quantile bin edges of the standardised training values, for the network's
    # piecewise-linear encoding (model.numeric_encoding); None: the number enters as it is.
    edges: tuple[float, ...] | None = None


@dataclass(frozen=True)
class DateColumn:
    name: str
    format: str  # how new rows write the date (cells.DATE_FORMATS)
    fill: float  # the training median, as a day count
    flag: bool
    mean: float  # standardisation of the day count
    std: float
    low: float  # the training range of the day count
    high: float


@dataclass(frozen=True)
class CategoricalColumn:
    name: str
    categories: tuple[str, ...]  # category i has code i + 1; code 0 is the unknown slot


@dataclass(frozen=True)
class TargetScaling:
    """The target's family and the standardisation of its transform (log y, or y)."""

    name: str
    family: str
    mean: float
    std: float


@dataclass(frozen=True)
class TableEncoder:
    numeric: tuple[NumericColumn, ...]
    categorical: tuple[CategoricalColumn, ...]
    target: TargetScaling
    dates: tuple[DateColumn, ...] = ()

    @classmethod
    def fit(cls, train: Split, family: str = "normal", standardize: bool = True,
            min_category_rows: int = 1, log_skewed: bool = False,
            piecewise_bins: int = 0) -> TableEncoder:
        encoder = cls._fit(train, family, standardize, min_category_rows, log_skewed)
        return encoder.with_edges(train, piecewise_bins) if piecewise_bins else encoder

    def with_edges(self, train: Split, bins: int) -> TableEncoder:
        """The encoder with each numeric column's quantile bin edges (at most `bins` bins,
        fewer where values repeat), computed by rtdl_num_embeddings on the standardised
        training values the network sees; a column of one or two values (yes/no) gets none:
        one bin would only rescale it."""
        import torch
        from rtdl_num_embeddings import compute_bins

        encoded = self.encode(train.frame).numeric
        numeric = []
        for column, position in zip(self.numeric, self.value_positions, strict=True):
            values = torch.as_tensor(encoded[:, [position]], dtype=torch.float32)
            if len(torch.unique(values)) <= 2:
                numeric.append(column)
                continue
            edges = compute_bins(values, n_bins=min(bins, len(values) - 1))[0]
            numeric.append(replace(column, edges=tuple(float(e) for e in edges)))
        return replace(self, numeric=tuple(numeric))

    @property
    def value_positions(self) -> list[int]:
        """Where each numeric column's value sits among the network's numeric inputs."""
        return [int(p) for p in np.cumsum([0] + [1 + c.flag for c in self.numeric])[:-1]]

    @classmethod
    def _fit(cls, train: Split, family: str, standardize: bool, min_category_rows: int,
             log_skewed: bool) -> TableEncoder:
        filled, numeric, categorical, date_columns = {}, [], [], []
        for name in train.feature_names:
            values = train.frame[name]
            if train.kinds[name] == CATEGORICAL:
                counts = canonical_categories(values).fillna(MISSING_CATEGORY).value_counts()
                kept = sorted(str(c) for c, n in counts.items() if n >= min_category_rows)
                categorical.append(CategoricalColumn(name, tuple(kept)))
                continue
            if train.kinds[name] == DATE:
                date_columns.append(_fit_date(name, train.date_formats.get(name, "ISO8601"),
                                              dates(values, None)[0], standardize))
                continue
            x = numbers(values)[0]
            if x.isna().all():
                raise DeepnormalError(f"column '{name}' is empty in every row of the training "
                                      "split; drop it from data.features")
            fill = float(x.median())
            filled[name] = x.fillna(fill).to_numpy()
            numeric.append(NumericColumn(name, fill, False, bool(x.isna().any()),
                                         *scaling(filled[name], standardize),
                                         *value_range(filled[name], False)))
        fam = family_named(family)
        t = fam.transform(train.target)
        # Rows with a density (a point mass's rows have no transformed value) set the scale.
        dense = np.isfinite(t)
        if not dense.all():
            t = t[dense]
        std = float(t.std()) if standardize else 1.0
        encoder = cls(tuple(numeric), tuple(categorical), TargetScaling(
            train.target_name, fam.name, float(t.mean()) if standardize else 0.0,
            std if std > 0 else 1.0), tuple(date_columns))
        if not log_skewed:
            return encoder
        # The line that decides sees the categories as the linear baseline does (one-hot).
        one_hot = encoder.design(encoder.encode(train.frame))[:, encoder.numeric_dim:]
        logged = columns_to_log({name: values[dense] for name, values in filled.items()}, t,
                                one_hot[dense])
        numeric = [NumericColumn(c.name, c.fill, True, c.flag,
                                 *scaling(np.log1p(filled[c.name]), standardize),
                                 *value_range(filled[c.name], True))
                   if c.name in logged else c for c in numeric]
        return cls(tuple(numeric), encoder.categorical, encoder.target, encoder.dates)

    # --- plain values, for the checkpoint ---------------------------------------------
    def to_dict(self) -> dict:
        return {"numeric": [_plain(asdict(c)) for c in self.numeric],
                "categorical": [{"name": c.name, "categories": list(c.categories)}
                                for c in self.categorical],
                "target": asdict(self.target)} | (
            {"dates": [asdict(c) for c in self.dates]} if self.dates else {})

    @classmethod
    def from_dict(cls, values: dict) -> TableEncoder:
        # Older checkpoints: no log (every input as it is), no range (nothing held), no dates.
        numeric = tuple(NumericColumn(c["name"], c["fill"], c.get("log", False), c["flag"],
                                      c["mean"], c["std"], c.get("low"), c.get("high"),
                                      None if c.get("edges") is None else tuple(c["edges"]))
                        for c in values["numeric"])
        categorical = tuple(CategoricalColumn(c["name"], tuple(c["categories"]))
                            for c in values["categorical"])
        date_columns = tuple(DateColumn(**c) for c in values.get("dates", ()))
        return cls(numeric, categorical, TargetScaling(**values["target"]), date_columns)

    # --- what the network needs -------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return ([c.name for c in self.numeric] + [c.name for c in self.dates]
                + [c.name for c in self.categorical])

    @property
    def numeric_dim(self) -> int:
        """Inputs before the categories: numbers, dates and their "was empty" flags."""
        return (len(self.numeric) + sum(c.flag for c in self.numeric)
                + sum(DATE_INPUTS + c.flag for c in self.dates))

    @property
    def cardinalities(self) -> list[int]:
        """Codes per categorical column, the unknown slot included."""
        return [len(c.categories) + 1 for c in self.categorical]

    @property
    def family(self):
        return family_named(self.target.family)

    @property
    def categorical_names(self) -> list[str]:
        return [c.name for c in self.categorical]

    # --- applying it --------------------------------------------------------------------
    def encode(self, frame: pd.DataFrame, source: str = "the input") -> Encoded:
        """Encode a table holding (at least) the feature columns. Empty cells and unseen
        categories are normal input; text in a numeric column is an error naming it."""
        absent = [name for name in self.feature_names if name not in frame.columns]
        if absent:
            raise DeepnormalError(
                f"{source} has no column {', '.join(map(repr, absent))}, which the model "
                f"needs; its columns are: {', '.join(map(str, frame.columns))}")
        n = len(frame)
        columns, filled, unknown, outside = [], {}, {}, {}
        row_outside = np.zeros(n, dtype=np.int64)
        for spec in self.numeric:
            raw = frame[spec.name]
            x, text = numbers(raw)
            if text.any():
                _not_a(spec.name, "numbers", raw, text, source)
            empty = x.isna().to_numpy()
            filled[spec.name] = int(empty.sum())
            # In float32, as the network computes: the same arithmetic whatever the caller.
            values = _as_input(x.fillna(spec.fill), spec.log)
            values, beyond = held(values, spec.low, spec.high, spec.std)
            outside[spec.name] = int(beyond.sum())
            row_outside += beyond
            columns.append((values - np.float32(spec.mean)) / np.float32(spec.std))
            if spec.flag:
                columns.append(empty.astype(np.float64))
        for spec in self.dates:
            raw = frame[spec.name]
            read, text = dates(raw, spec.format)
            if text.any():
                _not_a(spec.name, f"dates ({spec.format})", raw, text, source)
            days = day_counts(read)
            empty = np.isnan(days)
            filled[spec.name] = int(empty.sum())
            days = np.where(empty, spec.fill, days)
            count, beyond = held(days.astype(np.float32), spec.low, spec.high, spec.std)
            outside[spec.name] = int(beyond.sum())
            row_outside += beyond
            columns.append((count - np.float32(spec.mean)) / np.float32(spec.std))
            columns += [part.astype(np.float32) for part in seasons(days)]
            if spec.flag:
                columns.append(empty.astype(np.float64))
        codes = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, spec in enumerate(self.categorical):
            labels = canonical_categories(frame[spec.name])
            filled[spec.name] = int(labels.isna().sum())
            lookup = {label: i + 1 for i, label in enumerate(spec.categories)}
            column = labels.fillna(MISSING_CATEGORY).map(lookup)
            # An empty cell counts as filled; it takes the unknown slot only when training
            # had too few empty cells for a "(missing)" category of its own.
            unknown[spec.name] = int((column.isna() & labels.notna()).sum())
            codes[:, j] = column.fillna(UNKNOWN_CODE).to_numpy(dtype=np.int64)
        numeric = (np.column_stack(columns) if columns else np.zeros((n, 0))).astype(np.float32)
        return Encoded(numeric, codes, unknown, filled, outside, row_outside)

    def design(self, encoded: Encoded) -> np.ndarray:
        """The encoded inputs as one float matrix (categories one-hot), for linear models."""
        blocks = [encoded.numeric.astype(np.float64)]
        for j, size in enumerate(self.cardinalities):
            blocks.append(np.eye(size)[encoded.codes[:, j]])
        return np.column_stack(blocks) if blocks else np.zeros((len(encoded), 0))

    def target_z(self, y: np.ndarray) -> np.ndarray:
        """The standardised transformed target the network is trained on (NaN on a point
        mass, where there is none)."""
        return (self.family.transform(y) - self.target.mean) / self.target.std


def _plain(column: dict) -> dict:
    """A numeric column's values for the checkpoint: edges as a list, and none without."""
    edges = column.pop("edges")
    return column if edges is None else column | {"edges": list(edges)}


def _as_input(values: pd.Series, log: bool) -> np.ndarray:
    """A numeric column's filled values as the network's input, before standardising."""
    values = values.to_numpy(dtype=np.float32)
    return np.log1p(np.maximum(values, np.float32(0))) if log else values


def value_range(filled: np.ndarray, log: bool) -> tuple[float, float]:
    """The training range of a numeric input, in the float32 arithmetic encode uses, so that
    no training value counts as outside it."""
    values = _as_input(pd.Series(filled), log)
    return float(values.min()), float(values.max())


def _fit_date(name: str, fmt: str, values: pd.Series, standardize: bool) -> DateColumn:
    days = day_counts(values)
    if np.isnan(days).all():
        raise DeepnormalError(f"column '{name}' is empty in every row of the training split; "
                              "drop it from data.features")
    fill = float(np.nanmedian(days))
    full = np.where(np.isnan(days), fill, days)
    as32 = full.astype(np.float32)
    return DateColumn(name, fmt, fill, bool(np.isnan(days).any()), *scaling(full, standardize),
                      float(as32.min()), float(as32.max()))


def _not_a(name: str, what: str, raw: pd.Series, wrong: pd.Series, source: str) -> None:
    row = int(np.argmax(wrong.to_numpy()))
    raise DeepnormalError(f"{source}, column '{name}': {int(wrong.sum())} value(s) are not "
                          f"{what}; first at data row {row + 1}: {cell_text(raw.iloc[row])}")
