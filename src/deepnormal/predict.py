"""`deepnormal-predict`: the predictive distribution for a table of new inputs.

Reads a table holding the model's feature columns (any other columns are passed through;
the format by the name: .csv, .csv.gz, .csv.bz2, .csv.xz, .csv.zst, .zip, .parquet, .pq) and
writes it back, one row out per row in (a blank line is a row of empty cells; a header alone
gives a header alone), with these columns after its own, in the target's original units:
`mean`, `median` and `std` of the predictive distribution; the family's parameters (`mu` and
`sigma`: the Normal the network predicts, of the target itself with model.distribution
normal, where mu = mean = median and sigma = std, of log(target) with lognormal); per level
the central interval bounds `lower_<level>` / `upper_<level>`; and `out_of_range`, the row's
numbers or dates beyond the range of the training split (held within one training std of it).
A mean or std that does not exist in floating point is written empty, never inf.
An input column with one of those names is refused: rename it, or name the outputs with
--prefix (e.g. pred_mean). Text categories, empty cells and categories never seen in
training are accepted: an empty cell is filled as in training, an unseen category takes the
"unknown" slot, and one line says how many of each there were. The model is a trained
checkpoint (default: the pipeline's data/train/model.ckpt), loaded weights-only. Imports
torch but neither Lightning nor MLflow, so it starts quickly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from deepnormal import paths
from deepnormal.errors import DeepnormalError, run_stage
from deepnormal.predictive import DEFAULT_LEVELS
from deepnormal.reading import TABLE_SUFFIXES, load_table, table_format


def predict_table(table: pd.DataFrame, checkpoint: Path, levels, source: str,
                  prefix: str = "") -> tuple[pd.DataFrame, str | None]:
    """The table with its predictions beside it, and the encoding note."""
    from deepnormal.inference import Prediction, load_model

    model = load_model(checkpoint)
    clash = [name for name in Prediction.output_columns(model.family, levels, prefix)
             if name in table.columns]
    if clash:
        raise DeepnormalError(
            f"{source} has column(s) {', '.join(map(repr, clash))}, which the output uses for "
            "the predictions; rename them, or name the outputs with --prefix (e.g. "
            f"--prefix pred_ writes pred_{clash[0]})")
    prediction = model.predict(table, source=source)
    return prediction.beside(table, levels, prefix), prediction.note()


def write_table(table: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if table_format(path) == "parquet":
        table.to_parquet(path, index=False)
    else:  # a compressed name (.csv.gz) is compressed
        table.to_csv(path, index=False)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deepnormal-predict", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: deepnormal-predict new_inputs.csv predictions.csv --levels 0.9 0.95")
    parser.add_argument("input", type=Path,
                        help=f"the table of inputs ({', '.join(TABLE_SUFFIXES)})")
    parser.add_argument("output", type=Path,
                        help="where to write the predictions (the same formats)")
    parser.add_argument("--model", type=Path, default=paths.CHECKPOINT,
                        help=f"trained checkpoint (default: {paths.CHECKPOINT})")
    parser.add_argument("--levels", type=float, nargs="+", default=list(DEFAULT_LEVELS),
                        metavar="LEVEL",
                        help="central interval levels in (0, 1) (default: 0.5 0.8 0.95)")
    parser.add_argument("--prefix", default="", metavar="TEXT",
                        help="put TEXT before every output column's name (e.g. pred_), for an "
                             "input that has a column named mean, std, ...")
    args = parser.parse_args(argv)
    bad = [level for level in args.levels if not 0.0 < level < 1.0]
    if bad:
        parser.error(f"--levels must lie strictly between 0 and 1 (got {bad})")
    if table_format(args.output) is None:
        parser.error(f"the output's name must end in one of {', '.join(TABLE_SUFFIXES)} "
                     f"(got {args.output})")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    table = load_table(args.input)
    predictions, note = predict_table(table, args.model, args.levels, str(args.input),
                                      args.prefix)
    write_table(predictions, args.output)
    print(f"wrote {len(predictions)} predictions to {args.output}")
    if note:
        print(note)


def cli() -> None:
    run_stage(main)


if __name__ == "__main__":
    cli()
