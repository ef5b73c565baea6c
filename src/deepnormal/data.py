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
from pathlib import Path

import numpy as np
import pandas as pd

from deepnormal.errors import DeepnormalError

SPLITS = ("train", "val", "test")
MIN_SPLIT_ROWS = 5
NUMERIC, CATEGORICAL = "numeric", "categorical"
# A text column whose non-empty cells are at least this share numbers is a numeric column
# with typos, not a categorical one: an error rather than a silent vocabulary of numbers.
NUMERIC_TEXT_SHARE = 0.9
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

    def as_dict(self) -> dict:
        return {"features": [{"name": name, "kind": kind, **({"why": self.why[name]}
                                                              if name in self.why else {})}
                             for name, kind in self.kinds.items()],
                "target_rows_dropped": self.target_rows_dropped,
                "rows_dropped": self.rows_dropped, "missing_cells": self.missing,
                "warnings": self.warnings}

    def lines(self) -> list[str]:
        numeric = [name for name, kind in self.kinds.items() if kind == NUMERIC]
        lines = [f"numeric columns: {', '.join(numeric) or 'none'}"]
        if self.why:
            lines.append("categorical columns: " + ", ".join(
                f"{name} ({why})" for name, why in self.why.items()))
        if self.target_rows_dropped:
            lines.append(f"dropped {self.target_rows_dropped} row(s) whose target is empty "
                         "(a target cannot be imputed)")
        if self.rows_dropped:
            lines.append(f"dropped {self.rows_dropped} row(s) with an empty feature cell "
                         "(data.missing: drop)")
        if self.missing:
            lines.append("empty cells kept, filled at training (data.missing: impute): " +
                         ", ".join(f"{name} {count}" for name, count in self.missing.items()))
        return lines + [f"warning: {warning}" for warning in self.warnings]


def cell_text(value: object) -> str:
    """A cell as the user wrote it, for messages: 'heavy', -3.5, or 'an empty cell'."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "an empty cell"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return repr(value)


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


# --- categories as text -------------------------------------------------------------------

def canonical_categories(values: pd.Series) -> pd.Series:
    """Category labels as text, the same whichever way they arrive: 3, 3.0 and '3' are all
    '3'; True and 'True' are 'True'; surrounding spaces go; empty cells are NaN."""
    def label(value):
        if value is None or (not isinstance(value, str) and pd.isna(value)):  # NaN, NA, NaT
            return np.nan
        if isinstance(value, (bool, np.bool_)):
            return str(bool(value))
        if isinstance(value, (int, np.integer)):
            return str(int(value))
        if isinstance(value, (float, np.floating)):
            return str(int(value)) if float(value).is_integer() else repr(float(value))
        text = str(value).strip()
        return text if text else np.nan

    return pd.Series([label(v) for v in values.tolist()], index=values.index, dtype=object)


def numbers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(the column as floats, with empty and infinite cells NaN; where a cell holds text)."""
    parsed = pd.to_numeric(values, errors="coerce").astype(float)
    blank = values.isna() | (values.astype(str).str.strip() == "")
    text = parsed.isna() & ~blank
    return parsed.where(np.isfinite(parsed)), text


def text_error(path, column: str, values: pd.Series, text: pd.Series, advice: str) -> None:
    row = int(np.argmax(text.to_numpy()))
    raise DeepnormalError(
        f"data file {path}, column '{column}': {int(text.sum())} value(s) are not numbers; "
        f"first at data row {values.index[row] + 1}: {cell_text(values.iloc[row])}{advice}")


def column_kinds(frame: pd.DataFrame, features: list[str], declared: list[str],
                 path) -> tuple[dict[str, str], dict[str, str]]:
    """Each feature's kind, and why each categorical one is: declared in data.categorical,
    a yes/no column, or text. A text column that is nearly all numbers is an error (a
    numeric column with typos) naming the first text cell."""
    kinds, why = {}, {}
    for name in features:
        values = frame[name]
        if pd.api.types.is_datetime64_any_dtype(values) or isinstance(
                values.dtype, pd.PeriodDtype):
            raise DeepnormalError(
                f"data file {path}, column '{name}' holds dates, which the model cannot take "
                "as they are; turn them into numbers (e.g. days since a start, the month) or "
                "text in the table, or drop the column from data.features")
        if name in declared:
            kinds[name], why[name] = CATEGORICAL, "declared in data.categorical"
        elif pd.api.types.is_bool_dtype(values) or _is_yes_no(values):
            kinds[name], why[name] = CATEGORICAL, "yes/no"
        elif pd.api.types.is_numeric_dtype(values):
            kinds[name] = NUMERIC
        else:
            parsed, text = numbers(values)
            filled = int(parsed.notna().sum() + text.sum())
            if not text.any():
                kinds[name] = NUMERIC
            elif filled and parsed.notna().sum() / filled >= NUMERIC_TEXT_SHARE:
                text_error(path, name, values, text,
                            " (fix those cells, or list the column in data.categorical)")
            else:
                kinds[name], why[name] = CATEGORICAL, "text"
    return kinds, why


def _is_yes_no(values: pd.Series) -> bool:
    labels = set(canonical_categories(values).dropna().str.lower())
    return bool(labels) and labels <= {"yes", "no", "true", "false", "y", "n"}


def typed_features(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Numeric columns as floats (empty or infinite: NaN), categorical ones as text."""
    typed = {}
    for name, kind in kinds.items():
        if kind == CATEGORICAL:
            typed[name] = canonical_categories(frame[name])
        else:
            typed[name] = numbers(frame[name])[0]
    return pd.DataFrame(typed, index=frame.index)


# --- the generate stage -------------------------------------------------------------------

def load_table(path: Path | str) -> pd.DataFrame:
    """A user's CSV or Parquet file, by suffix."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        return read_parquet(path)
    return read_csv(path)


def _target(frame: pd.DataFrame, target: str, path, family) -> tuple[pd.Series, np.ndarray]:
    """The target as floats and which rows to keep (its cell is not empty); text in it, or
    a value outside the family's support, is an error naming the first such row."""
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
    invalid = keep & family.invalid_target(parsed.fillna(1.0).to_numpy())
    if invalid.any():
        row = int(np.argmax(invalid))
        raise DeepnormalError(
            f"data file {path}: model.distribution: {family.name} needs a target of "
            f"{family.support}; column '{target}' has {int(invalid.sum())} that are not, first "
            f"at data row {values.index[row] + 1}: {cell_text(values.iloc[row])} (use "
            "model.distribution: normal)")
    return parsed, keep


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
    frame = frame[wanted].reset_index(drop=True)
    y, keep = _target(frame, target, path, family)
    report = PrepareReport({}, {}, target_rows_dropped=int((~keep).sum()))
    frame, y = frame[keep], y[keep]
    report.kinds, report.why = column_kinds(frame, features, list(categorical), path)
    typed = typed_features(frame, report.kinds)
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


def read_parquet(path: Path, hint: str = "") -> pd.DataFrame:
    if not path.is_file():
        raise DeepnormalError(f"data file {path} does not exist{hint}")
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises many types for a damaged file
        raise DeepnormalError(f"data file {path} is not a readable Parquet file: "
                              f"{str(error).splitlines()[0]}") from None


def read_csv(path: Path, hint: str = "", **options) -> pd.DataFrame:
    if not path.is_file():
        raise DeepnormalError(f"data file {path} does not exist{hint}")
    try:
        return pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        raise DeepnormalError(f"data file {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DeepnormalError(f"data file {path} is not a readable CSV: {error}") from None
