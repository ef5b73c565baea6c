"""Stage `generate`: produce the train / val / test splits.

The work is the library's (src/deepnormal/preparation.py, which the benchmarks use too).
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

from deepnormal import paths
from deepnormal.config import load_params
from deepnormal.errors import run_stage
from deepnormal.outputs import staged
from deepnormal.preparation import prepare, write_prepared
from deepnormal.prepared import split_path


def main() -> None:
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    prepared = prepare(load_params())
    for line in prepared.report.lines() if prepared.report else []:
        print(line)
    with staged(paths.PREPARED) as out:
        write_prepared(prepared, out)
    for name, part in prepared.parts.items():
        print(f"{name}: {len(part):,} rows -> {split_path(paths.PREPARED, name)}")
    family = prepared.description.family
    print(f"target family: {family.name} ({family.why})")


if __name__ == "__main__":
    run_stage(main)
