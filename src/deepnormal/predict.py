"""`deepnormal-predict`: the predictive distribution for a table of new inputs.

Reads a CSV or Parquet table holding the model's feature columns (any other columns are
passed through), and writes it back with `mu`, `sigma` and, per level, the central
interval bounds `lower_<level>` / `upper_<level>`, in the target's original units.
The model is a trained checkpoint (default: the pipeline's data/train/model.ckpt), loaded
weights-only. Imports torch but neither Lightning nor MLflow, so it starts quickly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from deepnormal import paths
from deepnormal.errors import DeepnormalError, run_stage

DEFAULT_LEVELS = (0.5, 0.8, 0.95)


def with_intervals(table: pd.DataFrame, mu: np.ndarray, sigma: np.ndarray,
                   levels) -> pd.DataFrame:
    """`table` plus mu, sigma and the central interval bounds at each level."""
    from deepnormal import metrics

    table = table.copy()
    table["mu"] = mu
    table["sigma"] = sigma
    for level in levels:
        half = metrics.interval_half_width(sigma, level)
        tag = metrics.level_tag(level)
        table[f"lower_{tag}"] = mu - half
        table[f"upper_{tag}"] = mu + half
    return table


def predict_table(table: pd.DataFrame, checkpoint: Path, levels, source: str) -> pd.DataFrame:
    from deepnormal.data import numeric_columns
    from deepnormal.network import load_checkpoint

    net = load_checkpoint(checkpoint)
    features = net.feature_names
    if not features:
        raise DeepnormalError(f"checkpoint {checkpoint} does not record its feature columns "
                              "(trained by an older deepnormal); retrain it")
    missing = [column for column in features if column not in table.columns]
    if missing:
        columns = ", ".join(map(str, table.columns))
        raise DeepnormalError(f"{source} has no column {', '.join(map(repr, missing))}, which "
                              f"the model needs; its columns are: {columns}")
    clean, _ = numeric_columns(table[features], features, Path(source), drop_missing=False)
    mu, sigma = net.predict(clean.to_numpy(dtype="float64"))
    return with_intervals(table, mu, sigma, levels)


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
    predictions = predict_table(table, args.model, args.levels, str(args.input))
    write_table(predictions, args.output)
    print(f"wrote {len(predictions)} predictions to {args.output}")


def cli() -> None:
    run_stage(main)


if __name__ == "__main__":
    cli()
