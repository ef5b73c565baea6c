"""Stage `generate`: sample the reference process and write train / val / test splits.

Reads params sections `generate`. Writes data/prepared/{train,val,test}.csv with
columns x, y. The same params give byte-identical files. Imports no torch.
"""

import argparse

import pandas as pd

from deepnormal import paths, synthetic
from deepnormal.config import load_params
from deepnormal.data import split_indices, write_split
from deepnormal.errors import run_stage
from deepnormal.outputs import staged


def main() -> None:
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    p = load_params().generate
    x, y = synthetic.sample(p)
    with staged(paths.PREPARED) as out:
        for name, index in split_indices(p.n, p.val_fraction, p.test_fraction, p.seed).items():
            write_split(pd.DataFrame({"x": x[index], "y": y[index]}), out / f"{name}.csv")
            print(f"{name}: {len(index)} rows -> {paths.PREPARED / f'{name}.csv'}")


if __name__ == "__main__":
    run_stage(main)
