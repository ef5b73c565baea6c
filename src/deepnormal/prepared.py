"""The prepared splits and the one record that describes them. No torch.

The generate stage writes data/prepared/{train,val,test}.parquet (the feature columns, then
the target as the last column) and `columns.json` beside them: the `TableDescription`, each
feature's kind, the target's name and its family as the generate stage resolved it (never
`auto`), and what preparing the table did. Every reader of a split goes through `read_split`,
which attaches that description, so a column's kind and the target's family never depend on
which stage reads or which rows a split happens to hold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from deepnormal.cells import dates, numbers
from deepnormal.data import DATE, NUMERIC, SPLITS, text_error
from deepnormal.errors import DeepnormalError
from deepnormal.reading import read_parquet

COLUMNS_FILE = "columns.json"
# Prepared splits are Parquet: typed columns, no text parsing, and at a million rows it
# reads in a fraction of CSV's time.
SPLIT_SUFFIX = ".parquet"
# A columns.json written before the family was recorded describes a normal target.
DEFAULT_FAMILY = "normal"


@dataclass(frozen=True)
class FamilyChoice:
    """The target's family and why it was chosen (model.distribution, or what auto saw), and
    the families the train stage may try instead (auto: family_trial.py)."""

    name: str
    why: str
    candidates: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        found = {"name": self.name, "why": self.why}
        return found | ({"candidates": list(self.candidates)} if self.candidates else {})


@dataclass(frozen=True)
class TableDescription:
    """What the generate stage decided about the table: written once, read by every stage."""

    target: str
    kinds: dict[str, str]  # feature -> "numeric" | "categorical" | "date", in column order
    family: FamilyChoice
    prepare: dict | None = None  # data.PrepareReport.as_dict() for a user's table
    date_formats: dict[str, str] = field(default_factory=dict)  # date feature -> its format

    def to_json(self) -> str:
        content = {"target": self.target, "kinds": self.kinds, "family": self.family.as_dict()}
        if self.date_formats:
            content["date_formats"] = self.date_formats
        if self.prepare:
            content["prepare"] = self.prepare
        return json.dumps(content, indent=2) + "\n"

    def write(self, directory: Path | str) -> None:
        (Path(directory) / COLUMNS_FILE).write_text(self.to_json())

    @classmethod
    def read(cls, directory: Path | str) -> TableDescription | None:
        """columns.json in `directory`, or None when there is none."""
        path = Path(directory) / COLUMNS_FILE
        if not path.is_file():
            return None
        try:
            content = json.loads(path.read_text())
            family = content.get("family", {"name": DEFAULT_FAMILY, "why": "(not recorded)"})
            return cls(str(content["target"]), dict(content["kinds"]),
                       FamilyChoice(str(family["name"]), str(family.get("why", "")),
                                    tuple(family.get("candidates", ()))),
                       content.get("prepare"), dict(content.get("date_formats", {})))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise DeepnormalError(f"{path} is damaged; rerun the generate stage "
                                  "(`dvc repro --force -s generate`)") from None


@dataclass(frozen=True)
class Split:
    """One split: the feature columns as the table holds them (numbers as floats, categories
    as text, empty cells as NaN) and the target (n,), in original units."""

    frame: pd.DataFrame
    target: np.ndarray
    kinds: dict[str, str]  # feature -> "numeric" | "categorical" | "date"
    target_name: str = "y"  # the synthetic data's
    # The target's family as the generate stage resolved it (from columns.json).
    family: str = DEFAULT_FAMILY
    date_formats: dict[str, str] = field(default_factory=dict)  # how new rows write dates

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.frame.columns)

    def __len__(self) -> int:
        return len(self.target)


def split_path(directory: Path | str, name: str) -> Path:
    """Where a prepared split lives: data/prepared/train.parquet."""
    return Path(directory) / f"{name}{SPLIT_SUFFIX}"


def write_split(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Exact floats; pyarrow writes no timestamp, so identical inputs give identical bytes.
    frame.reset_index(drop=True).to_parquet(path, index=False)


def as_split(frame: pd.DataFrame, description: TableDescription) -> Split:
    """A prepared frame (features, then the target) as a Split: numeric columns as floats,
    categorical ones as text with empty cells NaN, dates as datetime64."""
    names = list(description.kinds)
    typed = {}
    for name, kind in description.kinds.items():
        column = frame[name]
        if kind == NUMERIC:
            typed[name] = numbers(column)[0]
        elif kind == DATE:
            typed[name] = dates(column, description.date_formats.get(name))[0]
        else:
            typed[name] = column.astype("str").where(column.notna())
    target = numbers(frame[description.target])[0]
    return Split(frame=pd.DataFrame(typed, index=frame.index)[names],
                 target=target.to_numpy(dtype=np.float64), kinds=description.kinds,
                 target_name=description.target, family=description.family.name,
                 date_formats=description.date_formats)


def read_split(path: Path | str) -> Split:
    """Load a prepared split with the description beside it (without one: every feature
    numeric, the target the last column, normal). Refuse anything a model should not see."""
    path = Path(path)
    description = TableDescription.read(path.parent)
    frame = read_parquet(path, hint="; run the stage that writes it (`dvc repro`)")
    if len(frame.columns) < 2:
        raise DeepnormalError(f"data file {path} must have feature columns and a target column "
                              f"(the last one); found {list(frame.columns)}")
    if frame.empty:
        raise DeepnormalError(f"data file {path} has columns but no rows")
    names, target_name = [str(c) for c in frame.columns[:-1]], str(frame.columns[-1])
    if description is None:
        description = TableDescription(target_name, dict.fromkeys(names, NUMERIC),
                                       FamilyChoice(DEFAULT_FAMILY, "no columns.json"))
    if list(description.kinds) != names or description.target != target_name:
        raise DeepnormalError(f"data file {path} has columns {names}, but {COLUMNS_FILE} "
                              f"describes {list(description.kinds)}; rerun the generate stage")
    target, text = numbers(frame[target_name])
    bad = text | target.isna()
    if bad.any():
        text_error(path, target_name, frame[target_name], bad, " (the target must be a "
                   "number in every row of a prepared split)")
    for name, kind in description.kinds.items():
        if kind == NUMERIC:
            text = numbers(frame[name])[1]
            if text.any():
                text_error(path, name, frame[name], text, "")
    return as_split(frame, description)


def read_splits(directory: Path | str, names: tuple[str, ...] = SPLITS) -> dict[str, Split]:
    splits = {name: read_split(split_path(directory, name)) for name in names}
    columns = {(split.feature_names, split.target_name) for split in splits.values()}
    if len(columns) > 1:
        raise DeepnormalError(f"the splits in {directory} disagree on their columns: {columns}")
    return splits
