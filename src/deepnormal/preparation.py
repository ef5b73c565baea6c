"""The generate stage's work as a library function: params in, prepared splits and their
description out, so that the stage and every benchmark prepare a table the same way.

- data.source synthetic: samples the reference process (synthetic.py) and splits it;
- data.source file: reads the table at data.path and checks and cuts it (data.prepare_table);
then resolves model.distribution (family_choice.choose_family: `auto` becomes a family here,
once) on the training split. Nothing is written until `write_prepared`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from deepnormal import synthetic
from deepnormal.config import Params
from deepnormal.data import NUMERIC, PrepareReport, prepare_table, split_indices
from deepnormal.errors import DeepnormalError
from deepnormal.family import family_named
from deepnormal.family_choice import AUTO, choose_family
from deepnormal.prepared import FamilyChoice, TableDescription, as_split, split_path, write_split
from deepnormal.reading import load_table


@dataclass(frozen=True)
class Prepared:
    parts: dict[str, pd.DataFrame]  # split name -> features, then the target
    description: TableDescription
    report: PrepareReport | None  # what preparing a user's table did (None: synthetic)


def prepare(params: Params, root: Path | str = ".") -> Prepared:
    """The splits for these params (a user's file is read from `root` / data.path, and named
    as data.path in messages); raises DeepnormalError, naming the culprit, before anything
    is written."""
    g, d = params.generate, params.data
    distribution = params.model.distribution
    report = None
    if d.source == "synthetic":
        frame = synthetic.table(g)
        family = family_named("normal" if distribution == AUTO else distribution)
        if family.invalid_target(frame[synthetic.COLUMNS[1]].to_numpy()).any():
            raise DeepnormalError(f"model.distribution: {distribution} needs a target of "
                                  f"{family.support}; the synthetic data's is not (use normal)")
        parts = {name: frame.iloc[index] for name, index in
                 split_indices(g.n, g.val_fraction, g.test_fraction, g.seed).items()}
        kinds, target = {synthetic.COLUMNS[0]: NUMERIC}, synthetic.COLUMNS[1]
    else:
        parts, report = prepare_table(
            load_table(Path(root) / d.path), d.features, d.target, d.split_column, d.path,
            (g.val_fraction, g.test_fraction, g.seed), categorical=d.categorical,
            missing=d.missing,
            family=family_named("normal" if distribution == AUTO else distribution))
        kinds, target = report.kinds, d.target
    undecided = TableDescription(target, kinds, FamilyChoice(AUTO, ""),
                                 report.as_dict() if report else None,
                                 report.date_formats if report else {})
    targets = pd.concat([part.iloc[:, -1] for part in parts.values()])
    positive = bool((targets > 0).all())
    zero_share = float((targets == 0).mean()) if bool((targets >= 0).all()) else 0.0
    choice = choose_family(distribution, as_split(parts["train"], undecided), positive,
                           zero_share)
    return Prepared(parts, replace(undecided, family=choice), report)


def write_prepared(prepared: Prepared, directory: Path | str) -> None:
    """The splits as Parquet and their description (columns.json) in `directory`."""
    for name, part in prepared.parts.items():
        write_split(part, split_path(directory, name))
    prepared.description.write(directory)
