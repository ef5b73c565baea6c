"""Benchmark: the tools practitioners use instead, on exactly the splits the generate stage writes.

    pip install -e '.[bench]'        # CatBoost and NGBoost (make test installs them too)
    python benchmarks/peers.py [--tables wage hitters carseats] [--splits 5]

For each table of examples/ and each random split (generate.seed 0..splits-1, the fractions of
params.yaml), the splits come from the generate stage's own code (benchmarks/quality.py's
splits_for), and two peers are fitted on train with early stopping on val:
- NGBoost (`NGBRegressor(Dist=Normal)`, defaults, early_stopping_rounds=50), categorical
  columns one-hot (an empty cell its own column), empty numeric cells the training median;
  on the skewed tables also `Dist=LogNormal`;
- CatBoost (`loss_function="RMSEWithUncertainty"`, 3000 iterations, early stopping 200),
  categorical columns as cat_features (an empty cell the category "(missing)"), empty numeric
  cells as they are (CatBoost handles them).
Prints the mean test NLL per point in the target's units over the splits (with the sd of the
split values), 95% coverage and fit seconds, to set beside `quality.py --only as-they-come`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import SKEWED, TEXT_TABLES, params_with, splits_for, table_overrides

from deepnormal.data import CATEGORICAL
from deepnormal.preprocessing import MISSING_CATEGORY


def one_hot(splits: dict) -> dict[str, np.ndarray]:
    """Numbers (training median for empty cells) and one-hot categories, columns fitted on
    train."""
    train = splits["train"].frame
    categorical = [c for c, kind in splits["train"].kinds.items() if kind == CATEGORICAL]
    numeric = [c for c in train.columns if c not in categorical]
    medians = train[numeric].median()
    dummies = pd.get_dummies(train[categorical].fillna(MISSING_CATEGORY)).columns
    out = {}
    for name, split in splits.items():
        frame = split.frame
        encoded = pd.get_dummies(frame[categorical].fillna(MISSING_CATEGORY)).reindex(
            columns=dummies, fill_value=0)
        out[name] = np.column_stack([frame[numeric].fillna(medians).to_numpy(float),
                                     encoded.to_numpy(float)])
    return out


def ngboost(splits: dict, dist_name: str) -> tuple[float, float, float]:
    from ngboost import NGBRegressor
    from ngboost.distns import LogNormal, Normal

    x = one_hot(splits)
    y = {name: split.target for name, split in splits.items()}
    start = time.perf_counter()
    model = NGBRegressor(Dist={"normal": Normal, "lognormal": LogNormal}[dist_name],
                         verbose=False, random_state=0)
    model.fit(x["train"], y["train"], X_val=x["val"], Y_val=y["val"],
              early_stopping_rounds=50)
    seconds = time.perf_counter() - start
    dist = model.pred_dist(x["test"])
    nll = -float(np.mean(dist.logpdf(y["test"])))
    low, high = dist.ppf(0.025), dist.ppf(0.975)
    coverage = float(np.mean((y["test"] >= low) & (y["test"] <= high)))
    return nll, coverage, seconds


def catboost(splits: dict) -> tuple[float, float, float]:
    from catboost import CatBoostRegressor

    categorical = [c for c, kind in splits["train"].kinds.items() if kind == CATEGORICAL]

    def frame(split):
        table = split.frame.copy()
        for column in categorical:
            table[column] = table[column].fillna(MISSING_CATEGORY).astype(str)
        return table

    start = time.perf_counter()
    model = CatBoostRegressor(loss_function="RMSEWithUncertainty", iterations=3000,
                              random_seed=0, verbose=False, allow_writing_files=False)
    model.fit(frame(splits["train"]), splits["train"].target, cat_features=categorical,
              eval_set=(frame(splits["val"]), splits["val"].target),
              early_stopping_rounds=200)
    seconds = time.perf_counter() - start
    predicted = model.predict(frame(splits["test"]))  # columns: mean, variance
    mu, sigma = predicted[:, 0], np.sqrt(predicted[:, 1])
    y = splits["test"].target
    nll = -float(np.mean(stats.norm.logpdf(y, mu, sigma)))
    coverage = float(np.mean(np.abs(y - mu) <= 1.959964 * sigma))
    return nll, coverage, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", choices=list(TEXT_TABLES),
                        default=list(TEXT_TABLES))
    parser.add_argument("--splits", type=int, default=5)
    args = parser.parse_args()
    print(f"python benchmarks/peers.py {' '.join(sys.argv[1:])}; {time.strftime('%Y-%m-%d')}")
    for table in args.tables:
        peers = {"NGBoost Normal": lambda s: ngboost(s, "normal"), "CatBoost": catboost}
        if table in SKEWED:
            peers["NGBoost LogNormal"] = lambda s: ngboost(s, "lognormal")
        found = {name: [] for name in peers}
        for seed in range(args.splits):
            params = params_with(table_overrides(table) | {"generate.seed": seed})
            with tempfile.TemporaryDirectory() as tmp:
                splits = splits_for(params, Path(tmp))
            for name, fit in peers.items():
                found[name].append(fit(splits))
        print(f"\n{table}: {args.splits} splits")
        for name, rows in found.items():
            nll = [r[0] for r in rows]
            sd = statistics.stdev(nll) if len(nll) > 1 else 0.0
            print(f"  {name:18s} test NLL {statistics.mean(nll):.3f} (splits sd {sd:.3f})  "
                  f"cov95 {statistics.mean(r[1] for r in rows):.3f}  "
                  f"fit {statistics.mean(r[2] for r in rows):.1f} s", flush=True)


if __name__ == "__main__":
    main()
