"""Tables as they come: text categories, yes/no columns, empty cells, a skewed positive target.
Unit tests of the table encoder, then the real pipeline, `deepnormal-predict` and the served
model on such a table."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy import stats

from deepnormal.data import CATEGORICAL, NUMERIC
from deepnormal.errors import DeepnormalError
from deepnormal.prepared import Split
from deepnormal.preprocessing import MISSING_CATEGORY, CategoricalColumn, TableEncoder
from tests.conftest import (
    REPO,
    TINY,
    copy_repo,
    dvc,
    edit_params,
    free_port,
    mlflow_client,
    run,
    search_all,
    serving,
    stages_run,
)


def mixed_split() -> Split:
    frame = pd.DataFrame({
        "size": [1.0, 2.0, np.nan, 4.0, 5.0, np.nan, 7.0, 8.0],
        "grade": ["A", "A", "B", "B", "A", None, "C", "B"],
    })
    return Split(frame, np.arange(1.0, 9.0), {"size": NUMERIC, "grade": CATEGORICAL}, "price")


def test_the_encoder_fills_flags_and_codes_as_fitted_on_training():
    encoder = TableEncoder.fit(mixed_split(), "lognormal", standardize=True, min_category_rows=2)
    (size,) = encoder.numeric
    assert size.fill == 4.5 and size.flag is True  # the training median; had gaps
    # "C" and the empty cell were seen once: too rare for a code of their own.
    assert encoder.categorical == (CategoricalColumn("grade", ("A", "B")),)
    assert encoder.numeric_dim == 2 and encoder.cardinalities == [3]
    assert encoder.target.family == "lognormal"
    assert encoder.target.mean == pytest.approx(np.log(np.arange(1.0, 9.0)).mean())

    new = pd.DataFrame({"size": [np.nan, 2.0, "3"], "grade": ["B", "Z", np.nan]})
    encoded = encoder.encode(new)
    assert encoded.codes[:, 0].tolist() == [2, 0, 0]  # B; unseen -> unknown; empty -> unknown
    assert encoded.unknown == {"grade": 1} and encoded.filled == {"size": 1, "grade": 1}
    flags = encoded.numeric[:, 1].tolist()
    assert flags == [1.0, 0.0, 0.0]
    filled = encoded.numeric[0, 0] * size.std + size.mean
    assert filled == pytest.approx(4.5, rel=1e-6)
    with pytest.raises(DeepnormalError, match=r"the input, column 'size': 1 value\(s\) are not "
                                              r"numbers; first at data row 2: 'big'"):
        encoder.encode(pd.DataFrame({"size": [1.0, "big"], "grade": ["A", "A"]}))
    with pytest.raises(DeepnormalError, match="has no column 'grade', which the model needs"):
        encoder.encode(pd.DataFrame({"size": [1.0]}))


def test_a_frequent_empty_cell_is_a_category_of_its_own():
    encoder = TableEncoder.fit(mixed_split(), min_category_rows=1)
    assert encoder.categorical[0].categories == (MISSING_CATEGORY, "A", "B", "C")
    codes = encoder.encode(pd.DataFrame({"size": [1.0], "grade": [None]})).codes
    assert codes.tolist() == [[1]]
    # Categories read the same whatever type they arrive as.
    numbers = Split(pd.DataFrame({"zip": ["1001", "2002"]}), np.array([1.0, 2.0]),
                    {"zip": CATEGORICAL})
    zips = TableEncoder.fit(numbers)
    as_ints = zips.encode(pd.DataFrame({"zip": [1001, 2002.0]})).codes
    assert as_ints[:, 0].tolist() == [1, 2]


def test_categories_are_one_hot_or_embedded_by_vocabulary_size():
    from deepnormal.config import ModelParams
    from deepnormal.network import DeepNormalNet

    frame = pd.DataFrame({"small": list("abab") * 10, "large": [f"c{i % 20}" for i in range(40)]})
    split = Split(frame, np.linspace(1, 2, 40), {"small": CATEGORICAL, "large": CATEGORICAL})
    encoder = TableEncoder.fit(split)
    assert encoder.cardinalities == [3, 21]
    net = DeepNormalNet.for_table(encoder, ModelParams(
        hidden_sizes=[4], activation="tanh", sigma_floor=1e-4, ensemble_size=2, embedding_dim=8))
    # One-hot for "small" (3 codes <= 8), an 8-wide learned embedding per member for "large".
    assert list(net.embeddings) == ["1"]
    assert tuple(net.embeddings["1"].weight.shape) == (2, 21, 8)
    assert tuple(net.body[0].weight.shape) == (2, 3 + 8, 4)
    encoded = encoder.encode(frame)
    mu, sigma = net(torch.from_numpy(encoded.numeric), torch.from_numpy(encoded.codes))
    assert mu.shape == sigma.shape == (40,) and torch.isfinite(mu).all()


# --- the real pipeline on a table as it comes ---------------------------------------------

def shop_table(n: int = 320, seed: int = 0) -> pd.DataFrame:
    """Prices with a text grade, a yes/no column, empty cells and a few empty prices."""
    rng = np.random.default_rng(seed)
    grade = rng.choice(["basic", "plus", "premium"], n)
    member = rng.choice([True, False], n)
    size = rng.uniform(1, 10, n)
    log_price = 2.0 + 0.15 * size + np.select([grade == "plus", grade == "premium"], [0.4, 0.9])
    price = np.exp(log_price + rng.normal(size=n) * np.where(member, 0.2, 0.5))
    frame = pd.DataFrame({"size": size.round(3), "grade": grade, "member": member,
                          "price": price.round(2)})
    frame.loc[rng.choice(n, 12, replace=False), "size"] = np.nan
    frame.loc[rng.choice(n, 6, replace=False), "grade"] = None
    frame.loc[[0, 1, 2], "price"] = np.nan
    return frame


@pytest.fixture(scope="module")
def shop_repo(tmp_path_factory):
    root = copy_repo(tmp_path_factory.mktemp("shop"))
    shop_table().to_csv(root / "examples/shop.csv", index=False)
    edit_params(root, TINY | {
        "data": {"source": "file", "path": "examples/shop.csv",
                 "features": ["size", "grade", "member"], "target": "price"},
        "model": TINY["model"] | {"distribution": "lognormal"},
    })
    result = dvc("repro", cwd=root)
    assert stages_run(result.stdout) == ["generate", "tune", "lr_find", "train", "evaluate"]
    return root, result


@pytest.mark.pipeline
def test_a_table_with_text_yes_no_and_empty_cells_runs_end_to_end(shop_repo):
    root, result = shop_repo
    assert "categorical columns: grade (text), member (yes/no)" in result.stdout
    assert "dropped 3 row(s) whose target is empty" in result.stdout
    assert "empty cells kept, filled at training (data.missing: impute): size 12, grade 6" \
        in result.stdout
    columns = json.loads((root / "data/prepared/columns.json").read_text())
    assert columns["kinds"] == {"size": "numeric", "grade": "categorical",
                                "member": "categorical"}

    metrics = json.loads((root / "data/evaluate/metrics.json").read_text())
    assert metrics["family"] == "lognormal"
    test = metrics["test"]["model"]
    assert np.isfinite(test["nll"]) and test["filled_cells"] > 0
    plots = {p.name for p in (root / "data/evaluate/plots").iterdir()}
    assert "sigma_per_category.png" in plots

    (tracked,) = search_all(mlflow_client(root))
    assert tracked.data.params["model.distribution"] == "lognormal"
    train = pd.read_parquet(root / "data/prepared/train.parquet")
    assert tracked.data.metrics["filled_cells.size"] == train["size"].isna().sum()
    folder = root / "downloaded"
    folder.mkdir()
    path = mlflow_client(root).download_artifacts(tracked.info.run_id, "train/table.json",
                                                  str(folder))
    encoder = json.loads(open(path).read())
    assert {c["name"] for c in encoder["categorical"]} == {"grade", "member"}
    assert encoder["target"]["family"] == "lognormal"


@pytest.mark.pipeline
def test_lognormal_scores_are_in_the_targets_own_units(shop_repo):
    root, _ = shop_repo
    predictions = pd.read_csv(root / "data/evaluate/predictions.csv", keep_default_na=False,
                              na_values=[""])
    y, mu, sigma = predictions["price"], predictions["mu"], predictions["sigma"]
    direct = -stats.lognorm(s=sigma, scale=np.exp(mu)).logpdf(y).mean()
    metrics = json.loads((root / "data/evaluate/metrics.json").read_text())
    assert metrics["test"]["model"]["nll"] == pytest.approx(direct, rel=1e-6)
    # mean, median and interval bounds are the log-normal's, in price units.
    np.testing.assert_allclose(predictions["median"], np.exp(mu), rtol=1e-6)
    np.testing.assert_allclose(predictions["mean"], np.exp(mu + sigma**2 / 2), rtol=1e-6)
    np.testing.assert_allclose(predictions["upper_95"], np.exp(mu + 1.959964 * sigma),
                               rtol=1e-5)
    # The line is fitted to log(price) and scored on the same scale.
    assert metrics["test"]["linear"]["nll"] > 0 and np.isfinite(metrics["test"]["linear"]["crps"])


@pytest.mark.pipeline
def test_the_checkpoint_with_a_vocabulary_loads_weights_only(shop_repo):
    root, _ = shop_repo
    checkpoint = torch.load(root / "data/train/model.ckpt", weights_only=True)
    table = checkpoint["hyper_parameters"]["table"]
    grades = next(c for c in table["categorical"] if c["name"] == "grade")["categories"]
    assert set(grades) >= {"basic", "plus", "premium"}
    assert all(isinstance(label, str) for label in grades)


def new_rows() -> pd.DataFrame:
    """An unseen grade, an empty size, an empty grade and a normal row."""
    return pd.DataFrame({"size": [3.0, None, 5.0, 6.5],
                         "grade": ["deluxe", "plus", None, "basic"],
                         "member": [True, False, True, False], "order": [1, 2, 3, 4]})


@pytest.mark.pipeline
def test_predict_takes_unseen_categories_and_empty_cells(shop_repo, tmp_path):
    root, _ = shop_repo
    new_rows().to_csv(tmp_path / "new.csv", index=False)
    result = run([sys.executable, "-m", "deepnormal.predict", str(tmp_path / "new.csv"),
                  str(tmp_path / "out.csv")], cwd=root)
    assert ("1 cell(s) held a category not seen in training or too rare there (grade: 1)"
            in result.stdout)
    assert "2 empty cell(s) filled as in training (size: 1, grade: 1)" in result.stdout
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out["order"]) == [1, 2, 3, 4]
    for column in ("mean", "median", "std", "lower_95", "upper_95"):
        assert np.isfinite(out[column]).all() and (out[column] > 0).all(), column
    assert (out["lower_95"] < out["median"]).all() and (out["median"] < out["upper_95"]).all()

    bad = new_rows().astype({"size": object})
    bad.loc[2, "size"] = "large"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    failed = run([sys.executable, "-m", "deepnormal.predict", str(tmp_path / "bad.csv"),
                  str(tmp_path / "never.csv")], cwd=root, check=False)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'bad.csv'}, column 'size': 1 value(s) are not numbers; first at "
        "data row 3: 'large'")


@pytest.mark.pipeline
def test_the_served_model_takes_raw_rows_with_unseen_categories_and_nulls(shop_repo, tmp_path):
    root, _ = shop_repo
    (tracked,) = search_all(mlflow_client(root))
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m",
           f"runs:/{tracked.info.run_id}/model", "--env-manager", "local", "-h", "127.0.0.1",
           "-p", str(port)]
    rows = new_rows().drop(columns="order")
    records = json.loads(rows.to_json(orient="records"))  # None for the empty cells
    with serving(cmd, f"http://127.0.0.1:{port}/ping", cwd=tmp_path, log=tmp_path / "serve.log",
                 MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}"):
        served = invoke(port, {"dataframe_records": records})
        refused = invoke(port, {"dataframe_records": [dict(records[0], size="large")]})
        far = invoke(port, {"dataframe_records": [dict(records[0], size=1000.0)]})
        nothing = invoke(port, {"dataframe_split": {"columns": list(rows.columns), "data": []}})
    from deepnormal.inference import load_model

    expected = load_model(root / "data/train/model.ckpt").predict(rows).distribution
    np.testing.assert_allclose(served["mean"], expected.mean(), rtol=1e-6)
    np.testing.assert_allclose(served["upper_95"], expected.interval(0.95)[1], rtol=1e-6)
    assert np.isfinite(served.to_numpy()).all()
    assert "column 'size': 1 value(s) are not numbers" in refused
    # A size far beyond training: held within one std of the training range, and counted.
    assert far["out_of_range"].tolist() == [1] and np.isfinite(far.to_numpy()).all()
    assert served["out_of_range"].tolist() == [0] * len(rows)
    assert len(nothing) == 0  # no rows in, none out


def invoke(port: int, body: dict) -> pd.DataFrame | str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                     json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return pd.DataFrame(json.loads(response.read())["predictions"])
    except urllib.error.HTTPError as error:
        return error.read().decode()


BAD_TABLES = {
    "a declared categorical column the file lacks": (
        {"features": ["size", "grade", "colour"], "categorical": ["colour"]},
        "error: data file examples/shop.csv has no column 'colour'; its columns are: size, "
        "grade, member, price"),
    "a text target": (
        {"features": ["size", "price"], "target": "grade"},
        "error: data file examples/shop.csv: the target 'grade' holds text"),
    "an entirely empty feature": (
        {"features": ["size", "empty"]},
        "error: data file examples/shop.csv, column 'empty': every cell is empty; drop the "
        "column from data.features"),
    "lognormal on the synthetic data": (
        __import__("deepnormal.config").config.DataParams().model_dump(),
        "error: model.distribution: lognormal needs a target of positive numbers; the synthetic "
        "data's is not (use normal)"),
    "a table's params without data.source: file": (
        {"source": "synthetic"},
        "error: params.yaml: 'data': data.path (examples/shop.csv), data.features (['size', "
        "'grade']), data.target (price) describe a table, but data.source is synthetic: the "
        "toy problem, which reads no table. Set data.source: file to use the table"),
    "a non-positive target under lognormal": (
        {"target": "offset"},
        "error: data file examples/shop.csv: model.distribution: lognormal needs a target of "
        "positive numbers; column 'offset' has 1 that are not, first at data row 5: -2.0"),
}


@pytest.mark.parametrize("case", BAD_TABLES)
def test_bad_tables_stop_generate_with_one_line_and_keep_its_outputs(tmp_path, case):
    root = copy_repo(tmp_path)
    table = shop_table()
    table["empty"] = np.nan
    table["offset"] = np.arange(len(table)) + 1.0
    table.loc[4, "offset"] = -2.0
    table.to_csv(root / "examples/shop.csv", index=False)
    data = {"source": "file", "path": "examples/shop.csv", "features": ["size", "grade"],
            "target": "price"}
    edit_params(root, {"data": data, "model": {"distribution": "lognormal"}})
    run([sys.executable, "stages/generate.py"], root)
    before = {p.name: p.read_bytes() for p in (root / "data/prepared").iterdir()}
    change, message = BAD_TABLES[case]
    edit_params(root, {"data": data | change})
    result = run([sys.executable, "stages/generate.py"], root, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert {p.name: p.read_bytes() for p in (root / "data/prepared").iterdir()} == before


def documented_examples() -> dict[str, dict]:
    """examples/README.md: each table's `Params:` line (backquoted `key: value` items)."""
    import re

    import yaml

    text = (REPO / "examples/README.md").read_text()
    found = {}
    for entry in re.split(r"\n\n", text):
        name = re.match(r"`(\w+)\.csv`", entry)
        params = re.search(r"Params: (.*)", entry, re.S)
        if name and params:
            items = re.findall(r"`([^`]+)`", params.group(1))
            found[name.group(1)] = {k: v for item in items
                                    for k, v in yaml.safe_load(item).items()}
    return found


