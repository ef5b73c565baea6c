"""Reading a user's table and checking it, with one clear message per problem. No torch.

A table comes as it is: numeric columns, text or yes/no columns (categorical), empty cells.
The generate stage (`prepare_table`) decides each feature's kind once, on the whole table,
and cuts it into splits with categories as text and empty cells left empty; the kinds travel
with the splits in their description (prepared.py), so a column's kind never depends on which
rows a split happens to hold. What is *learned* from the data (vocabularies, fill values,
standardisation) is fitted on the training split alone, by `preprocessing.TableEncoder`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from deepnormal.cells import (
    TYPED_SHARE,
    canonical_categories,
    cell_text,
    date_format,
    dates,
    is_formatted,
    numbers,
)
from deepnormal.errors import DeepnormalError

SPLITS = ("train", "val", "test")
MIN_SPLIT_ROWS = 5
# A feature's kind. A date column becomes numeric inputs (a day count and the seasons: the
# table encoder), read with the format the generate stage found for it.
NUMERIC, CATEGORICAL, DATE = "numeric", "categorical", "date"
# A categorical column with at least this share of distinct values is probably an identifier.
IDENTIFIER_SHARE = 0.9


@dataclass
class PrepareReport:
    """What the generate stage did to a user's table, to print and to keep."""

    kinds: dict[str, str]
    why: dict[str, str]  # categorical feature -> why it is categorical
    target_rows_dropped: int = 0  # rows whose target cell was empty
    rows_dropped: int = 0  # rows dropped for an empty feature cell (data.missing: drop)
    missing: dict[str, int] = field(default_factory=dict)  # feature -> empty cells kept
    warnings: list[str] = field(default_factory=list)
    target_rows_infinite: int = 0  # rows whose target was infinite (dropped too)
    date_formats: dict[str, str] = field(default_factory=dict)  # date feature -> its format
    formatted: list[str] = field(default_factory=list)  # numeric features with "1,234" cells

    def as_dict(self) -> dict:
        def notes(name: str) -> dict:
            return ({"why": self.why[name]} if name in self.why else {}) | (
                {"format": self.date_formats[name]} if name in self.date_formats else {}) | (
                {"formatted_numbers": True} if name in self.formatted else {})

        return {"features": [{"name": name, "kind": kind, **notes(name)}
                             for name, kind in self.kinds.items()],
                "target_rows_dropped": self.target_rows_dropped,
                "target_rows_infinite": self.target_rows_infinite,
                "rows_dropped": self.rows_dropped, "missing_cells": self.missing,
                "warnings": self.warnings}

    def lines(self) -> list[str]:
        numeric = [name for name, kind in self.kinds.items() if kind == NUMERIC]
        lines = [f"numeric columns: {', '.join(numeric) or 'none'}"]
        if self.formatted:
            lines.append(f"read as numbers (thousands separators or currency signs removed): "
                         f"{', '.join(self.formatted)}")
        if self.date_formats:
            lines.append("date columns, each a day count and its day of the week and of the "
                         "year: " + ", ".join(f"{name} ({fmt})"
                                              for name, fmt in self.date_formats.items()))
        if self.why:
            lines.append("categorical columns: " + ", ".join(
                f"{name} ({why})" for name, why in self.why.items()))
        empty = self.target_rows_dropped - self.target_rows_infinite
        if empty:
            lines.append(f"dropped {empty} row(s) whose target is empty (a target cannot be "
                         "imputed)")
        if self.target_rows_infinite:
            lines.append(f"dropped {self.target_rows_infinite} row(s) whose target is infinite")
        if self.rows_dropped:
            lines.append(f"dropped {self.rows_dropped} row(s) with an empty feature cell "
                         "(data.missing: drop)")
        if self.missing:
            lines.append("empty cells kept, filled at training (data.missing: impute): " +
                         ", ".join(f"{name} {count}" for name, count in self.missing.items()))
        return lines + [f"warning: {warning}" for warning in self.warnings]


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict:
    """A seeded random partition of range(n) into train / val / test index arrays."""
    # A child stream of the data seed, so that splitting never shifts the sampled values.
    order = np.random.default_rng([seed, 1]).permutation(n)
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    return {
        "val": np.sort(order[:n_val]),
        "test": np.sort(order[n_val:n_val + n_test]),
        "train": np.sort(order[n_val + n_test:]),
    }


