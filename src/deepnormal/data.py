"""Reading and writing the data splits, with one clear message per problem. No torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepnormal.errors import DeepnormalError

SPLITS = ("train", "val", "test")
TARGET = "y"


@dataclass(frozen=True)
class Split:
    """One split: features (n, d) and target (n,), in original units."""

    features: np.ndarray
    target: np.ndarray
    feature_names: tuple[str, ...]

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
    """Load a split written by the generate stage; refuse anything a model should not see."""
    path = Path(path)
    if not path.is_file():
        raise DeepnormalError(f"data file {path} is missing; run the stage that writes it "
                              f"(`dvc repro`)")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DeepnormalError(f"data file {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DeepnormalError(f"data file {path} is not a readable CSV: {error}") from None
    if TARGET not in frame.columns or len(frame.columns) < 2:
        raise DeepnormalError(
            f"data file {path} must have feature columns and a '{TARGET}' column; "
            f"found {list(frame.columns)}"
        )
    if frame.empty:
        raise DeepnormalError(f"data file {path} has a header but no rows")
    for column in frame.columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            row = int(np.argmax(bad))
            raise DeepnormalError(
                f"data file {path}, column '{column}': {int(bad.sum())} value(s) are missing, "
                f"non-numeric or infinite; first at data row {row + 1}: "
                f"{frame[column].iloc[row]!r}"
            )
        frame[column] = values
    features = [c for c in frame.columns if c != TARGET]
    return Split(
        features=frame[features].to_numpy(dtype=np.float64),
        target=frame[TARGET].to_numpy(dtype=np.float64),
        feature_names=tuple(features),
    )


def read_splits(directory: Path | str, names: tuple[str, ...] = SPLITS) -> dict[str, Split]:
    splits = {name: read_split(Path(directory) / f"{name}.csv") for name in names}
    columns = {split.feature_names for split in splits.values()}
    if len(columns) > 1:
        raise DeepnormalError(f"the splits in {directory} disagree on feature columns: {columns}")
    return splits