def test_every_example_table_prepares_with_its_documented_params():
    from deepnormal.data import prepare_table
    from deepnormal.reading import load_table

    documented = documented_examples()
    shipped = sorted(path.stem for path in (REPO / "examples").glob("*.csv"))
    assert sorted(documented) == shipped
    for name, params in documented.items():
        path = f"examples/{name}.csv"
        table = load_table(REPO / path)
        parts, report = prepare_table(table, params["features"], params["target"], None, path,
                                      (0.15, 0.25, 0), categorical=params.get("categorical", []))
        # Every column but the target is a feature (the README says which were dropped).
        assert sorted(params["features"] + [params["target"]]) == sorted(table.columns), name
        assert sum(len(part) for part in parts.values()) == len(table) - \
            report.target_rows_dropped, name
        categorical = {c for c, kind in report.kinds.items() if kind == CATEGORICAL}
        assert set(params.get("categorical", [])) <= categorical, name


def skewed_split(n: int = 400, seed: int = 0) -> Split:
    """log(y) linear in x with constant noise: a positive target, skewed to the right."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 3, size=n)
    y = np.exp(1.0 + 0.8 * x + rng.normal(scale=0.5, size=n))
    return Split(pd.DataFrame({"x": x}), y, {"x": NUMERIC})


def test_auto_family_picks_lognormal_for_a_positive_skewed_target_and_says_why():
    from deepnormal.family_choice import MARGIN, choose_family, line_nll

    data = skewed_split()
    choice = choose_family("auto", data, every_target_positive=True)
    assert choice.name == "lognormal"
    gain = line_nll(data, "normal") - line_nll(data, "lognormal")
    assert gain > MARGIN and f"better by {gain:.3f} nats" in choice.why
    # A zero or negative target anywhere in the table rules the log-normal out.
    assert choose_family("auto", data, every_target_positive=False).name == "normal"
    # A target whose noise does not grow with its level stays normal.
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 3, size=400)
    level = Split(pd.DataFrame({"x": x}), 100.0 + 2.0 * x + rng.normal(size=400),
                  {"x": NUMERIC})
    assert choose_family("auto", level, every_target_positive=True).name == "normal"
    # A named family is taken as it is.
    assert choose_family("normal", data, True).why == "model.distribution"


def test_the_chosen_family_travels_with_the_prepared_splits(tmp_path):
    from deepnormal.family_choice import choose_family
    from deepnormal.prepared import (
        FamilyChoice,
        TableDescription,
        as_split,
        read_split,
        read_splits,
        split_path,
        write_split,
    )
    from deepnormal.training import fit_encoder

    data = skewed_split()
    frame = data.frame.assign(y=data.target)
    parts = {"train": frame.iloc[:300], "val": frame.iloc[300:350], "test": frame.iloc[350:]}
    for name, part in parts.items():
        write_split(part, split_path(tmp_path, name))
    undecided = TableDescription("y", data.kinds, FamilyChoice("auto", ""))
    choice = choose_family("auto", as_split(parts["train"], undecided), True)
    TableDescription("y", data.kinds, choice).write(tmp_path)
    splits = read_splits(tmp_path)
    assert {split.family for split in splits.values()} == {"lognormal"}
    # One split read alone (the lr_find stage reads only train) carries it too.
    assert read_split(split_path(tmp_path, "train")).family == "lognormal"
    # Every later stage fits its encoder, and so the network, to that family.
    from deepnormal.config import parse_params

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert raw["model"]["distribution"] == "auto"
    assert fit_encoder(parse_params(raw), splits["train"]).family.name == "lognormal"
    raw["model"]["distribution"] = "normal"  # a named family wins
    assert fit_encoder(parse_params(raw), splits["train"]).family.name == "normal"


def test_skewed_counts_enter_the_network_as_log1p():
    rng = np.random.default_rng(0)
    n = 500
    frame = pd.DataFrame({
        "count": np.floor(rng.exponential(50.0, size=n)),  # skewed, never negative
        "level": rng.normal(size=n),  # symmetric
        "flag": (rng.uniform(size=n) < 0.05).astype(float),  # skewed, but only two values
        "debt": -np.floor(rng.exponential(50.0, size=n)),  # skewed to the left, negative
    })
    # The target follows log(count): the log lets a line fit it better, so count is logged.
    target = np.log1p(frame["count"].to_numpy()) + frame["level"] + rng.normal(size=n)
    data = Split(frame, target, dict.fromkeys(frame.columns, NUMERIC))
    encoder = TableEncoder.fit(data, log_skewed=True)
    assert {c.name: c.log for c in encoder.numeric} == {
        "count": True, "level": False, "flag": False, "debt": False}
    # A target linear in the count itself keeps it as it is (a balance linear in income).
    linear = Split(frame, 0.1 * frame["count"].to_numpy() + rng.normal(size=n), data.kinds)
    assert not any(c.log for c in TableEncoder.fit(linear, log_skewed=True).numeric)
    column = encoder.encode(frame).numeric[:, 0]
    logged = np.log1p(frame["count"].to_numpy())
    np.testing.assert_allclose(column, (logged - logged.mean()) / logged.std(), rtol=1e-4,
                               atol=1e-5)
    # A value below the training range (here negative) stays finite; the spec travels.
    again = TableEncoder.from_dict(encoder.to_dict())
    unseen = again.encode(frame.head(1).assign(count=-3.0)).numeric
    assert np.isfinite(unseen).all()
    # Off, and in a checkpoint written before the option, every input is as it is.
    assert not any(c.log for c in TableEncoder.fit(data).numeric)
    old = encoder.to_dict()
    for spec in old["numeric"]:
        del spec["log"], spec["low"], spec["high"]  # older checkpoints had none of them
    plain = TableEncoder.from_dict(old).encode(frame).numeric[:, 0]
    np.testing.assert_allclose(plain, (frame["count"] - encoder.numeric[0].mean)
                               / encoder.numeric[0].std, rtol=1e-4)
