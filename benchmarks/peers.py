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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepnormal.data import CATEGORICAL
from deepnormal.preprocessing import MISSING_CATEGORY


def one_hot(splits: dict) -> dict[str, np.ndarray]:
    """Numbers (training median for empty cells) and one-hot categories, columns fitted on
    train."""
    train = splits["train"].frame
    categorical = [c for c, kind in splits["train"].kinds.items() if kind == CATEGORICAL]
    numeric = [c for c in train.columns if c not in categorical]
    medians = train[numeric].median()

    def labels(frame: pd.DataFrame) -> pd.DataFrame:  # numeric codes too, as text
        return frame[categorical].astype(object).fillna(MISSING_CATEGORY).astype(str)

    dummies = pd.get_dummies(labels(train)).columns if categorical else []
    out = {}
    for name, split in splits.items():
        frame = split.frame
        parts = [frame[numeric].fillna(medians).to_numpy(float)]
        if categorical:
            parts.append(pd.get_dummies(labels(frame)).reindex(
                columns=dummies, fill_value=0).to_numpy(float))
        out[name] = np.column_stack(parts)
    return out


@dataclass(frozen=True)
class PeerFit:
    """A peer's test scores (per point, the target's units) and its fit time."""

    nll: float
    crps: float
    coverage_95: float
    seconds: float


def scores(y: np.ndarray, loc: np.ndarray, scale: np.ndarray, family: str,
           seconds: float) -> PeerFit:
    """The scores evaluate gives the model, for a peer's predicted distributions."""
    from deepnormal import metrics
    from deepnormal.family import family as family_named

    found = metrics.score(y, loc, scale, [0.95], family_named(family))
    return PeerFit(found["nll"], found["crps"], found["picp_95"], seconds)


def ngboost(splits: dict, dist_name: str = "normal") -> PeerFit:
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
    params = model.pred_dist(x["test"]).params
    if dist_name == "normal":
        return scores(y["test"], params["loc"], params["scale"], "normal", seconds)
    # scipy's lognorm(s, scale=exp(mu)): log(y) ~ Normal(mu, s)
    return scores(y["test"], np.log(params["scale"]), params["s"], "lognormal", seconds)


def catboost(splits: dict) -> PeerFit:
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
    return scores(splits["test"].target, predicted[:, 0], np.sqrt(predicted[:, 1]), "normal",
                  seconds)


PEERS = {"NGBoost": ngboost, "CatBoost": catboost}  # the side-by-side's peers, Normal both


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", default=["wage", "hitters", "carseats"])
    parser.add_argument("--splits", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from quality import SKEWED, TEXT_TABLES, params_with, splits_for, table_overrides

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
            nll = [r.nll for r in rows]
            sd = statistics.stdev(nll) if len(nll) > 1 else 0.0
            print(f"  {name:18s} test NLL {statistics.mean(nll):.3f} (splits sd {sd:.3f})  "
                  f"cov95 {statistics.mean(r.coverage_95 for r in rows):.3f}  "
                  f"fit {statistics.mean(r.seconds for r in rows):.1f} s", flush=True)


if __name__ == "__main__":
    main()
