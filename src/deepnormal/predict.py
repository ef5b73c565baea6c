"""`deepnormal-predict`: the predictive distribution for a table of new inputs.

Reads a CSV or Parquet table holding the model's feature columns (any other columns are
passed through), and writes it back with, in the target's original units: `mean`, `median`
and `std` of the predictive distribution and, per level, the central interval bounds
`lower_<level>` / `upper_<level>`; plus `mu` and `sigma`, the Normal the network predicts
(of the target itself with model.distribution normal, where mu = mean = median and
sigma = std; of log(target) with lognormal).
Text categories, empty cells and categories never seen in training are accepted: an empty
cell is filled as in training, an unseen category takes the "unknown" slot, and one line
says how many of each there were. The model is a trained checkpoint (default: the
pipeline's data/train/model.ckpt), loaded weights-only. Imports torch but neither Lightning
nor MLflow, so it starts quickly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from deepnormal import paths
from deepnormal.errors import run_stage
from deepnormal.predictive import DEFAULT_LEVELS


def predict_table(table: pd.DataFrame, checkpoint: Path, levels,
                  source: str) -> tuple[pd.DataFrame, str | None]:
    """The table with its predictions beside it, and the encoding note."""
    from deepnormal.inference import load_model

    prediction = load_model(checkpoint).predict(table, source=source)
    return prediction.distribution.beside(table, levels), prediction.note()


def write_table(table: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".parquet", ".pq"):
        table.to_parquet(path, index=False)
    else:
        table.to_csv(path, index=False)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deepnormal-predict", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: deepnormal-predict new_inputs.csv predictions.csv --levels 0.9 0.95")
    parser.add_argument("input", type=Path, help="CSV or Parquet table of inputs")
    parser.add_argument("output", type=Path,
                        help="where to write the predictions (.csv, or .parquet / .pq)")
    parser.add_argument("--model", type=Path, default=paths.CHECKPOINT,
                        help=f"trained checkpoint (default: {paths.CHECKPOINT})")
    parser.add_argument("--levels", type=float, nargs="+", default=list(DEFAULT_LEVELS),
                        metavar="LEVEL",
                        help="central interval levels in (0, 1) (default: 0.5 0.8 0.95)")
    args = parser.parse_args(argv)
    bad = [level for level in args.levels if not 0.0 < level < 1.0]
    if bad:
        parser.error(f"--levels must lie strictly between 0 and 1 (got {bad})")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    from deepnormal.data import load_table

    table = load_table(args.input)
    predictions, note = predict_table(table, args.model, args.levels, str(args.input))
    write_table(predictions, args.output)
    print(f"wrote {len(predictions)} predictions to {args.output}")
    if note:
        print(note)


def cli() -> None:
    run_stage(main)


if __name__ == "__main__":
    cli()
