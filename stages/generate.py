"""Stage `generate`: produce the train / val / test splits.

Reads params sections `data` and `generate`, and, with data.source: file, the file at
data.path (CSV or Parquet). Writes data/prepared/{train,val,test}.csv: the feature columns,
then the target as the last column.
- data.source: synthetic samples the reference process of the `generate` section.
- data.source: file validates the file first (it exists and parses, the columns exist and
  are numeric, no missing or infinite values unless data.drop_missing, enough rows for every
  split) and writes nothing if anything is wrong. The split is random (generate.seed and
  fractions) or taken from data.split_column.
The same params and file give byte-identical outputs. Imports no torch.
"""

import argparse

import pandas as pd

from deepnormal import paths, synthetic
from deepnormal.config import load_params
from deepnormal.data import SYNTHETIC_COLUMNS, load_table, prepare_table, split_indices, write_split
from deepnormal.errors import run_stage
from deepnormal.outputs import staged


def main() -> None:
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    params = load_params()
    g, d = params.generate, params.data
    if d.source == "synthetic":
        x, y = synthetic.sample(g)
        frame = pd.DataFrame(dict(zip(SYNTHETIC_COLUMNS, (x, y), strict=True)))
        parts = {name: frame.iloc[index]
                 for name, index in split_indices(g.n, g.val_fraction, g.test_fraction,
                                                  g.seed).items()}
    else:
        parts, dropped = prepare_table(load_table(d.path), d.features, d.target, d.split_column,
                                       d.drop_missing, d.path,
                                       (g.val_fraction, g.test_fraction, g.seed))
        if dropped:
            print(f"dropped {dropped} row(s) with missing or infinite values "
                  "(data.drop_missing: true)")
    with staged(paths.PREPARED) as out:
        for name, part in parts.items():
            write_split(part, out / f"{name}.csv")
            print(f"{name}: {len(part)} rows -> {paths.PREPARED / f'{name}.csv'}")


if __name__ == "__main__":
    run_stage(main)
