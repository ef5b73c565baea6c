"""Bring your own data: validation of a user's table, and the pipeline on real files."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from deepnormal.data import prepare_table
from deepnormal.errors import DeepnormalError
from deepnormal.reading import load_table
from tests.conftest import (
    REPO,
    TINY,
    copy_repo,
    dvc,
    edit_params,
    mlflow_client,
    search_all,
    stages_run,
)

SPLIT = (0.2, 0.2, 0)


def table(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                         "target": rng.normal(size=n)})


def prepare(frame, path="my.csv", **options):
    settings = {"features": ["a", "b"], "target": "target", "split_column": None} | options
    return prepare_table(frame, path=path, split=SPLIT, **settings)


def test_a_good_table_is_split_with_features_then_target():
    parts, report = prepare(table())
    assert report.target_rows_dropped == report.rows_dropped == 0 and report.missing == {}
    assert report.kinds == {"a": "numeric", "b": "numeric"}
    assert [len(parts[k]) for k in ("train", "val", "test")] == [36, 12, 12]
    assert all(list(part.columns) == ["a", "b", "target"] for part in parts.values())


def test_split_column_is_respected():
    frame = table(30)
    frame["fold"] = ["train"] * 18 + ["val"] * 6 + ["Test"] * 6
    parts, _ = prepare(frame, split_column="fold")
    assert [len(parts[k]) for k in ("train", "val", "test")] == [18, 6, 6]
    assert "fold" not in parts["train"].columns


def test_missing_file_is_named(tmp_path):
    for name in ("nope.csv", "nope.parquet"):
        with pytest.raises(DeepnormalError, match=f"{name} does not exist"):
            load_table(tmp_path / name)


def test_parquet_and_csv_load_the_same(tmp_path):
    frame = table()
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_csv(tmp_path / "t.csv", index=False)
    pd.testing.assert_frame_equal(load_table(tmp_path / "t.parquet"),
                                  load_table(tmp_path / "t.csv"))


def test_damaged_parquet_is_named(tmp_path):
    (tmp_path / "t.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DeepnormalError, match="t.parquet is not a readable Parquet file"):
        load_table(tmp_path / "t.parquet")


def test_unknown_column_lists_the_real_ones():
    with pytest.raises(DeepnormalError, match=r"my.csv has no column 'c'; its columns are: a, b"):
        prepare(table(), features=["a", "c"])


def test_a_typo_in_a_numeric_column_names_file_column_and_row():
    frame = table().astype({"b": object})
    frame.loc[7, "b"] = "n/a?"
    with pytest.raises(DeepnormalError,
                       match=r"my.csv, column 'b': 1 value\(s\) are not numbers; first at data "
                             r"row 8: 'n/a\?' \(fix those cells, or list the column in "
                             r"data.categorical\)"):
        prepare(frame)


def mixed_table(n: int = 80) -> pd.DataFrame:
    """Text, yes/no, a numeric code and empty cells, as real tables come."""
    rng = np.random.default_rng(5)
    frame = table(n)
    frame["colour"] = rng.choice(["red", "green", "blue"], n)
    frame["member"] = rng.choice(["yes", "no"], n)
    frame["zip"] = rng.choice([1001, 2002, 3003], n)
    frame.loc[[2, 5], "a"] = np.nan
    frame.loc[[4], "colour"] = None
    return frame


def test_text_yes_no_and_declared_columns_are_categorical_and_say_why():
    frame = mixed_table()
    features = ["a", "b", "colour", "member", "zip"]
    parts, report = prepare(frame, features=features, categorical=["zip"])
    assert report.kinds == {"a": "numeric", "b": "numeric", "colour": "categorical",
                            "member": "categorical", "zip": "categorical"}
    assert report.why == {"colour": "text", "member": "yes/no",
                          "zip": "declared in data.categorical"}
    assert report.missing == {"a": 2, "colour": 1}
    lines = "\n".join(report.lines())
    assert "colour (text), member (yes/no), zip (declared in data.categorical)" in lines
    assert "a 2, colour 1" in lines
    # Categories are written as text, the same way whatever their type: 1001, not 1001.0.
    together = pd.concat(parts.values())
    assert set(together["zip"]) == {"1001", "2002", "3003"}
    assert together["a"].isna().sum() == 2 and together["colour"].isna().sum() == 1
    # Without the declaration the code column is numeric.
    assert prepare(frame, features=features)[1].kinds["zip"] == "numeric"


def test_missing_cells_impute_drop_or_error():
    frame = mixed_table()
    features = ["a", "colour"]
    _, imputed = prepare(frame, features=features)
    assert imputed.missing == {"a": 2, "colour": 1} and imputed.rows_dropped == 0
    parts, dropped = prepare(frame, features=features, missing="drop")
    assert dropped.rows_dropped == 3 and sum(len(p) for p in parts.values()) == 77
    with pytest.raises(DeepnormalError, match=r"my.csv, column 'a': 2 cell\(s\) are empty or "
                                              r"infinite; first at data row 3: an empty cell"):
        prepare(frame, features=features, missing="error")


@pytest.mark.parametrize("bad, said", [(np.nan, "empty"), (np.inf, "infinite")])
def test_rows_with_an_empty_target_are_dropped_and_counted(bad, said):
    frame = table()
    frame.loc[[3, 9], "target"] = bad
    parts, report = prepare(frame)
    assert report.target_rows_dropped == 2 and sum(len(p) for p in parts.values()) == 58
    assert f"dropped 2 row(s) whose target is {said}" in "\n".join(report.lines())


def test_a_text_target_is_refused_naming_the_first_text_cell():
    frame = mixed_table()
    with pytest.raises(DeepnormalError, match=r"the target 'colour' holds text \(79 cell\(s\), "
                                              r"first at data row 1: '\w+'\); the target must be "
                                              "a number"):
        prepare(frame, target="colour")


def test_a_lognormal_target_must_be_positive():
    from deepnormal.family import LogNormal

    frame = table()
    frame["target"] = np.exp(frame["target"])
    prepare(frame, family=LogNormal)  # positive: fine
    frame.loc[6, "target"] = -3.5
    frame.loc[9, "target"] = 0.0
    with pytest.raises(DeepnormalError, match=r"model.distribution: lognormal needs a target of "
                                              r"positive numbers; column 'target' has 2 that are "
                                              r"not, first at data row 7: -3.5"):
        prepare(frame, family=LogNormal)


def test_an_empty_feature_is_an_error_and_an_identifier_a_warning():
    frame = table()
    frame["b"] = np.nan
    with pytest.raises(DeepnormalError, match="column 'b': every cell is empty"):
        prepare(frame, missing="drop")  # named, not "the val split would have 0 rows"
    frame.loc[[0, 1], "b"] = 1.0  # filled only in rows the random split puts in test or val
    parts, _ = prepare(table(), split_column=None)
    held_out = sorted(set(parts["val"].index) | set(parts["test"].index))[:2]
    frame = table()
    frame["b"] = np.nan
    frame.loc[held_out, "b"] = 1.0
    with pytest.raises(DeepnormalError, match="column 'b': every cell of the training split "
                                              "is empty"):
        prepare(frame)
    frame = table()
    frame["id"] = [f"row-{i}" for i in range(len(frame))]
    _, report = prepare(frame, features=["a", "id"])
    assert report.warnings and "'id'" in report.warnings[0] and "identifier" in report.warnings[0]


def test_too_few_rows():
    with pytest.raises(DeepnormalError, match="'val' split would have 2 rows"):
        prepare(table(12))


def test_empty_split_from_the_split_column():
    frame = table(30)
    frame["fold"] = ["train"] * 24 + ["test"] * 6
    with pytest.raises(DeepnormalError, match="'val' split would have 0 rows"):
        prepare(frame, split_column="fold")


def test_bad_split_labels():
    frame = table(30)
    frame["fold"] = ["train"] * 20 + ["valid"] * 10
    with pytest.raises(DeepnormalError, match=r"split labels must be train, val or test; "
                                              r"found \['valid'\]"):
        prepare(frame, split_column="fold")


# --- the real pipeline on files ------------------------------------------------------------

@pytest.fixture(scope="module")
def file_repo(tmp_path_factory):
    """The tiny pipeline on the shipped multi-feature example (examples/diabetes.csv)."""
    root = copy_repo(tmp_path_factory.mktemp("own-data"))
    edit_params(root, TINY | {"data": {"source": "file"}})
    result = dvc("repro", cwd=root)
    assert stages_run(result.stdout) == ["generate", "tune", "lr_find", "train", "evaluate"]
    return root


@pytest.mark.pipeline
def test_multi_feature_file_end_to_end(file_repo):
    train = pd.read_parquet(file_repo / "data/prepared/train.parquet")
    assert list(train.columns) == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5",
                                   "s6", "progression"]
    # model.distribution: auto kept the normal family for this table, and said why.
    family = json.loads((file_repo / "data/prepared/columns.json").read_text())["family"]
    assert family["name"] == "normal" and family["why"].startswith("auto: the target is "
                                                                     "positive, but a line")
    metrics = json.loads((file_repo / "data/evaluate/metrics.json").read_text())
    assert metrics["family"] == "normal"
    # No oracle for real data.
    assert set(metrics["test"]) == {"model", "model_uncalibrated", "linear"}
    predictions = pd.read_csv(file_repo / "data/evaluate/predictions.csv")
    assert {"bmi", "progression", "mu", "sigma"} <= set(predictions.columns)
    plots = {p.name for p in (file_repo / "data/evaluate/plots").iterdir()}
    assert {"observed_vs_predicted.png", "calibration.png", "sigma_vs_error.png"} <= plots
    assert "prediction_band.png" not in plots  # needs a single feature

    client = mlflow_client(file_repo)
    (run,) = search_all(client)
    assert run.data.params["data.source"] == "file"
    assert "test_nll" in run.data.metrics and "test_nll_gap" not in run.data.metrics
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert inputs["diabetes-training"].dataset.source == '{"uri": "examples/diabetes.csv"}'
    assert json.loads(inputs["diabetes-training"].dataset.profile)["num_rows"] == len(train)
    assert inputs["diabetes-training"].dataset.digest


@pytest.mark.pipeline
def test_bad_file_stops_generate_and_keeps_everything(file_repo):
    client = mlflow_client(file_repo)
    runs_before = {r.info.run_id for r in client.search_runs(["1"])}
    folder = file_repo / "data/prepared"
    prepared = {p.name: p.read_bytes() for p in folder.glob("*.parquet")}
    source = file_repo / "examples/diabetes.csv"
    original = source.read_text()
    lines = original.splitlines()
    lines[5] = lines[5].replace(lines[5].split(",")[2], "heavy", 1)
    source.write_text("\n".join(lines) + "\n")
    try:
        result = dvc("repro", cwd=file_repo, check=False)
    finally:
        source.write_text(original)
    assert result.returncode != 0
    assert "error: data file examples/diabetes.csv, column 'bmi'" in result.stderr
    assert "data row 5: 'heavy'" in result.stderr
    # DVC removed the splits before the stage ran; the command the line names restores them.
    assert "`dvc checkout generate` restores this stage's earlier outputs" in result.stderr
    dvc("checkout", "generate", cwd=file_repo)
    assert {p.name: p.read_bytes() for p in folder.glob("*.parquet")} == prepared
    assert {r.info.run_id for r in client.search_runs(["1"])} == runs_before
    assert stages_run(dvc("repro", cwd=file_repo).stdout) == []


@pytest.mark.pipeline
def test_peers_scored_beside_the_model_rerun_evaluate_alone(file_repo):
    """evaluate.peers: CatBoost and NGBoost fitted on the run's own train/val split, scored
    on its test split beside the model, in every output a user reads."""
    edit_params(file_repo, {"evaluate": {"peers": ["catboost", "ngboost"]}})
    try:
        result = dvc("repro", cwd=file_repo)
        assert stages_run(result.stdout) == ["evaluate"]
        assert "the model against the best peer (" in result.stdout
        test = json.loads((file_repo / "data/evaluate/metrics.json").read_text())["test"]
        assert set(test) == {"model", "model_uncalibrated", "linear", "catboost", "ngboost"}
        for peer in ("catboost", "ngboost"):
            # Real fits: better than the homoscedastic line's NLL, sane coverage.
            assert test[peer]["nll"] < test["linear"]["nll"] + 0.2, peer
            assert 0.7 < test[peer]["picp_95"] <= 1.0, peer
        summary = (file_repo / "data/evaluate/summary.md").read_text()
        assert "| catboost |" in summary and "the model against the best peer" in summary
        calibration = pd.read_csv(file_repo / "data/evaluate/calibration.csv")
        assert {"catboost", "ngboost"} <= set(calibration.columns)
        (run,) = search_all(mlflow_client(file_repo))
        assert run.data.metrics["test_catboost_nll"] == pytest.approx(test["catboost"]["nll"])
    finally:
        edit_params(file_repo, {"evaluate": {"peers": []}})


def test_a_peer_that_is_not_installed_is_refused_before_any_work(monkeypatch):
    import importlib.util

    from deepnormal.config import parse_params

    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "catboost" else found(name, *a))
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["evaluate"]["peers"] = ["catboost"]
    with pytest.raises(DeepnormalError, match=r"evaluate.*peers lists catboost, not installed "
                                              r"here: pip install 'deepnormal\[peers\]'"):
        parse_params(raw)
    raw["evaluate"]["peers"] = ["ngboost", "ngboost"]
    with pytest.raises(DeepnormalError, match="peers lists a peer twice"):
        parse_params(raw)
    raw["evaluate"]["peers"] = ["xgboost"]
    with pytest.raises(DeepnormalError, match="peers"):
        parse_params(raw)


@pytest.mark.pipeline
def test_one_feature_file_end_to_end(tmp_path):
    root = copy_repo(tmp_path)
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 5, 200)
    frame = pd.DataFrame({"dose": x, "response": 2 * x + rng.normal(size=200) * (0.2 + x / 5)})
    frame.to_parquet(root / "examples/dose.parquet")
    edit_params(root, TINY | {"data": {"source": "file", "path": "examples/dose.parquet",
                                       "features": ["dose"], "target": "response"}})
    assert stages_run(dvc("repro", cwd=root).stdout) == ["generate", "tune", "lr_find", "train",
                                                         "evaluate"]
    plots = {p.name for p in (root / "data/evaluate/plots").iterdir()}
    assert {"prediction_band.png", "sigma_vs_input.png"} <= plots
    predictions = pd.read_csv(root / "data/evaluate/predictions.csv")
    assert list(predictions.columns[:7]) == ["dose", "response", "mean", "median", "std", "mu",
                                             "sigma"]
    assert np.isfinite(predictions["mu"]).all() and (predictions["sigma"] > 0).all()
    # The normal family: mean = median = mu, std = sigma.
    np.testing.assert_allclose(predictions["mean"], predictions["mu"])
    np.testing.assert_allclose(predictions["median"], predictions["mu"])
    np.testing.assert_allclose(predictions["std"], predictions["sigma"])


def test_parquet_dtypes_nullable_categories_and_dates(tmp_path):
    frame = table(40)
    frame["grade"] = pd.Categorical(["a", "b", None, "a"] * 10)
    frame["count"] = pd.array([1, None, 3, 4] * 10, dtype="Int64")
    frame["flag"] = pd.array([True, None, False, True] * 10, dtype="boolean")
    frame.to_parquet(tmp_path / "t.parquet")
    features = ["a", "grade", "count", "flag"]
    parts, report = prepare(load_table(tmp_path / "t.parquet"), features=features)
    assert report.kinds == {"a": "numeric", "grade": "categorical", "count": "numeric",
                            "flag": "categorical"}
    assert report.missing == {"grade": 10, "count": 10, "flag": 10}  # NA is an empty cell
    together = pd.concat(parts.values())
    assert set(together["flag"].dropna()) == {"True", "False"}
    # A date column (in Parquet, or text in a CSV: test_dates_and_formatted_numbers) is a
    # date feature, its empty cells empty.
    frame["when"] = pd.to_datetime(["2020-01-01", None, "2021-06-30", "2022-01-01"] * 10)
    parts, report = prepare(frame, features=["a", "when"])
    assert report.kinds == {"a": "numeric", "when": "date"}
    assert report.missing == {"when": 10}
    assert pd.api.types.is_datetime64_any_dtype(parts["train"]["when"])