def text_error(path, column: str, values: pd.Series, text: pd.Series, advice: str,
               what: str = "numbers") -> None:
    row = int(np.argmax(text.to_numpy()))
    raise DeepnormalError(
        f"data file {path}, column '{column}': {int(text.sum())} value(s) are not {what}; "
        f"first at data row {values.index[row] + 1}: {cell_text(values.iloc[row])}{advice}")


def column_kinds(frame: pd.DataFrame, features: list[str], declared: list[str],
                 path) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Each feature's kind, why each categorical one is (declared in data.categorical, a
    yes/no column, or text) and each date column's format. A text column that is nearly all
    numbers (or dates) is an error (a numeric or date column with typos) naming the first
    cell that is not."""
    kinds, why, formats = {}, {}, {}
    for name in features:
        values = frame[name]
        if name in declared:
            kinds[name], why[name] = CATEGORICAL, "declared in data.categorical"
        elif pd.api.types.is_datetime64_any_dtype(values) or isinstance(
                values.dtype, pd.PeriodDtype):
            kinds[name], formats[name] = DATE, "ISO8601"  # new rows may come as text
        elif pd.api.types.is_bool_dtype(values) or _is_yes_no(values):
            kinds[name], why[name] = CATEGORICAL, "yes/no"
        elif pd.api.types.is_numeric_dtype(values):
            kinds[name] = NUMERIC
        else:
            parsed, text = numbers(values)
            filled = int(parsed.notna().sum() + text.sum())
            fmt = date_format(values) if text.any() else None
            if not text.any():
                kinds[name] = NUMERIC
            elif fmt is not None:
                not_dates = dates(values, fmt)[1]
                if not_dates.any():
                    text_error(path, name, values, not_dates, " (fix those cells, or list the "
                               "column in data.categorical)", what="dates")
                kinds[name], formats[name] = DATE, fmt
            elif filled and parsed.notna().sum() / filled >= TYPED_SHARE:
                text_error(path, name, values, text,
                           " (fix those cells, or list the column in data.categorical)")
            else:
                kinds[name], why[name] = CATEGORICAL, "text"
    return kinds, why, formats


def _is_yes_no(values: pd.Series) -> bool:
    labels = set(canonical_categories(values).dropna().str.lower())
    return bool(labels) and labels <= {"yes", "no", "true", "false", "y", "n"}


def typed_features(frame: pd.DataFrame, kinds: dict[str, str],
                   date_formats: dict[str, str]) -> pd.DataFrame:
    """Numeric columns as floats (empty or infinite: NaN), categorical ones as text, date
    columns as datetime64 (empty: NaT)."""
    typed = {}
    for name, kind in kinds.items():
        if kind == CATEGORICAL:
            typed[name] = canonical_categories(frame[name])
        elif kind == DATE:
            typed[name] = dates(frame[name], date_formats.get(name))[0]
        else:
            typed[name] = numbers(frame[name])[0]
    return pd.DataFrame(typed, index=frame.index)


# --- the generate stage -------------------------------------------------------------------

def _target(frame: pd.DataFrame, target: str, path,
            family) -> tuple[pd.Series, np.ndarray, int]:
    """The target as floats, which rows to keep (its cell is neither empty nor infinite) and
    how many were infinite; text in it, or a value outside the family's support, is an error
    naming the first such row."""
    values = frame[target]
    if pd.api.types.is_bool_dtype(values):
        raise DeepnormalError(f"data file {path}: the target '{target}' is a yes/no column; "
                              "the target must be a number")
    parsed, text = numbers(values)
    if text.any():
        row = int(np.argmax(text.to_numpy()))
        raise DeepnormalError(
            f"data file {path}: the target '{target}' holds text ({int(text.sum())} cell(s), "
            f"first at data row {values.index[row] + 1}: {cell_text(values.iloc[row])}); the "
            "target must be a number")
    keep = parsed.notna().to_numpy()
    infinite = int(np.isinf(pd.to_numeric(values, errors="coerce")).sum())
    invalid = keep & family.invalid_target(parsed.fillna(1.0).to_numpy())
    if invalid.any():
        row = int(np.argmax(invalid))
        raise DeepnormalError(
            f"data file {path}: model.distribution: {family.name} needs a target of "
            f"{family.support}; column '{target}' has {int(invalid.sum())} that are not, first "
            f"at data row {values.index[row] + 1}: {cell_text(values.iloc[row])} (use "
            "model.distribution: normal)")
    return parsed, keep, infinite


def prepare_table(frame: pd.DataFrame, features: list[str], target: str,
                  split_column: str | None, path, split: tuple[float, float, int],
                  categorical: list[str] = (), missing: str = "impute",
                  family=None) -> tuple[dict[str, pd.DataFrame], PrepareReport]:
    """Validate a user's table and cut it into train / val / test frames (the feature
    columns typed by kind, then the target), and report what was decided and dropped.

    `split` is (val_fraction, test_fraction, seed), used unless split_column names a column
    holding 'train' / 'val' / 'test'; `missing` is data.missing; `family` (a family class,
    family.Normal by default) says which targets are valid."""
    if family is None:
        from deepnormal.family import Normal

        family = Normal
    wanted = [*features, target] + ([split_column] if split_column else [])
    absent = [column for column in wanted if column not in frame.columns]
    if absent:
        raise DeepnormalError(f"data file {path} has no column {', '.join(map(repr, absent))}; "
                              f"its columns are: {', '.join(map(str, frame.columns))}")
    if frame.empty:
        raise DeepnormalError(f"data file {path} has a header but no data rows")
    frame = frame[wanted].reset_index(drop=True)
    y, keep, infinite = _target(frame, target, path, family)
    report = PrepareReport({}, {}, target_rows_dropped=int((~keep).sum()),
                           target_rows_infinite=infinite)
    frame, y = frame[keep], y[keep]
    report.kinds, report.why, report.date_formats = column_kinds(frame, features,
                                                                 list(categorical), path)
    report.formatted = [name for name, kind in report.kinds.items()
                        if kind == NUMERIC and is_formatted(frame[name])]
    typed = typed_features(frame, report.kinds, report.date_formats)
    empty = typed.isna()
    for name in features:
        if empty[name].all():
            raise DeepnormalError(f"data file {path}, column '{name}': every cell is empty; "
                                  "drop the column from data.features")
    if missing == "error" and empty.to_numpy().any():
        name = next(c for c in features if empty[c].any())
        row = int(np.argmax(empty[name].to_numpy()))
        raise DeepnormalError(
            f"data file {path}, column '{name}': {int(empty[name].sum())} cell(s) are empty or "
            f"infinite; first at data row {typed.index[row] + 1}: "
            f"{cell_text(frame[name].iloc[row])} (data.missing: impute fills them, drop drops "
            "the rows)")
    if missing == "drop":
        full = ~empty.any(axis=1)
        report.rows_dropped = int((~full).sum())
        typed, y, frame = typed[full], y[full], frame[full]
    report.missing = {name: int(count) for name, count in typed.isna().sum().items() if count}
    clean = typed.assign(**{target: y})
    clean.index = range(len(clean))
    if split_column:
        labels = frame[split_column].astype(str).str.strip().str.lower()
        unknown = sorted(set(labels) - set(SPLITS))
        if unknown:
            raise DeepnormalError(f"data file {path}, column '{split_column}': split labels must "
                                  f"be train, val or test; found {unknown[:5]}")
        parts = {name: np.flatnonzero(labels.to_numpy() == name) for name in SPLITS}
    else:
        val_fraction, test_fraction, seed = split
        parts = split_indices(len(clean), val_fraction, test_fraction, seed)
    for name in SPLITS:
        if len(parts[name]) < MIN_SPLIT_ROWS:
            raise DeepnormalError(
                f"data file {path}: the '{name}' split would have {len(parts[name])} rows "
                f"(of {len(clean)} usable), need at least {MIN_SPLIT_ROWS}; add rows or "
                "change the split")
    frames = {name: clean.iloc[index] for name, index in parts.items()}
    train = frames["train"]
    for name in features:
        if train[name].isna().all():
            raise DeepnormalError(f"data file {path}, column '{name}': every cell of the "
                                  "training split is empty; drop the column from data.features")
    for name in report.why:
        labels = train[name].dropna()
        if len(labels) >= 20 and labels.nunique() >= IDENTIFIER_SHARE * len(labels):
            report.warnings.append(
                f"categorical column '{name}' has {labels.nunique()} distinct values in "
                f"{len(labels)} training rows: probably an identifier, which cannot "
                "generalise; consider dropping it from data.features")
    return frames, report
