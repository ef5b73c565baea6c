"""Benchmark: what a date column is worth, and how to feed it to the network.

    python -m benchmarks.dates [--splits 2]

On examples/chicago.csv (daily rail ridership at Clark/Lake, 5,698 days, with the weather and
home games; examples/README.md), random splits (generate.seed 0..splits-1), the defaults
(model.distribution auto) with three inputs for time: no date at all; the date column as the
table encoder reads it (a day count, and the day of the year and of the week on circles);
and the date's year, month and weekday as plain numbers, as one would write them by hand.
Prints test NLL and CRPS per split and the family auto chose. About 15 minutes on our 2-core
machine with --splits 2.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from benchmarks.common import print_rows
from benchmarks.quality import run_pipeline
from benchmarks.workspace import REPO

WEATHER = ["temp_min", "temp", "temp_max", "percip", "weather_rain", "weather_snow",
           "weather_cloud", "weather_storm", "Bulls_Home", "Bears_Home", "Cubs_Home",
           "WhiteSox_Home"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", type=int, default=2)
    args = parser.parse_args()
    table = pd.read_csv(REPO / "examples/chicago.csv")
    when = pd.to_datetime(table["date"])
    table = table.assign(year=when.dt.year, month=when.dt.month, weekday=when.dt.weekday)
    arms = {"no date": WEATHER,
            "date (day count, seasons)": ["date", *WEATHER],
            "year, month, weekday as numbers": ["year", "month", "weekday", *WEATHER]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chicago.csv"
        table.to_csv(path, index=False)
        for arm, features in arms.items():
            for seed in range(args.splits):
                fit = run_pipeline("chicago", {
                    "data.source": "file", "data.path": str(path), "data.target": "ridership",
                    "data.features": features, "generate.seed": seed}, {})
                rows.append([arm, seed, f"{fit.nll:.3f}", f"{fit.crps:.3f}", fit.family])
                print(rows[-1], flush=True)
    print_rows("chicago: test NLL and CRPS by how the date enters",
               ["arm", "split", "test NLL", "CRPS", "family"], rows)


if __name__ == "__main__":
    main()
