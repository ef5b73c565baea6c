"""Stage `generate`: produce the train / val / test splits.

Reads params sections `data` and `generate`, model.distribution (a log-normal target must be
positive; auto chooses the family here, src/deepnormal/family_choice.py), and, with
data.source: file, the file at data.path (CSV or Parquet).
Writes data/prepared/{train,val,test}.parquet (the feature columns, then the target as the
last column; numbers as floats, categories as text, empty cells null) and
data/prepared/columns.json (each feature's kind, the target's family and why, what was
dropped and how many cells are empty), and prints the same.
- data.source: synthetic samples the reference process of the `generate` section.
- data.source: file checks the file first and writes nothing if anything is wrong: it exists
  and parses, the named columns exist, the target holds numbers (and, for the log-normal,
  only positive ones), enough rows for every split, no feature empty in every training row.
  A text or yes/no column, or one listed in data.categorical, is categorical; every other
  feature numeric (a text column that is nearly all numbers is an error naming the first
  text cell). Rows with an empty target are dropped and counted. Empty feature cells are
  kept for the train stage to fill (data.missing: impute), dropped with their rows (drop)
  or refused (error). A categorical column that is nearly all distinct gets a warning.
  The split is random (generate.seed and fractions) or taken from data.split_column.
The same params and file give byte-identical outputs. Imports no torch.
"""

import argparse

import pandas as pd

from deepnormal import paths, synthetic
from deepnormal.config import load_params
from deepnormal.data import (
    NUMERIC,
    SYNTHETIC_COLUMNS,
    load_table,
    prepare_table,
    split_indices,
    split_path,
    write_columns,
    write_split,
)
from deepnormal.errors import DeepnormalError, run_stage
from deepnormal.family import family
from deepnormal.family_choice import AUTO, choose_for_prepared
from deepnormal.outputs import staged


def main() -> None:
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    params = load_params()
    g, d = params.generate, params.data
    report = None
    distribution = params.model.distribution
    if d.source == "synthetic":
        if distribution == "lognormal":
            raise DeepnormalError(f"model.distribution: {params.model.distribution} needs a "
                                  "positive target; the synthetic data's is not (use normal)")
        x, y = synthetic.sample(g)
        frame = pd.DataFrame(dict(zip(SYNTHETIC_COLUMNS, (x, y), strict=True)))
        parts = {name: frame.iloc[index]
                 for name, index in split_indices(g.n, g.val_fraction, g.test_fraction,
                                                  g.seed).items()}
        kinds, target = {SYNTHETIC_COLUMNS[0]: NUMERIC}, SYNTHETIC_COLUMNS[1]
    else:
        parts, report = prepare_table(
            load_table(d.path), d.features, d.target, d.split_column, d.path,
            (g.val_fraction, g.test_fraction, g.seed), categorical=d.categorical,
            missing=d.missing, family=family("normal" if distribution == AUTO else distribution))
        kinds, target = report.kinds, d.target
        for line in report.lines():
            print(line)
    with staged(paths.PREPARED) as out:
        for name, part in parts.items():
            write_split(part, split_path(out, name))
            print(f"{name}: {len(part):,} rows -> {split_path(paths.PREPARED, name)}")
        choice = choose_for_prepared(distribution, out, parts, kinds)
        write_columns(out, kinds, target, report.as_dict() if report else None,
                      choice.as_dict())
        print(f"target family: {choice.name} ({choice.why})")


if __name__ == "__main__":
    run_stage(main)
