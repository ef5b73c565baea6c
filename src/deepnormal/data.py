"""Reading and writing the data splits, with one clear message per problem. No torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepnormal.errors import DeepnormalError

SPLITS = ("train", "val", "test")
# Prepared split files hold the feature columns and then the target, always the last column.
SYNTHETIC_COLUMNS = ("x", "y")
MIN_SPLIT_ROWS = 5


@dataclass(frozen=True)
class Split:
    """One split: features (n, d) and target (n,), in original units."""

    features: np.ndarray
    target: np.ndarray
    feature_names: tuple[str, ...]
    target_name: str = SYNTHETIC_COLUMNS[-1]

    def __len__(self) -> int:
        return len(self.target)


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


def write_split(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # repr-precision floats: exact round trip, byte-identical for identical inputs.
    frame.to_csv(path, index=False, lineterminator="\n")


def read_split(path: Path | str) -> Split:
    """Load a prepared split (features, then the target as the last column); refuse anything
    a model should not see."""
    path = Path(path)
    frame = _read_csv(path, hint="; run the stage that writes it (`dvc repro`)")
    if len(frame.columns) < 2:
        raise DeepnormalError(f"data file {path} must have feature columns and a target column "
                              f"(the last one); found {list(frame.columns)}")
    if frame.empty:
        raise DeepnormalError(f"data file {path} has a header but no rows")
    frame, _ = numeric_columns(frame, list(frame.columns), path, drop_missing=False)
    features, target = list(frame.columns[:-1]), frame.columns[-1]
    return Split(
        features=frame[features].to_numpy(dtype=np.float64),
        target=frame[target].to_numpy(dtype=np.float64),
        feature_names=tuple(features),
        target_name=str(target),
    )


def read_splits(directory: Path | str, names: tuple[str, ...] = SPLITS) -> dict[str, Split]:
    splits = {name: read_split(Path(directory) / f"{name}.csv") for name in names}
    columns = {(split.feature_names, split.target_name) for split in splits.values()}
    if len(columns) > 1:
        raise DeepnormalError(f"the splits in {directory} disagree on their columns: {columns}")
    return splits


def _read_csv(path: Path, hint: str = "") -> pd.DataFrame:
    if not path.is_file():
        raise DeepnormalError(f"data file {path} does not exist{hint}")
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DeepnormalError(f"data file {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DeepnormalError(f"data file {path} is not a readable CSV: {error}") from None


def load_table(path: Path | str) -> pd.DataFrame:
    """A user's CSV or Parquet file, by suffix."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        if not path.is_file():
            raise DeepnormalError(f"data file {path} does not exist")
        try:
            return pd.read_parquet(path)
        except Exception as error:  # pyarrow raises many types for a damaged file
            raise DeepnormalError(f"data file {path} is not a readable Parquet file: "
                                  f"{str(error).splitlines()[0]}") from None
    return _read_csv(path)


def numeric_columns(frame: pd.DataFrame, columns: list[str], path: Path,
             drop_missing: bool) -> tuple[pd.DataFrame, int]:
    """Columns as floats. Text is always an error; missing or infinite values are an error
    unless drop_missing, which drops those rows and returns how many."""
    frame = frame.copy()
    finite = np.ones(len(frame), dtype=bool)
    for column in columns:
        raw = frame[column]
        values = pd.to_numeric(raw, errors="coerce")
        text = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
        if text.any():
            row = int(np.argmax(text.to_numpy()))
            raise DeepnormalError(
                f"data file {path}, column '{column}': {int(text.sum())} value(s) are not "
                f"numbers; first at data row {row + 1}: {raw.iloc[row]!r}")
        ok = np.isfinite(values.to_numpy(dtype=float))
        if not ok.all() and not drop_missing:
            row = int(np.argmax(~ok))
            raise DeepnormalError(
                f"data file {path}, column '{column}': {int((~ok).sum())} value(s) are missing, "
                f"non-numeric or infinite; first at data row {row + 1}: {raw.iloc[row]!r} "
                "(set data.drop_missing: true to drop such rows)")
        frame[column] = values
        finite &= ok
    return frame[finite].reset_index(drop=True), int((~finite).sum())


def prepare_table(frame: pd.DataFrame, features: list[str], target: str,
                  split_column: str | None, drop_missing: bool, path: Path,
                  split: tuple[float, float, int]) -> tuple[dict[str, pd.DataFrame], int]:
    """Validate a user's table and cut it into train / val / test frames.

    Returns the frames (feature columns, then the target) and the number of rows dropped.
    `split` is (val_fraction, test_fraction, seed), used unless split_column names a column
    holding 'train' / 'val' / 'test'.
    """
    wanted = [*features, target] + ([split_column] if split_column else [])
    missing = [column for column in wanted if column not in frame.columns]
    if missing:
        raise DeepnormalError(f"data file {path} has no column {', '.join(map(repr, missing))}; "
                              f"its columns are: {', '.join(map(str, frame.columns))}")
    clean, dropped = numeric_columns(frame[wanted], [*features, target], path, drop_missing)
    if split_column:
        labels = clean[split_column].astype(str).str.strip().str.lower()
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
    columns = [*features, target]
    return {name: clean.iloc[index][columns] for name, index in parts.items()}, dropped
