"""What users actually send (docs/own-data.md, docs/serving.md): rows beyond the training range,
dates, formatted numbers, compressed CSV, blank lines, a header alone, column names the output
uses. Unit tests first, then one table with all of them through `dvc repro` and
`deepnormal-predict`."""

from __future__ import annotations

import gzip
import json
import sys

import numpy as np
import pandas as pd
import pytest

from deepnormal.cells import date_format, dates, numbers
from deepnormal.data import CATEGORICAL, DATE, NUMERIC
from deepnormal.errors import DeepnormalError
from deepnormal.family import LogNormal
from deepnormal.metrics import score
from deepnormal.prepared import Split
from deepnormal.preprocessing import HELD_MARGIN, TableEncoder
from deepnormal.reading import load_table
from tests.conftest import TINY, copy_repo, dvc, edit_params, mlflow_client, run, search_all

# --- cells ----------------------------------------------------------------------------------

def test_formatted_numbers_are_numbers_and_lists_stay_text():
    values = pd.Series(["1,234", "$1,234.50", "-$12", "€ 7", "12", "1,2", "", None, "n/a"])
    parsed, text = numbers(values)
    assert parsed.tolist()[:5] == [1234.0, 1234.5, -12.0, 7.0, 12.0]
    assert text.tolist() == [False] * 5 + [True, False, False, True]


def test_date_columns_are_found_by_their_format():
    assert date_format(pd.Series(["2024-01-31", "2024-02-01", None])) == "ISO8601"
    assert date_format(pd.Series(["01/31/2024", "02/01/2024"])) == "%m/%d/%Y"
    assert date_format(pd.Series(["31/01/2024", "01/02/2024"])) == "%d/%m/%Y"
    assert date_format(pd.Series(["red", "blue"])) is None
    assert date_format(pd.Series(["2024", "2025"])) is None  # years as numbers stay numbers
    read, wrong = dates(pd.Series(["2024-01-31", "", "soon"]), "ISO8601")
    assert read.iloc[0] == pd.Timestamp("2024-01-31") and pd.isna(read.iloc[1])
    assert wrong.tolist() == [False, False, True]


# --- reading files --------------------------------------------------------------------------

def test_csv_files_keep_every_line_and_refuse_a_name_twice(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("x\n1\n\n3\n")  # a blank line is an empty cell of a one-column table
    assert len(load_table(path)) == 3
    gz = tmp_path / "one.csv.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write("x,y\n1,2\n")
    assert load_table(gz).to_dict("list") == {"x": [1], "y": [2]}
    (tmp_path / "twice.csv").write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DeepnormalError, match="the header names 'a' more than once"):
        load_table(tmp_path / "twice.csv")
    (tmp_path / "header.csv").write_text("a,b\n")
    assert list(load_table(tmp_path / "header.csv").columns) == ["a", "b"]
    with pytest.raises(DeepnormalError, match=r"not a table name this tool knows; it reads "
                                              r"\.csv, \.csv\.gz"):
        load_table(tmp_path / "notes.txt")


# --- rows beyond the training range ---------------------------------------------------------

def test_numbers_and_dates_beyond_the_training_range_are_held_to_it_and_counted():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"width": rng.uniform(3, 10, 200),
                          "sold": pd.Timestamp("2020-01-01")
                          + pd.to_timedelta(rng.integers(0, 700, 200), unit="D")})
    train = Split(frame, np.exp(frame["width"].to_numpy() / 3),
                  {"width": NUMERIC, "sold": DATE}, "price", "lognormal",
                  {"sold": "ISO8601"})
    encoder = TableEncoder.fit(train, "lognormal")
    assert encoder.encode(frame).outside == {"width": 0, "sold": 0}  # training: none beyond
    new = pd.DataFrame({"width": [58.9, 5.0, -1.0], "sold": ["2030-05-01", "2020-06-01", ""]})
    encoded = encoder.encode(new)
    assert encoded.outside == {"width": 2, "sold": 1}
    assert encoded.row_outside.tolist() == [2, 0, 1]
    # The far row enters the network as the widest, latest training row does, plus the
    # margin it may extrapolate (HELD_MARGIN standard deviations: + HELD_MARGIN standardised).
    edge = encoder.encode(pd.DataFrame({"width": [frame["width"].max()],
                                        "sold": [frame["sold"].max()]}))
    np.testing.assert_allclose(encoded.numeric[0, :2], edge.numeric[0, :2] + HELD_MARGIN,
                               rtol=1e-5)  # width, the day count
    # A little way out extrapolates as it is: counted, not changed.
    near = frame["width"].max() + 0.5 * frame["width"].std()
    a_little = encoder.encode(pd.DataFrame({"width": [near], "sold": ["2020-06-01"]}))
    assert a_little.outside == {"width": 1, "sold": 0}
    spec = encoder.numeric[0]
    np.testing.assert_allclose(a_little.numeric[0, 0], (near - spec.mean) / spec.std, rtol=1e-5)


def test_a_huge_spread_never_makes_a_score_nan_or_infinite():
    y = np.array([2.0, 3.0, 4.0, 5.0])
    wild = LogNormal(np.log(y), np.array([0.3, 0.3, 0.3, 105.0]))  # the diamond row
    with np.errstate(all="raise"):  # and no numpy warning on the way
        scores = score(y, wild, [0.5, 0.95])
        frame = wild.frame([0.95])
    assert all(np.isfinite(value) for value in scores.values()), scores
    assert scores["rows_without_moments"] == 1
    assert frame["mean"].isna().tolist() == [False, False, False, True]
    assert not np.isinf(frame.to_numpy()).any()


# --- one table with all of it, through the pipeline and deepnormal-predict ------------------

def sales_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Prices with an ISO date, a "$1,234"-formatted list price and a text category."""
    rng = np.random.default_rng(seed)
    day = rng.integers(0, 730, n)
    listed = rng.uniform(500, 5000, n)
    region = rng.choice(["north", "south"], n)
    price = listed * (1 + day / 2000) * np.exp(rng.normal(0, 0.1, n)) * np.where(
        region == "north", 1.1, 1.0)
    return pd.DataFrame({
        "sold": (pd.Timestamp("2022-01-01") + pd.to_timedelta(day, unit="D")).strftime(
            "%Y-%m-%d"),
        "listed": [f"${value:,.2f}" for value in listed],
        "region": region, "price": price.round(2)})


@pytest.fixture(scope="module")
def sales_repo(tmp_path_factory):
    root = copy_repo(tmp_path_factory.mktemp("sales"))
    with gzip.open(root / "examples/sales.csv.gz", "wt") as handle:
        sales_table().to_csv(handle, index=False)
    edit_params(root, TINY | {"data": {"source": "file", "path": "examples/sales.csv.gz",
                                       "features": ["sold", "listed", "region"],
                                       "target": "price"}})
    return root, dvc("repro", cwd=root)


@pytest.mark.pipeline
def test_dates_and_formatted_numbers_run_end_to_end(sales_repo):
    root, result = sales_repo
    assert "read as numbers (thousands separators or currency signs removed): listed" \
        in result.stdout
    assert "date columns, each a day count and its day of the week and of the year: " \
           "sold (ISO8601)" in result.stdout
    columns = json.loads((root / "data/prepared/columns.json").read_text())
    assert columns["kinds"] == {"sold": DATE, "listed": NUMERIC, "region": CATEGORICAL}
    metrics = json.loads((root / "data/evaluate/metrics.json").read_text())
    model = metrics["test"]["model"]
    assert all(np.isfinite(value) for value in model.values())

    # MLflow: a name a person can tell apart, the three splits as inputs, evaluate's params.
    (tracked,) = search_all(mlflow_client(root))
    assert tracked.info.run_name.startswith(f"sales-{columns['family']['name']}-")
    inputs = mlflow_client(root).get_run(tracked.info.run_id).inputs.dataset_inputs
    roles = {tag.value for found in inputs for tag in found.tags
             if tag.key == "mlflow.data.context"}
    assert roles == {"training", "validation", "test"}
    assert tracked.data.params["evaluate.interval_levels"] == "[0.5, 0.8, 0.95]"
    assert "data.path" in tracked.data.params and "generate.slope" not in tracked.data.params


@pytest.mark.pipeline
def test_predict_reads_raw_dates_formatted_numbers_and_odd_inputs(sales_repo, tmp_path):
    root, _ = sales_repo
    new = sales_table(4, seed=1)
    new.loc[1, "listed"] = "$90,000.00"  # far beyond the training range
    new.loc[2, "sold"] = "2031-01-01"
    new = new.drop(columns="price").assign(id=[1, 2, 3, 4])
    text = new.to_csv(index=False)
    lines = text.splitlines()
    (tmp_path / "new.csv").write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n")

    def predict(name: str, *extra: str, check: bool = True):
        return run([sys.executable, "-m", "deepnormal.predict", str(tmp_path / name),
                    str(tmp_path / f"out-{name}"), *extra], cwd=root, check=check)

    result = predict("new.csv")
    out = pd.read_csv(tmp_path / "out-new.csv")
    assert len(out) == 5  # four rows and the blank line's row of empty cells
    assert out["out_of_range"].tolist() == [0, 1, 0, 1, 0]
    assert "2 cell(s) lay beyond the range the training split spanned (listed: 1, sold: 1)" \
        in result.stdout
    for column in ("mean", "median", "std", "lower_95", "upper_95"):
        assert np.isfinite(out[column]).all(), column
    # The same rows as the pipeline's own test split would give the same numbers.
    test = pd.read_csv(root / "data/evaluate/predictions.csv").head(3)
    raw = test[["sold", "listed", "region"]].assign(listed=[f"${v:,.2f}" for v in test["listed"]])
    raw.to_csv(tmp_path / "again.csv", index=False)
    predict("again.csv")
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out-again.csv")["mean"], test["mean"],
                               rtol=1e-5)

    # A header alone: a header alone, with the output columns.
    (tmp_path / "header.csv").write_text("sold,listed,region\n")
    predict("header.csv")
    empty = pd.read_csv(tmp_path / "out-header.csv")
    assert len(empty) == 0 and {"mean", "upper_95", "out_of_range"} <= set(empty.columns)

    # An input column named like an output: refused, or the outputs take a prefix.
    new.assign(mean=1.0).to_csv(tmp_path / "clash.csv", index=False)
    refused = predict("clash.csv", check=False)
    assert refused.returncode == 2
    assert "has column(s) 'mean', which the output uses" in refused.stderr
    assert "--prefix pred_" in refused.stderr
    predict("clash.csv", "--prefix", "pred_")
    prefixed = pd.read_csv(tmp_path / "out-clash.csv")
    assert (prefixed["mean"] == 1.0).all() and np.isfinite(prefixed["pred_mean"]).all()
